"""How the answer moves: refit a case under named alternatives and put the headlines side by side.

Two complementary checks.

* **Refits under alternatives** (:func:`run_sensitivity`). An alternative is a reading of the case
  (``reading:NAME``, from its ``[readings.*]``), another spec (``spec:NAME_OR_PATH``, usually a file
  in ``models/`` that extends the baseline), a prior restated on the command line
  (``prior:handle_time=1-20``: 90% between 1 and 20 in the parameter's unit, same family as the
  base spec's; ``@0.95`` after the interval for another mass), a structural switch
  (``structure:honest_claims=false``) or several of these joined with ``+``. Every fit is gated and
  summarised into a :class:`Row`; :func:`conclusions` says whether a conclusion ("claim X was not
  physically possible", "the truth is below the smallest claim") holds under every converged
  alternative. The fits run on :func:`truecount.workflows.runner.run_tasks` (in this process or on Dask
  workers), each worker compiling a model once per spec and reusing it for readings.
* **Power-scaling sensitivity** of one fit
  (:func:`truecount.inference.analysis.power_scaling`, Kallioinen et al. 2024, via
  ``arviz_stats.psense``): how much the posterior of each headline quantity moves when the prior
  or the likelihood is raised to a power near 1, by importance weighting, without refits. Every
  :class:`~truecount.inference.analysis.Analysis` offers it; the report shows it.

:func:`write_outputs` writes a folder (``sensitivity.json``, ``sensitivity.csv``,
``sensitivity.txt``, ``forest.png``, the generated spec files) that ``truecount report RUN_DIR
--sensitivity FOLDER`` turns into the report's sensitivity section.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from truecount.errors import InputError
from truecount.inference.analysis import Options, fit_and_analyse
from truecount.inference.results import Interval, format_number
from truecount.inputs.case import load_case
from truecount.inputs.spec import DISTRIBUTIONS, PARAMETERS, STRUCTURE, load_spec, resolve_spec_path

#: The alternatives shipped for every case that has the matching readings.
DEFAULT_ALTERNATIVES = (
    "reading:round_the_clock", "reading:open_from_announcement", "spec:handle_time_wide",
    "spec:handle_time_narrow", "spec:honest_likely",
)
#: A claim counts as "not physically possible" below this posterior probability.
IMPOSSIBLE_BELOW = 0.05
RESULTS_FILE = "sensitivity.json"


@dataclass(frozen=True)
class Alternative:
    """One way of refitting the case: readings, another spec, and priors or switches restated."""

    name: str
    readings: tuple[str, ...] = ()
    spec: str | None = None  # a spec name or path; None: the base spec
    priors: tuple[tuple[str, float, float, float], ...] = ()  # (parameter, lower, upper, mass)
    structure: tuple[tuple[str, str], ...] = ()

    @property
    def generated(self) -> bool:
        """Whether the alternative needs a spec file written for it."""
        return bool(self.priors or self.structure)


@dataclass(frozen=True)
class Row:
    """The headline of one fit."""

    name: str
    readings: tuple[str, ...]
    spec: str
    gate_passed: bool
    true_enrolments: Interval
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit: str = ""  # the sampler settings that gave this row, and whether it is a refit

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (intervals as dicts)."""
        data = asdict(self)
        data["readings"] = list(self.readings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """Inverse of :meth:`to_dict`."""
        claims = {k: {**c, "inflation": Interval(**c["inflation"])}
                  for k, c in data["claims"].items()}
        return cls(data["name"], tuple(data["readings"]), data["spec"], bool(data["gate_passed"]),
                   Interval(**data["true_enrolments"]), claims, str(data.get("fit", "")))


_PRIOR = re.compile(r"^(?P<name>\w+)=(?P<lower>[0-9.eE+]+)-(?P<upper>[0-9.eE+]+)"
                    r"(?:@(?P<mass>[0-9.]+))?$")
_USAGE = ("reading:NAME, spec:NAME_OR_PATH, prior:PARAMETER=LOWER-UPPER[@MASS] or "
          "structure:SWITCH=VALUE, several joined with +")


def parse_alternative(text: str, base_spec: str = "baseline") -> Alternative:
    """``"reading:A+spec:B"`` -> :class:`Alternative`; every part is checked, nothing is fitted."""
    readings: list[str] = []
    spec: str | None = None
    priors: list[tuple[str, float, float, float]] = []
    structure: list[tuple[str, str]] = []
    for part in text.split("+"):
        kind, _, value = part.partition(":")
        if kind == "reading" and value:
            readings.append(value)
        elif kind == "spec" and value:
            spec = value
        elif kind == "prior" and (m := _PRIOR.match(value)):
            name, mass = m["name"], float(m["mass"] or 0.9)
            try:
                lower, upper = float(m["lower"]), float(m["upper"])
            except ValueError:
                lower = upper = math.nan
            if name not in PARAMETERS:
                raise InputError("--vary", "", repr(text), "a prior of one of "
                                 + ", ".join(PARAMETERS), f"{name!r} is not a model parameter.")
            if not (0 <= lower < upper and 0 < mass < 1):
                raise InputError("--vary", "", repr(text), "prior:PARAMETER=LOWER-UPPER with "
                                 "0 <= LOWER < UPPER, and @MASS between 0 and 1")
            priors.append((name, lower, upper, mass))
        elif kind == "structure" and "=" in value:
            key, _, choice = value.partition("=")
            if key not in STRUCTURE:
                raise InputError("--vary", "", repr(text), "a switch of " + ", ".join(STRUCTURE))
            allowed = [str(c).lower() for c in STRUCTURE[key].choices]
            if choice.lower() not in allowed:
                raise InputError("--vary", "", repr(text), f"{key} one of " + ", ".join(allowed))
            structure.append((key, choice.lower()))
        else:
            raise InputError("--vary", "", repr(text), _USAGE)
    return Alternative(text, tuple(readings), spec, tuple(priors), tuple(structure))


def spec_text(alt: Alternative, base_spec: str) -> str:
    """The TOML of a spec that extends ``alt.spec`` (or ``base_spec``) with ``alt``'s changes."""
    parent = load_spec(alt.spec or base_spec)
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", alt.name).strip("_")
    lines = ["# Written by truecount sensitivity for the alternative " + json.dumps(alt.name),
             "schema_version = 1", f"id = {json.dumps(f'{parent.id}-{slug}')}",
             f"title = {json.dumps(f'{parent.title}; {alt.name}')}",
             f"extends = {json.dumps(str(resolve_spec_path(parent.path).resolve()))}", ""]
    for name, lower, upper, mass in alt.priors:
        prior = parent.priors[name]
        dist = prior.dist if DISTRIBUTIONS[prior.dist].elicit is not None else {
            "positive": "LogNormal", "unit": "Beta", "real": "Normal"}[prior.parameter.support]
        elicit = (f"{{ upper = {upper!r}, mass = {mass!r} }}" if dist in ("HalfNormal",
                                                                           "Exponential")
                  else f"{{ lower = {lower!r}, upper = {upper!r}, mass = {mass!r} }}")
        lines += [f"[priors.{name}]", f"unit = {json.dumps(prior.parameter.unit)}",
                  f"dist = {json.dumps(dist)}", f"elicit = {elicit}",
                  f"reason = {json.dumps('Sensitivity alternative given on the command line.')}",
                  ""]
    if alt.structure:
        lines.append("[structure]")
        for key, choice in alt.structure:
            value = choice if choice in ("true", "false") else json.dumps(choice)
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Task:
    """One fit of a sensitivity run (what a worker needs)."""

    name: str
    case: str
    readings: tuple[str, ...]
    spec: str
    draws: int
    tune: int
    chains: int
    seed: int
    mass: float
    cores: int | None = None
    target_accept: float = 0.95
    retry: bool = True


def fit_alternative(task: Task) -> Row:
    """Fit ``task`` with this process's compiled model for its spec and summarise it.

    With ``task.retry``, a fit that fails the diagnostics gate is refitted once, with smaller
    steps (divergences) or twice the draws (low ESS); the row says so. The refit is gated too.
    """
    from truecount.workflows.runner import compiled

    fitter, case = compiled(task.case, task.spec, task.readings)
    analysis = fit_and_analyse(fitter, case, Options(mass=task.mass), draws=task.draws,
                               tune=task.tune, chains=task.chains, seed=task.seed,
                               cores=task.cores, target_accept=task.target_accept,
                               retry=task.retry)
    tree, verdict, summary = analysis.tree, analysis.verdict, analysis.summary
    draws, target_accept = tree.attrs["draws"], tree.attrs["target_accept"]
    refit = f"; {analysis.note}" if analysis.note else ""
    settings = (f"{task.chains} x {draws:,} draws, target_accept {target_accept:g}{refit}")
    claims = {c.id: {"value": c.value, "inflation": c.inflation, "p_possible": c.p_possible,
                     "p_possible_text": c.p_possible_text} for c in summary.claims}
    return Row(task.name, task.readings, fitter.spec.id, verdict.passed, summary.true_enrolments,
               claims, settings)


def plan(case_path: str | Path, base_spec: str, alternatives: tuple[str, ...], spec_dir: Path,
         say: Any = None, strict: bool = False) -> list[tuple[str, tuple[str, ...], str]]:
    """(name, readings, spec path) of the baseline and every alternative, all inputs checked.

    Specs of alternatives given on the command line are written into ``spec_dir``. Alternatives
    whose readings the case lacks are skipped with a message (the shipped ones name KSS's
    readings), or refused with ``strict`` (alternatives a user named).
    """
    say = say or (lambda text: None)
    case = load_case(case_path)
    base = str(load_spec(base_spec).path.resolve())
    plans: list[tuple[str, tuple[str, ...], str]] = [("baseline", (), base)]
    for text in alternatives:
        alt = parse_alternative(text, base_spec)
        if any(r not in case.readings for r in alt.readings) and not strict:
            say(f"skipping {text}: the case defines no such reading")
            continue
        if alt.generated:
            spec_dir.mkdir(parents=True, exist_ok=True)
            path = spec_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "_", text) + ".toml")
            path.write_text(spec_text(alt, base_spec), encoding="utf-8")
            spec = str(path)
        else:
            spec = str(load_spec(alt.spec or base_spec).path.resolve())
        load_case(case_path, alt.readings)
        load_spec(spec)
        plans.append((text, alt.readings, spec))
    return plans


def run_sensitivity(case_path: str | Path, base_spec: str = "baseline",
                    alternatives: tuple[str, ...] = DEFAULT_ALTERNATIVES, *, draws: int = 2000,
                    tune: int = 1000, chains: int = 4, seed: int = 0, mass: float = 0.9,
                    workers: int = 1, scheduler: str | None = None, spec_dir: Path | None = None,
                    target_accept: float = 0.95, retry: bool = True, strict: bool = False,
                    progress: Any = None) -> list[Row]:
    """Fit the baseline and every alternative (rows in that order) on the parallel runner.

    ``workers == 1`` without a scheduler fits in this process, reusing one compiled model per spec;
    otherwise every Dask worker compiles the specs it is given once. Each fit's chains run on
    ``cpu_count // workers`` cores. ``retry``: see :func:`fit_alternative`; ``strict``: see
    :func:`plan`.
    """
    from truecount.workflows.runner import run_tasks

    say = progress or (lambda text: None)
    scratch = None
    if spec_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="truecount-specs-"))
    try:
        plans = plan(case_path, base_spec, alternatives, spec_dir or scratch or Path(), say,
                     strict)
        cores = None if workers == 1 and scheduler is None else max(
            1, (os.cpu_count() or 1) // workers)
        tasks = [Task(name, str(Path(case_path).resolve()), readings, spec, draws, tune, chains,
                      seed, mass, cores, target_accept, retry) for name, readings, spec in plans]
        rows = run_tasks(fit_alternative, tasks, workers=workers, scheduler=scheduler,
                         on_result=lambda row, n: say(
                             f"{n}/{len(tasks)} fitted: {row.name}"
                             + ("" if row.gate_passed else " (failed the diagnostics gate)")))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    order = [name for name, _, _ in plans]
    return sorted(rows, key=lambda r: order.index(r.name))


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
            "gate_passed": r.gate_passed, "fit": r.fit, "true_median": r.true_enrolments.median,
            "true_lower": r.true_enrolments.lower, "true_upper": r.true_enrolments.upper}
        for claim, c in r.claims.items():
            row[f"{claim}_inflation_median"] = c["inflation"].median
            row[f"{claim}_inflation_lower"] = c["inflation"].lower
            row[f"{claim}_inflation_upper"] = c["inflation"].upper
            row[f"{claim}_p_possible"] = c["p_possible_text"]
        out.append(row)
    return out


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
    refits = [f"  {r.name}: {r.fit}" for r in rows if "refit" in r.fit]
    if refits:
        lines += ["", "Refitted after failing the diagnostics gate (the row is the refit):", *refits]
    return "\n".join(lines)


def write_outputs(out: Path, rows: list[Row], meta: dict[str, Any], spec_dir: Path | None = None,
                  stamp: str | None = None, force: bool = False) -> Path:
    """Write a sensitivity folder (JSON, CSV, text, forest plot, generated specs) into ``out``.

    ``out`` must not exist or be empty, or, with ``force``, be a sensitivity folder (the CLI
    claims it before fitting, :func:`truecount.outputs.runs.claimed`); files are written to a temporary
    folder beside it and renamed into place, so an interruption leaves no half of one.
    """
    import pandas as pd

    from truecount.outputs.figures import figure_png, forest_plot
    from truecount.outputs.runs import claimed

    with claimed(out, force, RESULTS_FILE) as claim, claim.written_whole() as tmp:
        text = render(rows) + "\n\n" + "\n".join(conclusions(rows))
        data = {**meta, "rows": [r.to_dict() for r in rows], "conclusions": conclusions(rows)}
        (tmp / RESULTS_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        pd.DataFrame(table_rows(rows)).to_csv(tmp / "sensitivity.csv", index=False)
        (tmp / "sensitivity.txt").write_text(text + "\n", encoding="utf-8")
        (tmp / "forest.png").write_bytes(figure_png(forest_plot(rows, stamp)))
        if spec_dir is not None and spec_dir.exists() and any(spec_dir.iterdir()):
            shutil.copytree(spec_dir, tmp / "specs")
    return out


def load_outputs(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    """The rows and settings of a folder written by :func:`write_outputs`."""
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise InputError(folder, "", f"no {RESULTS_FILE}", "a folder written by `truecount "
                         "sensitivity`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [Row.from_dict(r) for r in data["rows"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(path, "rows", f"unreadable ({type(exc).__name__})",
                         "the file as `truecount sensitivity` wrote it", "Rerun it.") from None
    meta = {k: v for k, v in data.items() if k != "rows"}  # with the conclusions as written
    return rows, meta
