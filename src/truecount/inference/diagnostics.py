"""The diagnostics gate: nothing is reported that the sampler has not earned.

:func:`gate` checks every reported quantity, element by element, against the standards users of
Bayesian results expect (Vehtari et al. 2021, "Rank-normalization, folding, and localization"):
rank-normalised split R-hat <= 1.01, bulk and tail ESS >= 400, no divergent transitions, and E-BFMI
>= 0.3 in every chain. The numbers come from arviz-stats. It returns a :class:`GateResult`
(passed, table, text); callers refuse or stamp results that failed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from truecount.quantities import GATED

#: Quantities reported to users; each must pass the gate. Model parameters first, then derived
#: (:data:`truecount.quantities.GATED`).
REPORTED = GATED


@dataclass(frozen=True)
class Thresholds:
    """The gate's limits."""

    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    divergences_max: int = 0
    ebfmi_min: float = 0.3


@dataclass(frozen=True)
class GateResult:
    """The verdict: ``passed``, one row per quantity element (``table``) and a readable ``text``."""

    passed: bool
    table: pd.DataFrame
    text: str
    failures: list[str] = field(default_factory=list)
    divergences: int = 0
    ebfmi: list[float] = field(default_factory=list)


def gate(tree: xr.DataTree, var_names: tuple[str, ...] | None = None,
         thresholds: Thresholds = Thresholds()) -> GateResult:
    """Check convergence of every reported quantity in ``tree``'s posterior.

    Elements that do not vary across draws (a closed day's blocking, a claim's constant count) have
    no R-hat or ESS and are marked "constant" rather than failed.
    """
    posterior = tree["posterior"].to_dataset()
    names = [n for n in (var_names or REPORTED) if n in posterior]
    flat = posterior[names].astype(float)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        # Constant elements (0/0 in R-hat) warn; they are marked "constant" below instead.
        warnings.simplefilter("ignore", RuntimeWarning)
        table = azs.summary(flat, kind="diagnostics", round_to="none")
        sd = azs.summary(flat, kind="stats", round_to="none")["sd"]
    table = pd.DataFrame(table)[["ess_bulk", "ess_tail", "r_hat"]]
    # Constant: every draw the same (also an infinite one, an online form's capacity, whose sd
    # is NaN).
    same = pd.Series({label: bool(flag) for n in names for label, flag in _every_draw_same(flat[n])},
                     dtype=bool).reindex(table.index, fill_value=False)
    table["constant"] = (np.asarray(sd, dtype=float) == 0.0) | same.to_numpy()
    t = thresholds
    varying = ~table["constant"]
    table["ok"] = ~varying | (
        (table["r_hat"] <= t.rhat_max) & (table["ess_bulk"] >= t.ess_bulk_min)
        & (table["ess_tail"] >= t.ess_tail_min))
    failures = [
        f"{name}: R-hat {row.r_hat:.3f}, bulk ESS {row.ess_bulk:.0f}, tail ESS {row.ess_tail:.0f}"
        for name, row in table[~table["ok"]].iterrows()
    ]
    stats = tree["sample_stats"].to_dataset()
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    if divergences > t.divergences_max:
        failures.append(f"{divergences} divergent transitions (allowed: {t.divergences_max})")
    ebfmi = [float(v) for v in np.atleast_1d(azs.bfmi(stats["energy"]).values)] \
        if "energy" in stats else []
    low = [f"{v:.2f}" for v in ebfmi if v < t.ebfmi_min]
    if low:
        failures.append(f"E-BFMI below {t.ebfmi_min} in {len(low)} chain(s): {', '.join(low)}")
    passed = not failures
    text = _text(passed, failures, table, divergences, ebfmi, t)
    return GateResult(passed, table, text, failures, divergences, ebfmi)


def _every_draw_same(da: xr.DataArray) -> list[tuple[str, bool]]:
    """``(label, every draw equal)`` per element, labelled as ArviZ labels them (``x[a, b]``)."""
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    first = da.isel(chain=0, draw=0)
    flags = (da == first).all(("chain", "draw"))
    if not extra:
        return [(str(da.name), bool(flags))]
    flat = flags.stack(__element__=extra)
    return [(f"{da.name}[{', '.join(str(p) for p in (k if isinstance(k, tuple) else (k,)))}]",
             bool(v)) for k, v in zip(flat["__element__"].values, flat.values, strict=True)]


def _text(passed: bool, failures: list[str], table: pd.DataFrame, divergences: int,
          ebfmi: list[float], t: Thresholds) -> str:
    varying = table[~table["constant"]]
    worst = (f"worst R-hat {varying['r_hat'].max():.3f}, lowest bulk ESS "
             f"{varying['ess_bulk'].min():.0f}, lowest tail ESS {varying['ess_tail'].min():.0f}"
             if len(varying) else "no varying quantity")
    summary = (f"{len(table)} quantities checked; {worst}; {divergences} divergences; E-BFMI "
               f"{min(ebfmi):.2f} at lowest" if ebfmi else f"{len(table)} quantities checked; {worst}")
    limits = (f"(limits: R-hat <= {t.rhat_max}, bulk and tail ESS >= {t.ess_bulk_min:.0f}, "
              f"divergences <= {t.divergences_max}, E-BFMI >= {t.ebfmi_min})")
    if passed:
        return f"Diagnostics gate PASSED: {summary} {limits}."
    shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5
                                       else "")
    return f"Diagnostics gate FAILED: {shown}. {summary} {limits}."
