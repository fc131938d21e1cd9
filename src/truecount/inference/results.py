"""Results: the numbers analysts quote, computed once from a posterior and a gate verdict.

:func:`quantity_table` computes, for every reported quantity (element by element), the mean, sd,
median, equal-tailed (ETI) and highest-density (HDI) intervals at each mass, and the gate's
diagnostics, rounded to what the uncertainty supports (:func:`round_to_sd`). :func:`summarize` reads
the headline from that same table into a :class:`Summary` of small dataclasses, so the headline and
the table cannot disagree. The CLI and the report render these; they compute nothing themselves.

:func:`prior_data_conflicts` says where the data contradict the spec, which the gate cannot see (a
sampler explores an absurd posterior as happily as a sensible one): a sampled parameter whose
posterior median lies outside the central :data:`CONFLICT_MASS` of its prior draws, or an observed
claim or report outside the central :data:`CONFLICT_MASS` of the prior predictive (Evans and
Moshonov 2006: the data are surprising under the priors). Both are read from the fit's own
``prior`` and ``prior_predictive`` groups, so a run folder carries everything the check needs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from truecount.inference.diagnostics import REPORTED, GateResult
from truecount.quantities import PARAMETERS, QUANTITY

UNCONVERGED = "UNCONVERGED: the diagnostics gate failed; do not quote these numbers"
#: How the CLI and the report mark each line of :attr:`Summary.conflicts`.
CONFLICT = "PRIOR-DATA CONFLICT"
#: A posterior median, or an observed value, outside this central share of its prior (predictive)
#: draws is a prior-data conflict.
CONFLICT_MASS = 0.99
INTERVAL_KINDS = {"eti": "equal-tailed credible interval", "hdi": "highest-density credible interval"}
#: Posterior probabilities reported as the share of draws where an indicator holds.
PROBABILITIES = ("claim_possible", "p_honest", "p_counts_attempts")
DEFAULT_MASSES = (0.9, 0.95)


#: What the summary says of a claim of call attempts instead of a probability: the lines do
#: not bound attempts, so capacity cannot rule such a claim out.
UNBOUNDED_TEXT = "1: a count of call attempts, which lines do not bound"
#: ... and of a claim an online form counts towards: no line limits a form.
FORM_TEXT = "1: an online form counts towards it, and no line limits a form"
#: A capacity with an online form in it (infinite in the draws).
NO_LIMIT_TEXT = "no limit: an online form, which no line limits, is among the channels"


@dataclass(frozen=True)
class Interval:
    """A posterior median and credible interval of probability ``mass`` (``kind`` "eti" or "hdi")."""

    median: float
    lower: float
    upper: float
    mass: float
    kind: str = "eti"

    def text(self) -> str:
        """``"1,900 (90% equal-tailed credible interval 480-5,800)"``."""
        if math.isinf(self.median):
            return NO_LIMIT_TEXT
        return (f"{format_number(self.median)} ({self.mass:.0%} {INTERVAL_KINDS[self.kind]} "
                f"{format_number(self.lower)}-{format_number(self.upper)})")


@dataclass(frozen=True)
class ClaimSummary:
    """What the posterior says about one claim."""

    id: str
    value: int
    date: str
    true_at_claim: Interval
    inflation: Interval
    p_possible: float
    p_possible_text: str
    p_honest: float
    p_counts_attempts: float
    days_needed: Interval


@dataclass(frozen=True)
class Summary:
    """The headline results of one fit."""

    case_id: str
    spec_id: str
    seed: int
    draws: int
    chains: int
    n_samples: int
    true_enrolments: Interval
    capacity: Interval
    claims: list[ClaimSummary]
    thresholds: list[dict[str, Any]]
    gate_passed: bool
    gate_text: str
    stamp: str | None
    #: One sentence per prior-data conflict (:func:`prior_data_conflicts`); empty when none.
    conflicts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (an infinite capacity, an online form's, as ``null``)."""
        data: dict[str, Any] = _finite(dataclasses.asdict(self))
        return data


def _finite(x: Any) -> Any:
    """``x`` with every infinite or NaN float replaced by None, which JSON can hold."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def quantity_table(tree: xr.DataTree, gate_result: GateResult,
                   masses: tuple[float, ...] = DEFAULT_MASSES) -> pd.DataFrame:
    """One row per reported quantity element: statistics, intervals and diagnostics.

    Columns: ``mean, sd, median``, then ``eti90_lb, eti90_ub, hdi90_lb, hdi90_ub`` (and so on for
    each mass), ``r_hat, ess_bulk, ess_tail, constant``. Values are rounded by :func:`round_to_sd`.
    Probabilities (``claim_possible``, ``p_honest``, ``p_counts_attempts``) are posterior means.
    """
    post = tree["posterior"].to_dataset()
    kinds = channel_kinds(tree)
    rows: dict[str, dict[str, float]] = {}
    for name in [*REPORTED, "claim_possible", "total_capacity"]:
        da = post["capacity"].sum("channel") if name == "total_capacity" else post.get(name)
        if da is None:
            continue
        da = own_channels(da, name, kinds)
        da = da.astype(float)
        extra = [str(d) for d in da.dims if d not in ("chain", "draw")]
        stacked = da.stack(__sample__=("chain", "draw")).transpose(*extra, "__sample__")
        values = stacked.values.reshape(-1, stacked.sizes["__sample__"])
        labels = _labels(name, stacked, extra)
        for label, x in zip(labels, values, strict=True):
            rows[label] = _row(x, masses)
    table = pd.DataFrame.from_dict(rows, orient="index")
    diagnostics = gate_result.table.reindex(table.index)
    table["r_hat"] = diagnostics["r_hat"].round(3)
    table["ess_bulk"] = diagnostics["ess_bulk"].round(0)
    table["ess_tail"] = diagnostics["ess_tail"].round(0)
    table["constant"] = table["sd"] == 0
    return table


def channel_kinds(tree: xr.DataTree) -> dict[str, str]:
    """Each channel's kind, as the fitter recorded it (``channel_kinds`` of the tree's attrs).

    Runs written before the attribute existed had phone lines and online forms only; their kinds
    are read from ``channel_is_form`` or from a form's parameter in the posterior.
    """
    if "constant_data" not in tree.children:
        return {}
    data = tree["constant_data"].to_dataset()
    channels = [str(c) for c in data["channel"].values]
    recorded = str(tree.attrs.get("channel_kinds", ""))
    if recorded:
        return dict(zip(channels, recorded.split(","), strict=True))
    if "channel_is_form" in data:
        return {c: "online_form" if f > 0.5 else "phone_lines"
                for c, f in zip(channels, data["channel_is_form"].values, strict=True)}
    if "peak_submissions_per_hour" in tree["posterior"].to_dataset():  # forms only
        return {c: "online_form" for c in channels}
    return {c: "phone_lines" for c in channels}


def own_channels(da: xr.DataArray, name: str, kinds: dict[str, str]) -> xr.DataArray:
    """``da`` on the channels whose kind the quantity ``name`` describes (all for other names).

    A per-channel parameter is sampled for every channel of a case that mixes kinds, but means
    something only on its own kind (:attr:`truecount.quantities.Quantity.kinds`): elsewhere its
    draws are the prior's. Tables, figures and calibration ranks all take it from here.
    """
    if name not in QUANTITY or "channel" not in da.dims or not kinds:
        return da
    wanted = QUANTITY[name].kinds
    return da.sel(channel=[c for c in da["channel"].values
                           if kinds.get(str(c), "phone_lines") in wanted])


def _labels(name: str, da: xr.DataArray, extra: list[str]) -> list[str]:
    if not extra:
        return [name]
    index = [np.asarray(da[d].values).astype(str) for d in extra]
    grid = np.meshgrid(*index, indexing="ij")
    return [f"{name}[{', '.join(parts)}]" for parts in zip(*(g.ravel() for g in grid), strict=True)]


def _row(x: np.ndarray, masses: tuple[float, ...]) -> dict[str, float]:
    if x.size and not np.isfinite(x[0]) and np.all(x == x[0]):
        # An infinite constant: the capacity of an online form, which no line limits.
        keys = ["mean", "median"] + [f"{k}{round(m * 100):d}_{b}" for m in masses
                                     for k in ("eti", "hdi") for b in ("lb", "ub")]
        return dict.fromkeys(keys, float(x[0])) | {"sd": 0.0}
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    row = {"mean": float(np.mean(x)), "sd": sd, "median": float(np.median(x))}
    for mass in masses:
        pct = f"{round(mass * 100):d}"
        tail = (1.0 - mass) / 2.0
        row[f"eti{pct}_lb"], row[f"eti{pct}_ub"] = (float(v) for v in
                                                   np.quantile(x, [tail, 1.0 - tail]))
        row[f"hdi{pct}_lb"], row[f"hdi{pct}_ub"] = hdi(x, mass)
    return {k: (v if k == "sd" else round_to_sd(v, sd)) for k, v in row.items()} | {
        "sd": round_sig(sd, 2)}


def summarize(tree: xr.DataTree, gate_result: GateResult, table: pd.DataFrame | None = None,
              mass: float = 0.9, kind: str = "eti", claim_dates: dict[str, str] | None = None,
              thresholds: tuple[float, ...] = ()) -> Summary:
    """The headline, read from :func:`quantity_table` (computed here if not given)."""
    if table is None:
        table = quantity_table(tree, gate_result, tuple(sorted({*DEFAULT_MASSES, mass})))
    post = tree["posterior"].to_dataset()
    n = post.sizes["chain"] * post.sizes["draw"]
    constant = tree["constant_data"].to_dataset()
    values = constant["claim_value"]
    # Lines do not bound call attempts: such a claim's "possible" is not a finding.
    unbounded = (constant["claim_quantity"].sel(quantity="attempts") > 0.5
                 if "claim_quantity" in constant and "quantity" in constant["claim_quantity"].coords
                 else xr.zeros_like(values, dtype=bool))
    # An online form counts towards the claim: its capacity at the claim is infinite.
    on_form = xr.apply_ufunc(np.isinf, post["capacity_at_claim"]).all(("chain", "draw"))

    def iv(label: str) -> Interval:
        return interval_from_table(table, label, mass, kind)

    claims = []
    for claim in post["claim"].values:
        c = str(claim)
        p_possible = float(post["claim_possible"].sel(claim=claim).mean())
        claims.append(ClaimSummary(
            id=c, value=int(values.sel(claim=claim)), date=(claim_dates or {}).get(c, ""),
            true_at_claim=iv(f"true_at_claim[{c}]"), inflation=iv(f"inflation_factor[{c}]"),
            p_possible=p_possible,
            p_possible_text=(FORM_TEXT if bool(on_form.sel(claim=claim))
                             else UNBOUNDED_TEXT if bool(unbounded.sel(claim=claim))
                             else format_probability(p_possible, n)),
            p_honest=float(table.loc[f"p_honest[{c}]", "mean"]),
            p_counts_attempts=float(table.loc[f"p_counts_attempts[{c}]", "mean"]),
            days_needed=iv(f"days_needed[{c}]"),
        ))
    total = post["true_enrolments_total"].values
    below = []
    for threshold in thresholds:
        p = float(np.mean(total < threshold))
        below.append({"threshold": threshold, "p_below": p, "text": format_probability(p, n)})
    return Summary(
        case_id=str(tree.attrs.get("case_id", "")), spec_id=str(tree.attrs.get("spec_id", "")),
        seed=int(tree.attrs.get("seed", -1)), draws=int(post.sizes["draw"]),
        chains=int(post.sizes["chain"]), n_samples=n,
        true_enrolments=iv("true_enrolments_total"), capacity=iv("total_capacity"),
        claims=claims, thresholds=below, gate_passed=gate_result.passed,
        gate_text=gate_result.text, stamp=None if gate_result.passed else UNCONVERGED,
        conflicts=prior_data_conflicts(tree),
    )


def prior_data_conflicts(tree: xr.DataTree, mass: float = CONFLICT_MASS) -> tuple[str, ...]:
    """Sentences naming where the data contradict the spec; empty when nowhere (or no prior draws).

    Two checks, both against the fit's own prior draws (``prior`` and ``prior_predictive``, drawn
    from the spec), both invariant to the scale a parameter is written on:

    * every sampled parameter (element by element): its posterior median outside the central
      ``mass`` of its prior draws. The data have pulled it where the spec says it almost never is,
      usually because the model absorbs something it cannot explain (a claim no channel could
      produce read as enormous claim noise).
    * every observed claim and report: outside the central ``mass`` of its prior predictive
      replicates. The priors together cannot produce it, so whatever explains it in the posterior
      (inflation, call attempts, noise) sits far in a prior's tail.

    Either way the intervals rest on the shape of a prior's tail rather than on evidence. A
    parameter fixed by the spec, or drawn constant, has no spread to leave and is skipped.
    """
    if "prior" not in tree.children:
        return ()
    tail = (1.0 - mass) / 2.0
    out: list[str] = []
    post, prior = tree["posterior"].to_dataset(), tree["prior"].to_dataset()
    for name in PARAMETERS:
        if name not in post or name not in prior:
            continue
        labels, post_values = _elements(name, post[name])
        _, prior_values = _elements(name, prior[name])
        for label, x, p in zip(labels, post_values, prior_values, strict=True):
            p = p[np.isfinite(p)]
            if p.size == 0 or np.ptp(p) == 0:
                continue
            lo, hi = (float(v) for v in np.quantile(p, [tail, 1.0 - tail]))
            median = float(np.median(x))
            if lo <= median <= hi:
                continue
            high = median > hi
            beyond = int(np.sum(p >= median)) if high else int(np.sum(p <= median))
            out.append(
                f"{label}: posterior median {_num(median)}, far outside its prior (its central "
                f"{mass:.0%}: {_num(lo)}-{_num(hi)}; {beyond:,} of {p.size:,} prior draws as "
                f"{'high' if high else 'low'}). The data contradict the spec here (the model may be "
                "absorbing into this parameter something it cannot otherwise explain), and "
                "every interval depends on this prior's tail; check the case's claims and "
                "evidence, and the spec's prior, before quoting.")
    if "prior_predictive" in tree.children and "observed_data" in tree.children:
        out += _observed_conflicts(tree, tail, mass)
    return tuple(out)


def _observed_conflicts(tree: xr.DataTree, tail: float, mass: float) -> list[str]:
    observed = tree["observed_data"].to_dataset()
    replicated = tree["prior_predictive"].to_dataset()
    fitted = (tree["posterior_predictive"].to_dataset()
              if "posterior_predictive" in tree.children else xr.Dataset())
    out = []
    for name, what, causes in (
            ("claim_value", "claim", "inflation, call attempts, claim noise"),
            ("evidence_reports_failed", "evidence", "reporting bias, the share of calls failing")):
        if name not in observed or name not in replicated or observed[name].ndim != 1:
            continue
        (dim,) = observed[name].dims
        for element in observed[dim].values:
            y = float(observed[name].sel({dim: element}))
            rep = replicated[name].sel({dim: element}).values.astype(float).ravel()
            rep = rep[np.isfinite(rep)]
            if rep.size == 0:
                continue
            above, below = int(np.sum(rep >= y)), int(np.sum(rep <= y))
            if min(above, below) >= tail * rep.size:
                continue
            high = above < below
            lo, hi = (float(v) for v in np.quantile(rep, [tail, 1.0 - tail]))
            side = "high" if high else "low"
            if what == "claim":
                label, noun = f"claim {element} ({_num(y)})", "claims"
            else:
                label, noun = f"evidence {element} ({_num(y)} failed reports)", "counts"
            text = (f"{label} is further out than the spec's priors reach: "
                    f"{above if high else below:,} of {rep.size:,} prior predictive {noun} are as "
                    f"{side} (their central {mass:.0%}: {_num(lo)}-{_num(hi)})")
            if name in fitted:
                fit_rep = fitted[name].sel({dim: element}).values.astype(float).ravel()
                hits = int(np.sum(fit_rep >= y)) if high else int(np.sum(fit_rep <= y))
                text += f", and {hits:,} of {fit_rep.size:,} posterior predictive ones"
            out.append(
                text + ". The data contradict the spec here: whatever explains this "
                f"{what} ({causes}) sits far in a prior's tail, so "
                "the numbers about it rest on that tail, not on evidence; check the value and "
                "the spec before quoting.")
    return out


def _elements(name: str, da: xr.DataArray) -> tuple[list[str], np.ndarray]:
    """Labels (as in :func:`quantity_table`) and draws, one row per element of ``da``."""
    da = da.astype(float)
    extra = [str(d) for d in da.dims if d not in ("chain", "draw")]
    stacked = da.stack(__sample__=("chain", "draw")).transpose(*extra, "__sample__")
    return (_labels(name, stacked, extra),
            stacked.values.reshape(-1, stacked.sizes["__sample__"]))


def _num(x: float) -> str:
    return format_number(round_sig(x, 2))


def interval_from_table(table: pd.DataFrame, label: str, mass: float, kind: str) -> Interval:
    """The :class:`Interval` of one row of a quantity table."""
    if kind not in INTERVAL_KINDS:
        raise ValueError(f"interval kind must be one of {list(INTERVAL_KINDS)}, got {kind!r}")
    pct = f"{round(mass * 100):d}"
    row = table.loc[label]
    return Interval(float(row["median"]), float(row[f"{kind}{pct}_lb"]),
                    float(row[f"{kind}{pct}_ub"]), mass, kind)


def hdi(x: np.ndarray, mass: float) -> tuple[float, float]:
    """Narrowest interval holding ``mass`` of the draws ``x`` (unimodal summary)."""
    s = np.sort(np.asarray(x, dtype=float).ravel())
    k = max(math.ceil(mass * s.size), 1)
    widths = s[k - 1:] - s[: s.size - k + 1]
    i = int(np.argmin(widths))
    return float(s[i]), float(s[i + k - 1])


def format_probability(p: float, n: int) -> str:
    """A posterior probability from ``n`` draws; never "0" or "1" when no draw (or every draw) hit."""
    if p <= 0.0:
        return f"< 1 in {n:,} draws"
    if p >= 1.0:
        return f"> {n - 1:,} in {n:,} draws"
    if p > 0.99:
        return f"1 - {1.0 - p:.1e}"
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def round_sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant figures."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def round_to_sd(x: float, sd: float) -> float:
    """``x`` rounded to a tenth of the posterior sd's leading digit (sd 1,500 -> hundreds).

    What the uncertainty supports: one digit more than the sd's first significant one. A constant
    (sd 0) keeps four significant figures.
    """
    if not math.isfinite(x):
        return x
    if sd <= 0 or not math.isfinite(sd):
        return round_sig(x, 4)
    decimals = 1 - math.floor(math.log10(sd))
    value = round(x, decimals)
    return float(value) if decimals > 0 else float(round(value))


def format_number(x: float) -> str:
    """A rounded number for prose: thousands separators, no trailing zeros (``5,800``, ``0.62``)."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:,.10g}"
