"""The ``truecount`` command line.

Each sub-command is a thin layer: parse options, call the library, render the result. Any
:class:`~truecount.errors.InputError` is printed as one line (``truecount: error: FILE: FIELD: ...``)
and the command exits with status 2, never with a traceback.

Exit statuses: 0 done; 1 inference failed (the sampler raised, the model could not be initialised,
the sampler stopped early: one line, nothing written); 2 bad input; 3 the diagnostics gate failed;
4 ``rerun`` reproduced other numbers; 130 interrupted by Ctrl-C (SIGINT) and 143 by SIGTERM, with
the run folder left as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from truecount import __version__
from truecount.errors import InputError, TruecountError, show
from truecount.inputs.case import load_case
from truecount.model.bounds import (
    DEFAULT_HANDLE_TIME,
    CapacityResult,
    case_capacity,
    options_capacity,
    override_channels,
)

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_UNCONVERGED = 3
EXIT_MISMATCH = 4
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
#: Fewer kept draws per chain than this are refused: split R-hat and tail ESS are not meaningful.
MIN_DRAWS = 100


class Terminated(BaseException):
    """Raised by the CLI's SIGTERM handler, so that every ``finally`` cleanup runs as on Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in run.json
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        result: int = args.run(args)
        return result
    except InputError as exc:
        print(f"truecount: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except TruecountError as exc:
        print(f"truecount: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a full disk, a folder removed under us: what failed, in one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"truecount: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, Terminated) as exc:
        print(_interrupted(args), file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _identity(path: Any) -> tuple[int, int] | None:
    """Which folder is at ``path`` (device and inode), to tell afterwards whether it was replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _interrupted(args: argparse.Namespace) -> str:
    target = getattr(args, "target", None)
    if target is None:
        return "truecount: interrupted"
    out, before = target
    if _identity(out) == before:
        return f"truecount: interrupted; nothing written ({out} left as it was)"
    return f"truecount: interrupted after {out} was written"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truecount",
        description="Estimate how many people really enrolled in a recruitment drive from the "
        "published claims and the capacity of the enrolment channel.",
    )
    parser.add_argument("--version", action="version", version=f"truecount {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cap = sub.add_parser(
        "capacity",
        help="what the channel could have registered, and what each claim requires",
        description="Capacity arithmetic of a case (or of options alone): per channel the "
        "line-hours and the most registrations at a handle time; per claim the handle time it "
        "implies and the days it would need. Options override the case.",
        epilog="examples:\n  truecount capacity data/kss_2021.toml\n"
        "  truecount capacity data/kss_2021.toml --reading round_the_clock --handle-time 3\n"
        "  truecount capacity --lines 6 --hours-per-day 24 --days 7 --handle-time 5 "
        "--claim 49000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cap.add_argument("case", nargs="?", help="case file (TOML); omit to use options alone")
    cap.add_argument("--reading", action="append", default=[], metavar="NAME",
                     help="apply an alternative reading defined in the case (repeatable)")
    cap.add_argument("--handle-time", type=_positive(float), default=DEFAULT_HANDLE_TIME,
                     metavar="MIN", help="mean handle time in minutes "
                     f"(default {DEFAULT_HANDLE_TIME:g}, shown in the output)")
    cap.add_argument("--lines", type=_positive(int), metavar="N", help="number of lines")
    cap.add_argument("--hours-per-day", type=_hours, metavar="H", help="hours open per day (0-24]")
    cap.add_argument("--days", type=_positive(int), metavar="N", help="number of open days")
    cap.add_argument("--claim", type=_positive(int), action="append", default=[], metavar="N",
                     help="a claimed number (repeatable; without a case file only)")
    cap.add_argument("--json", action="store_true", help="print the result as JSON")
    cap.set_defaults(run=_run_capacity)

    fitp = sub.add_parser(
        "fit",
        help="posterior of the true number of enrolments, behind a diagnostics gate",
        description="Fit the model of a case under a spec, check convergence (R-hat, ESS, "
        "divergences, E-BFMI) and write the posterior to a run folder. A fit that fails the gate "
        "is refitted once (smaller steps after divergences, else twice the draws; --no-retry "
        "turns this off); if the refit fails too, it exits with status 3 and writes nothing, "
        "unless --allow-unconverged, which writes it stamped UNCONVERGED.",
        epilog="example:\n  truecount fit data/kss_2021.toml --out results/kss",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fitp.add_argument("case", help="case file (TOML)")
    fitp.add_argument("--spec", default="baseline",
                      help="model spec: a path, or the name of a shipped spec "
                      "(default: baseline)")
    fitp.add_argument("--reading", action="append", default=[], metavar="NAME",
                      help="apply an alternative reading defined in the case (repeatable)")
    fitp.add_argument("--out", metavar="DIR", help="run folder (default: results/CASE_ID)")
    fitp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fitp.add_argument("--draws", type=_positive(int), default=2000,
                      help="kept draws per chain (default 2000)")
    fitp.add_argument("--tune", type=_positive(int), default=1000,
                      help="tuning steps per chain (default 1000)")
    fitp.add_argument("--chains", type=_positive(int), default=4, help="chains (default 4)")
    fitp.add_argument("--target-accept", type=_unit_interval, default=0.95,
                      help="NUTS target acceptance (default 0.95)")
    fitp.add_argument("--no-retry", action="store_true",
                      help="do not refit a fit that fails the gate (default: refit it once, with "
                      "target_accept 0.99 after divergences, else twice the draws)")
    fitp.add_argument("--sampler", choices=("jax", "nutpie", "pymc"), default="jax",
                      help="NUTS implementation: jax (default: blackjax on XLA, compiled programs "
                      "cached between processes), nutpie (numba; compiles anew in every "
                      "process) or pymc")
    _report_options(fitp)
    fitp.add_argument("--no-report", action="store_true", help="skip the report")
    fitp.add_argument("--json", action="store_true", help="print the summary as JSON")
    fitp.add_argument("--quiet", action="store_true",
                      help="say nothing while fitting (no progress bar); warnings and errors stay")
    fitp.add_argument("--force", action="store_true", help="replace a non-empty run folder")
    fitp.add_argument("--allow-unconverged", action="store_true",
                      help="write and show results that failed the gate, stamped UNCONVERGED")
    fitp.set_defaults(run=_run_fit)

    rep = sub.add_parser(
        "report",
        help="(re)write the report of a run folder",
        description="Write report.md, report.html (self-contained), summary.csv, table.tex and "
        "figures/ into a run folder made by `truecount fit`, replacing earlier report files. "
        "Refuses if the case or spec changed since the fit.",
        epilog="example:\n  truecount report results/kss --threshold 3500 --interval hdi",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("run_dir", help="run folder")
    rep.add_argument("--sensitivity", metavar="DIR",
                     help="add the alternatives of a `truecount sensitivity` folder to the report")
    _report_options(rep)
    rep.set_defaults(run=_run_report)

    cal = sub.add_parser(
        "calibrate",
        help="simulation-based calibration, or coverage on discrete-event simulations",
        description="Simulate campaigns with the case's channels and claims, fit each, and check "
        "calibration: SBC ranks (--simulator sbc: parameters from the prior, our forward model) "
        "or interval coverage of true enrolments (--simulator des: the independent "
        "discrete-event call centre). Runs on Dask: a local cluster of --workers processes, or "
        "the cluster at --scheduler; each worker compiles the model once. Results are appended "
        "to DIR/results.jsonl as they arrive, so rerunning the same command resumes.",
        epilog="example:\n  truecount calibrate data/kss_2021.toml --sims 200 --workers 2 "
        "--out results/sbc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cal.add_argument("case", help="case file whose channels and claims the simulations share")
    cal.add_argument("--spec", default="baseline", help="model spec (default: baseline)")
    cal.add_argument("--reading", action="append", default=[], metavar="NAME")
    cal.add_argument("--sims", type=_positive(int), default=200, help="simulations (default 200)")
    cal.add_argument("--simulator", choices=("sbc", "des"), default="sbc")
    cal.add_argument("--inflation", default="prior", metavar="WORLD",
                     help="how the simulator inflates claims: 'prior' (the spec's, default) or "
                     "'log-uniform:MAX[:HONEST]', a world the prior does not describe: a share "
                     "HONEST honest (default 0.15), the rest inflated by a factor log-uniform "
                     "on 1-MAX (e.g. log-uniform:60:0.15)")
    cal.add_argument("--workers", type=_positive(int), default=2,
                     help="local Dask workers (default 2; 1 runs in this process)")
    cal.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    cal.add_argument("--draws", type=_positive(int), default=500)
    cal.add_argument("--tune", type=_positive(int), default=500)
    cal.add_argument("--chains", type=_positive(int), default=4)
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--retry", action="store_true",
                     help="refit a fit that fails its gate once, as fit does (default: no refits)")
    cal.add_argument("--out", metavar="DIR", help="results folder (default results/calibrate-SIM)")
    cal.set_defaults(run=_run_calibrate)

    sens = sub.add_parser(
        "sensitivity",
        help="refit under alternative readings, specs and priors, headlines side by side",
        description="Fit the case under the baseline and each alternative, print the intervals "
        "of true enrolments and of each claim's inflation side by side, and say whether any "
        "conclusion changes. An alternative is reading:NAME (from the case), spec:NAME_OR_PATH, "
        "prior:PARAMETER=LOWER-UPPER[@MASS] (90%% of the prior between LOWER and UPPER unless "
        "@MASS), structure:SWITCH=VALUE, or several joined with +. Fits run on Dask (--workers "
        "local processes, or the cluster at --scheduler), each worker compiling a model once per "
        "spec. Writes sensitivity.json/.csv/.txt and forest.png to --out; `truecount report "
        "RUN_DIR --sensitivity OUT` adds them to a report.",
        epilog="example:\n  truecount sensitivity data/kss_2021.toml --out results/sensitivity\n"
        "  truecount sensitivity data/kss_2021.toml --vary reading:round_the_clock+spec:"
        "handle_time_wide --vary prior:handle_time=1-30 --vary structure:honest_claims=false",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sens.add_argument("case", help="case file (TOML)")
    sens.add_argument("--spec", default="baseline", help="baseline spec (default: baseline)")
    sens.add_argument("--vary", action="append", default=[], metavar="ALT",
                      help="an alternative (repeatable; default: the shipped ones)")
    sens.add_argument("--draws", type=_positive(int), default=2000)
    sens.add_argument("--tune", type=_positive(int), default=1000)
    sens.add_argument("--chains", type=_positive(int), default=4)
    sens.add_argument("--seed", type=int, default=0)
    sens.add_argument("--mass", type=_mass, default=0.9)
    sens.add_argument("--target-accept", type=_unit_interval, default=0.95,
                      help="NUTS target acceptance of every fit (default 0.95)")
    sens.add_argument("--no-retry", action="store_true",
                      help="do not refit a fit that fails the gate (default: refit it once, with "
                      "target_accept 0.99 after divergences, else twice the draws)")
    sens.add_argument("--workers", type=_positive(int),
                      help="local Dask workers (default: one per 4 cores, at least 1; 1 fits in "
                      "this process, sharing one compiled model between the case's readings)")
    sens.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    sens.add_argument("--out", metavar="DIR", help="folder (default results/sensitivity-CASE_ID)")
    sens.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    sens.set_defaults(run=_run_sensitivity)

    rer = sub.add_parser(
        "rerun",
        help="refit a run folder with its recorded inputs and settings; do the numbers match?",
        description="Refit the case and spec copied into RUN_DIR/inputs/ (the exact files "
        "fitted, checked against their recorded hashes) with the recorded readings, seed, draws, "
        "tune, chains, target_accept and interval options, and compare every number of "
        "summary.json and every posterior draw with the run's. Says whether the original case "
        "or spec files changed since, and whether installed package versions differ from the "
        "recorded ones. Exits 0 when the numbers match to the last digit, 4 when they do not. "
        "Writes nothing unless --out is given.",
        epilog="example:\n  truecount rerun results/kss\n"
        "  truecount rerun results/kss --out results/kss-rerun",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rer.add_argument("run_dir", help="run folder written by `truecount fit`")
    rer.add_argument("--out", metavar="DIR", help="also write the new run folder here")
    rer.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    rer.set_defaults(run=_run_rerun)

    cache = sub.add_parser(
        "cache",
        help="show or clear the compiled-model caches",
        description="The first fit of a model structure compiles it (with the default jax "
        "sampler about 20 s with empty caches on 2 cores, 2-3 s in a later process). "
        "truecount keeps the sampler's programs (jax-programs/, keyed by a digest of the model's "
        "graph, the settings, the library versions and the sampler's source) with XLA's "
        "executables (also keyed by the processor and XLA's flags, checked whole before use) in "
        "its cache folder, so that a changed model or an upgrade never reuses a stale entry; PyTensor "
        "keeps its compiled pieces (nutpie and pymc samplers) in its compile folder, keyed the "
        "same way; truecount remembers how long each structure took to compile, for the "
        "message shown while compiling. This shows the folders and their size, or clears them.",
    )
    cache.add_argument("--clear", action="store_true", help="delete the cached compiled code")
    cache.set_defaults(run=_run_cache)
    return parser


def _run_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from truecount.inputs.spec import load_spec
    from truecount.model.simulate import InflationWorld
    from truecount.outputs.runs import claimed
    from truecount.workflows.calibration import JOB_FILE, Job, read_job

    load_case(args.case, args.reading)  # bad input fails here, before any worker starts
    load_spec(args.spec)
    try:
        InflationWorld.parse(args.inflation)
    except ValueError as exc:
        raise InputError("--inflation", "", repr(args.inflation), str(exc),
                         "Give --inflation prior, or e.g. --inflation log-uniform:60:0.15.") from None
    out = Path(args.out) if args.out else Path("results") / f"calibrate-{args.simulator}"
    job = Job(case=str(Path(args.case).resolve()), spec=args.spec, readings=tuple(args.reading),
              simulator=args.simulator, draws=args.draws, tune=args.tune, chains=args.chains,
              cores=1, seed=args.seed, inflation=args.inflation, retry=args.retry)
    # A calibration folder is resumed in place: new, empty or one with job.json (never a folder of
    # other files), and claimed by one process at a time.
    with claimed(out, True, JOB_FILE, say=_note):
        previous = out / JOB_FILE
        if previous.exists() and read_job(previous) != job:
            raise InputError("--out", "", f"{str(out)!r} (holds a run with other settings)",
                             "the folder of the same run, or a new one",
                             "Use the same options to resume, or choose another --out.")
        return _calibrate_into(args, job, out)


def _calibrate_into(args: argparse.Namespace, job: Any, out: Any) -> int:
    from truecount.workflows.calibration import calibrate, write_outputs

    start = time.perf_counter()
    results = calibrate(job, args.sims, out, workers=args.workers, scheduler=args.scheduler,
                        progress=lambda text: print(f"truecount: {text}", file=sys.stderr))
    summary = write_outputs(out, job, results[: args.sims])
    print(f"{summary['simulations']} simulations ({args.simulator}) in "
          f"{time.perf_counter() - start:.0f} s; results in {out}/")
    if args.simulator == "sbc":
        verdict = "uniform for every quantity" if summary["all_uniform"] else (
            "NOT uniform for " + ", ".join(summary["not_uniform"]))
        print(f"SBC ranks: {verdict} (uniform: chi-square p >= 0.01 and the ECDF inside its "
              "simultaneous 99% band)")
    for row in summary["coverage"]:
        print(f"{row['mass']:.0%} intervals of true enrolments cover the truth in "
              f"{row['covered']}/{row['n']} = {row['rate']:.0%} (95% CI {row['ci_low']:.0%}-"
              f"{row['ci_high']:.0%}); median width {row['median_width']:,.0f}")
    print(f"diagnostics gate passed by {summary['simulations'] - summary['gate_failures']} of "
          f"{summary['simulations']} fits ({summary['gate_passed_first_time']} at the first "
          f"attempt, {summary['refitted']} refitted)")
    print(f"honest claims called impossible (P(possible) < 5%): "
          f"{summary['honest_called_impossible']} of {summary['honest_claims']}")
    return 0


def _run_sensitivity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from truecount.outputs.runs import claimed
    from truecount.workflows.sensitivity import DEFAULT_ALTERNATIVES, RESULTS_FILE

    _check_draws(args.draws)
    case = load_case(args.case)
    alternatives = tuple(args.vary) or DEFAULT_ALTERNATIVES
    out = Path(args.out) if args.out else Path("results") / f"sensitivity-{case.id}"
    # A few MB: tables, the forest plot and the generated specs.
    with claimed(out, args.force, RESULTS_FILE, 5_000_000, say=_note):
        args.target = (out, _identity(out))  # an interruption says whether out was touched
        return _sensitivity_into(args, case, alternatives, out)


def _sensitivity_into(args: argparse.Namespace, case: Any, alternatives: tuple[str, ...],
                      out: Any) -> int:
    import os
    import tempfile
    from pathlib import Path

    from truecount.workflows.sensitivity import conclusions, render, run_sensitivity, write_outputs

    say = lambda text: print(f"truecount: {text}", file=sys.stderr)  # noqa: E731
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="truecount-specs-") as scratch:
        specs = Path(scratch)
        # Every alternative is checked (run_sensitivity's plan) before the first fit; a reading
        # the user named must exist, while shipped alternatives the case cannot read are skipped.
        rows = run_sensitivity(args.case, args.spec, alternatives, draws=args.draws,
                               tune=args.tune, chains=args.chains, seed=args.seed,
                               mass=args.mass, scheduler=args.scheduler,
                               workers=args.workers or max(1, (os.cpu_count() or 1) // 4),
                               spec_dir=specs, target_accept=args.target_accept,
                               retry=not args.no_retry, strict=bool(args.vary), progress=say)
        failed = [r.name for r in rows if not r.gate_passed]
        meta = {"case_file": str(Path(args.case).resolve()), "case_sha256": case.sha256,
                "spec": args.spec, "alternatives": list(alternatives), "draws": args.draws,
                "tune": args.tune, "chains": args.chains, "seed": args.seed, "mass": args.mass,
                "target_accept": args.target_accept, "retry": not args.no_retry,
                "seconds": round(time.perf_counter() - start, 1),
                "command": ["truecount", *sys.argv[1:]]}
        write_outputs(out, rows, meta, specs, force=args.force,
                      stamp="UNCONVERGED fits in red: " + ", ".join(failed) if failed else None)
    print(render(rows) + "\n\n" + "\n".join(conclusions(rows)))
    print(f"\n{len(rows)} fits in {time.perf_counter() - start:.0f} s; written to {out}/")
    return 0 if not failed else EXIT_UNCONVERGED


def _run_cache(args: argparse.Namespace) -> int:
    import os
    import shutil
    from pathlib import Path

    import pytensor

    from truecount.inference.fitter import cache_folder, compile_times_file

    base = Path(pytensor.config.base_compiledir)
    folders = [Path(pytensor.config.compiledir), base / "numba"]  # PyTensor's numba cache
    # The JAX sampler's programs and XLA's executables, and the compile times (waiting message).
    folders += [cache_folder() / "jax-programs", compile_times_file()]
    if os.environ.get("NUMBA_CACHE_DIR"):
        folders.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    for folder in folders:
        files = [folder] if folder.is_file() else [f for f in folder.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        if args.clear and folder.exists():
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
            print(f"cleared {folder} ({size / 1e6:.1f} MB)")
        else:
            print(f"{folder}: {size / 1e6:.1f} MB")
    return 0


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mass", type=_mass, default=0.9,
                   help="mass of the credible intervals shown (default 0.9)")
    p.add_argument("--interval", choices=("eti", "hdi"), default="eti",
                   help="interval type: equal-tailed (default) or highest-density")
    p.add_argument("--threshold", type=_positive(float), action="append", default=[],
                   metavar="N", help="report P(true enrolments < N) (repeatable)")


def _options(args: argparse.Namespace) -> Any:
    from truecount.inference.analysis import Options

    return Options(kind=args.interval, mass=args.mass, thresholds=tuple(args.threshold))


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from truecount.inference.analysis import analyse
    from truecount.outputs.report import write_report
    from truecount.outputs.runs import load_run

    folder = Path(args.run_dir)
    tree, case, spec, _ = load_run(folder)
    sensitivity = None
    if args.sensitivity:
        from truecount.workflows.sensitivity import load_outputs

        sensitivity = load_outputs(Path(args.sensitivity))
        rows, meta = sensitivity
        if meta.get("case_sha256") != case.sha256 or rows[0].spec != spec.id:
            raise InputError("--sensitivity", "", f"{args.sensitivity!r} (made from another case "
                             "file or baseline spec than this run)",
                             f"a sensitivity folder of {case.path.name} under spec {spec.id}",
                             "Rerun `truecount sensitivity` on this run's case and spec.")
    analysis = analyse(tree, _options(args), claim_dates={c.id: c.label for c in case.claims})
    written = write_report(folder, analysis, case, spec, sensitivity=sensitivity)
    print(f"truecount: wrote {', '.join(str(p.relative_to(folder)) for p in written)} in "
          f"{folder}/")
    if tree.attrs.get("gate_passed") == 0:
        print("truecount: this run FAILED the diagnostics gate; the report is stamped "
              "UNCONVERGED", file=sys.stderr)
        return EXIT_UNCONVERGED
    return 0


def _between_0_and_1(what: str) -> Any:
    def convert(text: str) -> float:
        value: float = _positive(float)(text)
        if not value < 1:
            raise argparse.ArgumentTypeError(f"expected {what} in (0, 1), found {text!r}")
        return value
    return convert


_mass = _between_0_and_1("a probability mass")
_unit_interval = _between_0_and_1("a number")


def _check_draws(draws: int) -> None:
    if draws < MIN_DRAWS:
        raise InputError("--draws", "", str(draws), f"at least {MIN_DRAWS} kept draws per chain",
                         "Fewer cannot give a meaningful R-hat or ESS; the default is 2000.")


def _run_fit(args: argparse.Namespace) -> int:
    # Everything a user wrote is checked before the expensive part, the output folder included.
    from pathlib import Path

    from truecount.inputs.spec import load_spec
    from truecount.outputs.runs import RUN, claimed, expected_bytes

    _check_draws(args.draws)
    case = load_case(args.case, args.reading)
    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("results") / case.id
    need = expected_bytes(case.to_dataset(), args.chains, args.draws)
    with claimed(out, args.force, RUN, need, say=_note):
        args.target = (out, _identity(out))  # an interruption says whether out was touched
        return _fit_into(args, case, spec, out)


def _note(text: str) -> None:
    print(f"truecount: note: {text}", file=sys.stderr)


def _fit_into(args: argparse.Namespace, case: Any, spec: Any, out: Any) -> int:
    from truecount.outputs.runs import write_run

    for warning in case.warnings():
        print(f"truecount: warning: {warning}", file=sys.stderr)
    analysis = _fit_case(case, spec, _options(args), sampler=args.sampler, seed=args.seed,
                         draws=args.draws, tune=args.tune, chains=args.chains,
                         target_accept=args.target_accept, retry=not args.no_retry,
                         progress=sys.stderr.isatty() and not args.json, quiet=args.quiet)
    tree, verdict, summary = analysis.tree, analysis.verdict, analysis.summary
    if not verdict.passed and not args.allow_unconverged:
        print(f"truecount: {verdict.text}", file=sys.stderr)
        if verdict.divergences:  # more draws cannot remove divergences; smaller steps may
            advice = ("The sampler's steps were too large for this posterior: try "
                      "--target-accept 0.995 or another --seed")
        else:
            advice = "Try more --draws or --tune"
        print(f"truecount: nothing written. {advice}, or look at the draws with "
              "--allow-unconverged (stamped UNCONVERGED).", file=sys.stderr)
        return EXIT_UNCONVERGED
    from truecount.outputs.report import write_report
    from truecount.outputs.runs import run_info

    info = run_info(case, spec, tree, ["truecount", *args.argv], _recorded_options(args))
    report = None if args.no_report else (
        lambda folder: write_report(folder, analysis, case, spec))
    write_run(out, tree, summary, verdict, info, force=args.force, extra=report)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print(render_summary(summary, tree.attrs, out, report=not args.no_report))
    return 0 if verdict.passed else EXIT_UNCONVERGED


def _fit_case(case: Any, spec: Any, options: Any, *, seed: int, draws: int, tune: int,
              chains: int, target_accept: float | None = None, retry: bool = False,
              progress: bool = False, quiet: bool = False, sampler: str = "jax") -> Any:
    """Fit, gate and analyse, as ``fit`` and ``rerun`` share: an ``Analysis``.

    With ``retry`` a fit that fails the gate is refitted once (:func:`truecount.inference.fitter.fit_gated`)
    and the user is told; ``rerun`` reproduces the recorded settings directly, without a retry.
    ``quiet`` keeps what is said while fitting (not warnings or errors) off stderr.
    """
    import logging

    from truecount.inference.analysis import fit_and_analyse
    from truecount.inference.fitter import Fitter
    from truecount.model.build import build_model

    def say(text: str) -> None:
        if not quiet:
            print(f"truecount: {text}", file=sys.stderr)

    model = build_model(case, spec)
    logging.getLogger("pymc").setLevel(logging.WARNING)  # its "Sampling: [...]" lines are noise here
    fitter = Fitter(model, sampler)
    say(f"fitting {case.id} under {spec.id}: {chains} chains x ({tune} tuning + {draws} draws), "
        f"seed {seed}; compiling the model first ({_compile_estimate(fitter, draws, tune)})...")
    return fit_and_analyse(fitter, case, options, draws=draws, tune=tune, chains=chains,
                           seed=seed, target_accept=target_accept, retry=retry,
                           progress=progress and not quiet, say=say)


def _compile_estimate(fitter: Any, draws: int, tune: int) -> str:
    """What compiling will take: this machine's last time for the structure, else measured typicals."""
    seconds = fitter.expected_compile_seconds(draws, tune)
    if seconds is not None:
        return f"{seconds:.0f} s last time on this machine"
    # Measured on a 2-core machine (benchmarks/routes.py, docs/performance.md).
    typical = {"jax": "about 20 s with empty caches on 2 cores, 2-3 s for a structure seen before",
               "nutpie": "about 60 s with empty caches on 2 cores, 15-20 s after",
               "pymc": "about 60 s with empty caches on 2 cores, 15 s after"}
    return f"not timed on this machine yet: {typical.get(fitter.sampler, typical['pymc'])}"


def _recorded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``fit`` that shape its outputs, for run.json (and ``rerun``)."""
    return {"mass": args.mass, "interval": args.interval, "thresholds": list(args.threshold),
            "allow_unconverged": args.allow_unconverged, "no_report": args.no_report,
            "json": args.json, "force": args.force, "out": str(args.target[0])}


def _run_rerun(args: argparse.Namespace) -> int:
    from contextlib import nullcontext
    from pathlib import Path

    from truecount.outputs.runs import RUN, claimed, expected_bytes, read_summary, rerun_inputs

    folder = Path(args.run_dir)
    case, spec, info, notes = rerun_inputs(folder)
    old_summary = read_summary(folder)  # checked before the refit, not after
    out = Path(args.out) if args.out else None
    if out is not None and out.resolve() == folder.resolve():
        raise InputError("--out", "", f"{str(out)!r} (the run folder being rerun)",
                         "another folder")
    need = expected_bytes(case.to_dataset(), info["chains"], info["draws"])
    with claimed(out, args.force, RUN, need, say=_note) if out is not None else nullcontext():
        if out is not None:
            args.target = (out, _identity(out))
        return _rerun_into(args, folder, case, spec, info, notes, old_summary, out)


def _rerun_into(args: argparse.Namespace, folder: Any, case: Any, spec: Any, info: dict[str, Any],
                notes: list[str], old_summary: dict[str, Any], out: Any) -> int:
    from truecount.inference.analysis import Options
    from truecount.outputs.report import write_report
    from truecount.outputs.runs import (
        compare,
        environment_differences,
        open_posterior,
        run_info,
        write_run,
    )

    for note in notes:
        print(f"truecount: note: {note}", file=sys.stderr)
    for diff in environment_differences(info.get("environment")):
        print(f"truecount: warning: environment differs from the fit's: {diff}", file=sys.stderr)
    recorded = info.get("options", {})
    options = Options(kind=recorded.get("interval", "eti"), mass=recorded.get("mass", 0.9),
                      thresholds=tuple(recorded.get("thresholds", ())))
    analysis = _fit_case(
        case, spec, options, seed=info["seed"], draws=info["draws"], tune=info["tune"],
        chains=info["chains"], target_accept=info.get("target_accept"),
        sampler=info.get("sampler") or "nutpie")  # runs before the JAX route recorded none
    tree, verdict, summary = analysis.tree, analysis.verdict, analysis.summary
    new_summary = json.loads(json.dumps(summary.to_dict()))
    with open_posterior(folder) as old:
        names = tuple(sorted({*old["posterior"].data_vars, *tree["posterior"].data_vars}))
        diffs = compare(old_summary, new_summary, old, tree, names)
    if out is not None:
        new_info = run_info(case, spec, tree, ["truecount", *args.argv], recorded)
        new_info["rerun_of"] = str(folder.resolve())
        report = None if recorded.get("no_report") else (
            lambda f: write_report(f, analysis, case, spec))
        write_run(out, tree, summary, verdict, new_info, force=args.force, extra=report)
        print(f"truecount: the rerun is written to {out}/", file=sys.stderr)
    if not diffs:
        print(f"rerun of {folder}: numbers match to the last digit (summary.json and every "
              f"posterior draw of {len(names)} quantities)")
        if not verdict.passed:
            print("truecount: as recorded, this run FAILED the diagnostics gate", file=sys.stderr)
        return 0
    print(f"rerun of {folder}: numbers DIFFER ({len(diffs)} difference"
          f"{'' if len(diffs) == 1 else 's'}):")
    for diff in diffs:
        print(f"  {diff}")
    return EXIT_MISMATCH


def render_summary(summary: Any, attrs: Any, out: Any, report: bool = True) -> str:
    """The headline of a fit as plain text; every line stamped if the gate failed.

    Each prior-data conflict (``summary.conflicts``) is one loud line right under the headline.
    """
    from truecount.inference.results import CONFLICT

    lines = [
        f"{summary.case_id} under spec {summary.spec_id}: seed {summary.seed}, {summary.chains} "
        f"chains x {summary.draws:,} draws ({attrs.get('compile_seconds', 0):.0f} s compiling, "
        f"{attrs.get('sample_seconds', 0):.1f} s sampling)",
        "",
        f"True enrolments by the end of the drive: {summary.true_enrolments.text()}",
        *[f"{CONFLICT}: {conflict}" for conflict in summary.conflicts],
        f"Channel capacity over the window (most registrations possible): "
        f"{summary.capacity.text()}",
        "",
        "Claims:",
    ]
    for c in summary.claims:
        lines.append(
            f"  {c.id}: {c.value:,} {c.date}: inflation factor {c.inflation.text()};"
            f" P(physically possible) {c.p_possible_text}; P(honest) {c.p_honest:.2f};"
            f" P(counts call attempts) {c.p_counts_attempts:.2f}"
        )
    for t in summary.thresholds:
        lines.append(f"P(true enrolments < {t['threshold']:,.0f}) = {t['text']}")
    written = "Posterior, summary and report" if report else "Posterior and summary (no report)"
    lines += ["", summary.gate_text, f"{written} written to {out}/"]
    if summary.stamp:
        lines = [f"[{summary.stamp}]", *[f"UNCONVERGED | {line}" for line in lines]]
    return "\n".join(lines)


def _positive(kind: type) -> Any:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, "
                                             f"found {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, "
                                             f"found {text!r}")
        return value

    return convert


def _hours(text: str) -> float:
    value: float = _positive(float)(text)
    if value > 24:
        raise argparse.ArgumentTypeError(f"expected hours per day in (0, 24], found {text!r}")
    return value


def _run_capacity(args: argparse.Namespace) -> int:
    if args.case is None:
        for option, value in (("--lines", args.lines), ("--hours-per-day", args.hours_per_day),
                              ("--days", args.days)):
            if value is None:
                raise InputError(option, "", "nothing", "a value when no case file is given",
                                 "Give a case file, or --lines, --hours-per-day and --days.")
        if args.reading:
            raise InputError("--reading", "", show(args.reading[0]), "no --reading without a "
                             "case file")
        result = options_capacity(lines=args.lines, hours_per_day=args.hours_per_day,
                                  days=args.days, claims=args.claim, handle_time=args.handle_time)
    else:
        if args.claim:
            raise InputError("--claim", "", str(args.claim[0]), "no --claim with a case file",
                             "Claims come from the case; drop the case file to use --claim.")
        case = load_case(args.case, args.reading)
        case = override_channels(case, lines=args.lines, hours_per_day=args.hours_per_day,
                                 days=args.days)
        result = case_capacity(case, args.handle_time)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(render_capacity(result))
    for warning in result.warnings:
        print(f"truecount: warning: {warning}", file=sys.stderr)
    return 0


def render_capacity(result: CapacityResult) -> str:
    """The capacity result as an aligned plain-text table."""
    out = []
    if result.source == "options":
        out.append("Capacity from the options given")
    else:
        readings = ", ".join(result.readings) or "as stated in the case"
        out.append(f"Capacity of {result.source} (reading: {readings})")
    out.append(f"Handle time {result.handle_time:g} min per registration; every line busy every "
               "open hour; every answered call an enrolment (upper bounds).")
    out.append("")
    rows: list[tuple[str, ...]] = [
        ("channel", "lines", "hours", "days", "line-hours", "max registrations")]
    for c in result.channels:
        span = f"{c.days}" if c.first_day is None else f"{c.days} ({c.first_day} to {c.last_day})"
        if c.max_registrations is None:  # an online form
            rows.append((c.id, "online form", c.hours, span, "-", "not bounded"))
        else:
            rows.append((c.id, c.servers_label or str(c.servers), c.hours, span, f"{c.line_hours:,.0f}",
                         f"{c.max_registrations:,.0f}"))
    out.extend(_table(rows, right={1, 4, 5}))
    if any(c.kind == "call_centre" for c in result.channels):
        out.append("A call centre's agents are its lines here: callers who hold in its queue wait "
                   "for one, so its capacity is the same arithmetic (the queue changes how many "
                   "of its callers are answered, not how many its agents can take).")
    if any(c.kind == "walk_in" for c in result.channels):
        out.append("Walk-in desks are lines here too (a person queues for one and may leave); "
                   "where the sources give their number as a range, the capacity is the most "
                   "desks' (an upper bound, as the rest of the table).")
    if result.claims:
        out.append("")
        rows = [("claim", "value", "at", "line-hours before", "handle time needed",
                 "days needed", f"possible at {result.handle_time:g} min")]
        for k in result.claims:
            needed = ("-", "-") if k.handle_time_needed is None or k.days_needed is None else (
                _minutes(k.handle_time_needed), f"{k.days_needed:,.1f}")
            rows.append((k.id, f"{k.value:,}", k.date or "end", f"{k.line_hours_before:,.0f}",
                         *needed,
                         ("not bounded" if not k.bounded else "yes" if k.possible else "no")))
        out.extend(_table(rows, right={1, 3, 4, 5}))
        out.append("")
        out.append("handle time needed: the longest mean handle time at which the lines could "
                   "have registered the claim by its date; days needed: full days of operation at "
                   "the stated hours and handle time. A count for a period is measured over its "
                   "period, a claim about one channel against that channel alone.")
        if any(k.unbounded_because == "attempts" for k in result.claims):
            out.append("not bounded: a count of call attempts; lines limit the calls they answer, "
                       "not the attempts made, so capacity cannot rule it out.")
        if any(k.unbounded_because == "online_form" for k in result.claims):
            out.append("not bounded: an online form counts towards the claim; no line limits a "
                       "form, so capacity arithmetic cannot rule the claim out, at any handle "
                       "time.")
    if result.statements:
        out.append("")
        out.append("Statements in the case, for comparison:")
        for s in result.statements:
            out.append(f"  {s['id']}: {s['value']:,g} {s['unit']} - {s['about']} [{s['source']}]")
    return "\n".join(out)


def _minutes(value: float) -> str:
    if value >= 1:
        return f"{value:.1f} min"
    return f"{value * 60:.1f} s"


def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
