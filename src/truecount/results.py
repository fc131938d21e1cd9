"""Results: the numbers analysts quote, computed once from a posterior and a gate verdict.

:func:`summarize` reduces a fitted DataTree to a :class:`Summary` (small dataclasses, no arrays):
the headline interval of true enrolments, and per claim its inflation factor, the probability it was
physically possible, the probabilities that it was honest and that it counted call attempts. The CLI
and reports render a Summary; they compute nothing themselves.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from truecount.diagnostics import GateResult

UNCONVERGED = "UNCONVERGED: the diagnostics gate failed; do not quote these numbers"


@dataclass(frozen=True)
class Interval:
    """A posterior median and equal-tailed credible interval of probability ``mass``."""

    median: float
    lower: float
    upper: float
    mass: float

    def text(self, kind: str = "equal-tailed credible interval", fmt: str = "count") -> str:
        """``"1,940 (90% equal-tailed credible interval 500-5,500)"``."""
        f = format_count if fmt == "count" else format_factor
        return (f"{f(self.median)} ({self.mass:.0%} {kind} {f(self.lower)}-{f(self.upper)})")


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
    gate_passed: bool
    gate_text: str
    stamp: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def summarize(tree: xr.DataTree, gate_result: GateResult, mass: float = 0.9,
              claim_dates: dict[str, str] | None = None) -> Summary:
    """Reduce a fitted tree to its headline numbers (medians and ``mass`` equal-tailed intervals)."""
    post = tree["posterior"].to_dataset()
    n = post.sizes["chain"] * post.sizes["draw"]
    values = tree["constant_data"].to_dataset()["claim_value"]
    claims = []
    for claim in post["claim"].values:
        sel = {"claim": claim}
        p_possible = float(post["claim_possible"].sel(sel).mean())
        claims.append(ClaimSummary(
            id=str(claim),
            value=int(values.sel(sel)),
            date=(claim_dates or {}).get(str(claim), ""),
            true_at_claim=interval(post["true_at_claim"].sel(sel), mass),
            inflation=interval(post["inflation_factor"].sel(sel), mass),
            p_possible=p_possible,
            p_possible_text=format_probability(p_possible, n),
            p_honest=float(post["p_honest"].sel(sel).mean()),
            p_counts_attempts=float(post["p_counts_attempts"].sel(sel).mean()),
            days_needed=interval(post["days_needed"].sel(sel), mass),
        ))
    return Summary(
        case_id=str(tree.attrs.get("case_id", "")),
        spec_id=str(tree.attrs.get("spec_id", "")),
        seed=int(tree.attrs.get("seed", -1)),
        draws=int(post.sizes["draw"]),
        chains=int(post.sizes["chain"]),
        n_samples=n,
        true_enrolments=interval(post["true_enrolments_total"], mass),
        capacity=interval(post["capacity"].sum("channel"), mass),
        claims=claims,
        gate_passed=gate_result.passed,
        gate_text=gate_result.text,
        stamp=None if gate_result.passed else UNCONVERGED,
    )


def interval(draws: xr.DataArray, mass: float) -> Interval:
    """Median and equal-tailed interval of a scalar quantity's draws."""
    tail = (1.0 - mass) / 2.0
    lo, med, hi = np.quantile(np.asarray(draws, dtype=float).ravel(), [tail, 0.5, 1.0 - tail])
    return Interval(float(med), float(lo), float(hi), mass)


def format_probability(p: float, n: int) -> str:
    """A posterior probability from ``n`` draws; never "0" or "1" when no draw (or every draw) hit."""
    if p <= 0.0:
        return f"< 1 in {n:,} draws"
    if p >= 1.0:
        return f"> {n - 1:,} in {n:,} draws"
    return f"{p:.2f}" if 0.01 <= p <= 0.99 else f"{p:.1e}"


def round_sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant figures (what the uncertainty of an interval supports)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def format_count(x: float) -> str:
    """A count rounded to two significant figures, with thousands separators (``5,500``)."""
    return f"{round_sig(x, 2):,.0f}" if abs(x) >= 10 else f"{round_sig(x, 2):g}"


def format_factor(x: float) -> str:
    """A ratio such as an inflation factor, two significant figures (``12``, ``4.5``, ``0.83``)."""
    return f"{round_sig(x, 2):,g}"
