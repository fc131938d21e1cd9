"""How the answer moves: refit a case under named alternatives and put the headlines side by side.

An alternative is a reading of the case (``reading:NAME``, from its ``[readings.*]``), another spec
(``spec:NAME_OR_PATH``, usually a file in ``models/`` that extends the baseline) or both joined with
``+``. :func:`run_sensitivity` fits the baseline and every alternative, gates each fit, and returns
one :class:`Row` per fit; :func:`conclusions` says whether a conclusion ("claim X was not physically
possible", "the truth is below the smallest claim") holds under every alternative.

Not yet here (issue 7): the refits on the Dask runner, power-scaling sensitivity (psense), the
report's sensitivity section and the notebook. Each alternative with another spec compiles its own
model (about 20 s warm); readings share the baseline's compiled model when the structure allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from truecount.case import load_case
from truecount.diagnostics import gate
from truecount.results import Interval, format_number, quantity_table, summarize
from truecount.spec import load_spec

#: The alternatives shipped for every case that has the matching readings.
DEFAULT_ALTERNATIVES = (
    "reading:round_the_clock", "reading:open_from_announcement", "spec:handle_time_wide",
    "spec:handle_time_narrow", "spec:honest_likely",
)
#: A claim counts as "not physically possible" below this posterior probability.
IMPOSSIBLE_BELOW = 0.05


@dataclass(frozen=True)
class Row:
    """The headline of one fit."""

    name: str
    readings: tuple[str, ...]
    spec: str
    gate_passed: bool
    true_enrolments: Interval
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_alternative(text: str, base_spec: str) -> tuple[tuple[str, ...], str]:
    """``"reading:A+spec:B"`` -> (readings, spec)."""
    readings: list[str] = []
    spec = base_spec
    for part in text.split("+"):
        kind, _, value = part.partition(":")
        if kind == "reading" and value:
            readings.append(value)
        elif kind == "spec" and value:
            spec = value
        else:
            from truecount.errors import InputError

            raise InputError("--vary", "", repr(text), "alternatives like reading:NAME, "
                             "spec:NAME_OR_PATH or both joined with +")
    return tuple(readings), spec


def run_sensitivity(case_path: str | Path, base_spec: str = "baseline",
                    alternatives: tuple[str, ...] = DEFAULT_ALTERNATIVES, *, draws: int = 2000,
                    tune: int = 1000, chains: int = 4, seed: int = 0, mass: float = 0.9,
                    progress: Any = None) -> list[Row]:
    """Fit the baseline and every alternative; alternatives whose readings the case lacks are skipped."""
    from truecount.inference import Fitter, StructureError

    say = progress or (lambda text: None)
    base_case = load_case(case_path)
    plans: list[tuple[str, tuple[str, ...], str]] = [("baseline", (), base_spec)]
    for text in alternatives:
        readings, spec = parse_alternative(text, base_spec)
        if any(r not in base_case.readings for r in readings):
            say(f"skipping {text}: the case defines no such reading")
            continue
        plans.append((text, readings, spec))
    # Validate every input before the first (expensive) fit.
    loaded = [(name, load_case(case_path, readings), load_spec(spec), readings)
              for name, readings, spec in plans]
    fitters: dict[str, Fitter] = {}
    rows = []
    for name, case, spec_obj, readings in loaded:
        say(f"fitting {name}")
        fitter = fitters.get(spec_obj.sha256)
        try:
            if fitter is None:
                raise StructureError("no compiled model for this spec yet")
            tree = fitter.fit(case, draws=draws, tune=tune, chains=chains, seed=seed)
        except StructureError:  # another spec or shape: compile this alternative's own model
            fitter = Fitter.for_case(case, spec_obj)
            fitters[spec_obj.sha256] = fitter
            tree = fitter.fit(case, draws=draws, tune=tune, chains=chains, seed=seed)
        verdict = gate(tree)
        table = quantity_table(tree, verdict, tuple(sorted({0.9, 0.95, mass})))
        summary = summarize(tree, verdict, table, mass=mass)
        claims = {c.id: {"value": c.value, "inflation": c.inflation, "p_possible": c.p_possible,
                         "p_possible_text": c.p_possible_text} for c in summary.claims}
        rows.append(Row(name, readings, spec_obj.id, verdict.passed, summary.true_enrolments,
                        claims))
    return rows


def conclusions(rows: list[Row]) -> list[str]:
    """Which conclusions hold under every converged alternative, and which change.

    Fits that failed the diagnostics gate are left out of the comparison and named.
    """
    lines = []
    failed = [r.name for r in rows if not r.gate_passed]
    rows = [r for r in rows if r.gate_passed]
    if not rows:
        return [f"UNCONVERGED (do not quote): {', '.join(failed)}; no conclusion can be drawn."]
    claim_ids = list(rows[0].claims)
    for claim in claim_ids:
        impossible = [r.claims[claim]["p_possible"] < IMPOSSIBLE_BELOW for r in rows]
        if all(impossible):
            lines.append(f"Claim {claim} was not physically possible (P < {IMPOSSIBLE_BELOW}) under "
                         "every converged alternative.")
        elif not any(impossible):
            lines.append(f"Claim {claim} was possibly physically possible under every "
                         "alternative.")
        else:
            changed = [r.name for r, imp in zip(rows, impossible, strict=True) if not imp]
            lines.append(f"CHANGES: claim {claim} is no longer clearly impossible under "
                         f"{', '.join(changed)}.")
    smallest = min(c["value"] for c in rows[0].claims.values())
    below = [r.true_enrolments.upper < smallest for r in rows]
    if all(below):
        lines.append(f"The upper end of every interval of true enrolments is below the smallest "
                     f"claim ({smallest:,}).")
    else:
        changed = [r.name for r, b in zip(rows, below, strict=True) if not b]
        lines.append(f"CHANGES: the interval of true enrolments reaches the smallest claim "
                     f"({smallest:,}) under {', '.join(changed)}.")
    if failed:
        lines.append(f"UNCONVERGED, left out of these conclusions (do not quote; refit with more "
                     f"--draws): {', '.join(failed)}.")
    return lines


def table_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """Flat rows for CSV and printing."""
    out = []
    for r in rows:
        row: dict[str, Any] = {
            "alternative": r.name, "spec": r.spec, "readings": "+".join(r.readings),
            "gate_passed": r.gate_passed, "true_median": r.true_enrolments.median,
            "true_lower": r.true_enrolments.lower, "true_upper": r.true_enrolments.upper}
        for claim, c in r.claims.items():
            row[f"{claim}_inflation_median"] = c["inflation"].median
            row[f"{claim}_inflation_lower"] = c["inflation"].lower
            row[f"{claim}_inflation_upper"] = c["inflation"].upper
            row[f"{claim}_p_possible"] = c["p_possible_text"]
        out.append(row)
    return out


def forest_plot(rows: list[Row], stamp: str | None = None) -> Any:
    """Intervals of true enrolments and of each claim's inflation under every alternative."""
    from matplotlib.figure import Figure

    claims = list(rows[0].claims)
    fig = Figure(figsize=(8.2, 1.2 + 0.45 * len(rows)), layout="constrained")
    axes = fig.subplots(1, 1 + len(claims), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))[::-1]
    panels = [("true enrolments (people)", [r.true_enrolments for r in rows])]
    panels += [(f"inflation of {c}", [r.claims[c]["inflation"] for r in rows]) for c in claims]
    for ax, (title, intervals) in zip(axes, panels, strict=True):
        for yi, iv, row in zip(y, intervals, rows, strict=True):
            color = "#4477aa" if row.gate_passed else "#b00020"
            ax.plot([iv.lower, iv.upper], [yi, yi], color=color, linewidth=2)
            ax.plot([iv.median], [yi], "o", color=color)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, [r.name for r in rows], fontsize=8)
    for value in (c["value"] for c in rows[0].claims.values()):
        axes[0].axvline(value, color="0.5", linestyle=":", linewidth=1)
    mass = rows[0].true_enrolments.mass
    fig.suptitle(f"Sensitivity: medians and {mass:.0%} intervals (dotted: the claims; red: failed "
                 "the diagnostics gate, do not quote)"
                 + (f"\n{stamp}" if stamp else ""), fontsize=10)
    return fig


def render(rows: list[Row]) -> str:
    """The side-by-side table as plain text."""
    lines = []
    for r in rows:
        parts = [f"{r.name:34s} true enrolments {format_number(r.true_enrolments.median):>6s} "
                 f"({format_number(r.true_enrolments.lower)}-"
                 f"{format_number(r.true_enrolments.upper)})"]
        for claim, c in r.claims.items():
            iv = c["inflation"]
            parts.append(f"{claim} x{format_number(iv.median)} ({format_number(iv.lower)}-"
                         f"{format_number(iv.upper)}), P(possible) {c['p_possible_text']}")
        lines.append("; ".join(parts) + ("" if r.gate_passed else "  [UNCONVERGED]"))
    return "\n".join(lines)
