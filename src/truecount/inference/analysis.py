"""The one analysis pipeline: a fit's tree -> gate -> quantity table -> summary, frozen together.

Every path that turns draws into numbers people read goes through :func:`analyse` (or
:func:`fit_and_analyse`, which fits and gates first): ``truecount fit`` and ``rerun``, each
sensitivity alternative, each calibration fit, the notebook. The report and the command line
render an :class:`Analysis`; they compute nothing. So a headline, its gate verdict and the table
behind them can never come from different computations, and a result that failed the gate
carries its stamp wherever it goes (:attr:`Summary.stamp`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from truecount.inference.diagnostics import GateResult, gate
from truecount.inference.results import Summary, quantity_table, summarize
from truecount.quantities import PSENSE

#: Power-scaling sensitivity above this is "sensitive" (Kallioinen et al. 2024).
PSENSE_THRESHOLD = 0.05


@dataclass(frozen=True)
class Options:
    """What an analysis reports: interval ``kind`` ("eti"/"hdi") and ``mass``, decision thresholds."""

    kind: str = "eti"
    mass: float = 0.9
    thresholds: tuple[float, ...] = ()

    @property
    def masses(self) -> tuple[float, ...]:
        """Masses tabulated: 90%, 95% and the headline's."""
        return tuple(sorted({0.9, 0.95, self.mass}))


@dataclass(frozen=True)
class PredictiveCheck:
    """How one observed claim or evidence count sits among its posterior predictive replicates."""

    kind: str  # "claim" or "evidence"
    id: str
    observed: float
    share_lower: float
    share_equal: float


@dataclass(frozen=True)
class Analysis:
    """A fit and everything computed from it: gate verdict, quantity table, summary.

    The power-scaling sensitivity and the predictive checks are computed from the tree the first
    time they are read (the report reads them; calibration and sensitivity refits do not).
    """

    tree: xr.DataTree
    verdict: GateResult
    table: pd.DataFrame
    summary: Summary
    options: Options
    #: Why the fit was refitted (empty if it was not): :func:`truecount.inference.fitter.fit_gated`.
    note: str = ""

    @property
    def passed(self) -> bool:
        """The fit passed the diagnostics gate."""
        return self.verdict.passed

    @functools.cached_property
    def power_scaling(self) -> pd.DataFrame | None:
        """:func:`power_scaling` of the tree (None for a run stored without log densities)."""
        if "log_prior" not in self.tree.children:
            return None
        return power_scaling(self.tree)

    @functools.cached_property
    def predictive(self) -> tuple[PredictiveCheck, ...]:
        """:func:`predictive_checks` of the tree."""
        return predictive_checks(self.tree)


def analyse(tree: xr.DataTree, options: Options = Options(), *,
            claim_dates: dict[str, str] | None = None, verdict: GateResult | None = None,
            note: str = "") -> Analysis:
    """Gate ``tree`` (unless ``verdict`` is given), tabulate and summarise it.

    ``claim_dates`` (claim id -> date text) labels the claims in the summary.
    """
    verdict = verdict if verdict is not None else gate(tree)
    table = quantity_table(tree, verdict, options.masses)
    summary = summarize(tree, verdict, table, mass=options.mass, kind=options.kind,
                        claim_dates=claim_dates, thresholds=options.thresholds)
    return Analysis(tree, verdict, table, summary, options, note)


def fit_and_analyse(fitter: Any, case: Any = None, options: Options = Options(), *, draws: int,
                    tune: int, chains: int, seed: int, cores: int | None = None,
                    target_accept: float | None = None, retry: bool = True,
                    progress: bool = False, say: Callable[[str], None] | None = None
                    ) -> Analysis:
    """Fit ``case`` with ``fitter``, gate it (refit once if it failed and ``retry``), analyse it.

    ``case`` (default: the case the fitter was built from) is a
    :class:`~truecount.inputs.case.Case` (its claims' dates label the summary) or a case dataset.
    """
    from truecount.inference.fitter import DEFAULT_TARGET_ACCEPT, fit_gated

    tree, verdict, note = fit_gated(fitter, case, draws=draws, tune=tune, chains=chains,
                                    seed=seed, cores=cores,
                                    target_accept=target_accept or DEFAULT_TARGET_ACCEPT,
                                    retry=retry, progress=progress, say=say)
    claims = getattr(case, "claims", None)
    dates = {c.id: c.label for c in claims} if claims is not None else None
    return analyse(tree, options, claim_dates=dates, verdict=verdict, note=note)


def power_scaling(tree: xr.DataTree, quantities: tuple[str, ...] = PSENSE) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity of the headline quantities of one fit.

    A :class:`pandas.DataFrame` indexed by quantity (``name[coordinate]`` per channel or claim) with
    columns ``prior``, ``likelihood`` (the cumulative Jensen-Shannon distance per unit change of
    the power, from ``arviz_stats.psense``) and ``diagnosis`` in words. Needs the ``log_prior`` and
    ``log_likelihood`` groups every fit stores.
    """
    import logging

    import arviz_stats

    post = tree["posterior"]
    names = [q for q in quantities if q in post.data_vars]
    quiet = logging.getLogger("arviz_stats.psense")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its advice is a link; the diagnosis column says it in words
    try:
        table: pd.DataFrame = arviz_stats.psense_summary(tree, var_names=names,
                                                         threshold=PSENSE_THRESHOLD)
    finally:
        quiet.setLevel(level)
    table["diagnosis"] = [_psense_words(p, like) for p, like in
                          zip(table["prior"], table["likelihood"], strict=True)]
    return table


def _psense_words(prior: float, likelihood: float) -> str:
    if prior >= PSENSE_THRESHOLD and likelihood >= PSENSE_THRESHOLD:
        return "prior and data both move it (prior-data conflict or weakly identified)"
    if prior >= PSENSE_THRESHOLD:
        return "the prior moves it, the data little: an assumption, not a finding"
    if likelihood >= PSENSE_THRESHOLD:
        return "driven by the data"
    return "insensitive to both"


def predictive_checks(tree: xr.DataTree) -> tuple[PredictiveCheck, ...]:
    """Each observed claim and evidence count against its posterior predictive replicates."""
    pp = tree["posterior_predictive"].to_dataset()
    observed = tree["constant_data"].to_dataset()["claim_value"]
    checks = []
    for claim in observed["claim"].values:
        rep = pp["claim_value"].sel(claim=claim).values.ravel()
        y = float(observed.sel(claim=claim))
        checks.append(PredictiveCheck("claim", str(claim), y, float(np.mean(rep < y)),
                                      float(np.mean(rep == y))))
    if "evidence_reports_failed" in pp and "observed_data" in tree.children:
        seen = tree["observed_data"].to_dataset()["evidence_reports_failed"]
        for ev in seen["evidence"].values:
            rep = pp["evidence_reports_failed"].sel(evidence=ev).values.ravel()
            k = float(seen.sel(evidence=ev))
            checks.append(PredictiveCheck("evidence", str(ev), k, float(np.mean(rep < k)),
                                          float(np.mean(rep == k))))
    return tuple(checks)
