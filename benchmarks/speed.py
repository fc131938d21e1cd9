"""Where `truecount fit` spends its time, and what compiling once buys.

Run from the repository root (about 10 minutes on a 2-core machine with the defaults):

    .venv/bin/python benchmarks/speed.py --refits 50 --out docs/performance.json

Measures, side by side in one run:

1. phases of one `truecount fit` of the KSS case in a new process, with cold caches (fresh PyTensor
   compile dir and Numba cache) and then warm caches (median of --repeats runs);
2. the baseline before compile-once: build the model and `pm.sample(nuts_sampler="nutpie")` with
   PyMC's prior and posterior predictive sampling, per fit (median of --baseline-repeats);
3. refits of one compiled model (4 x 1,000 draws): Fitter.fit against the sampler's own call;
4. --refits refits on simulated campaigns with one Fitter, against rebuilding and refitting each
   from scratch (--rebuilds of them, per-fit medians compared).

Prints a Markdown table and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KSS = ROOT / "data" / "kss_2021.toml"


def phases() -> dict[str, float]:
    """One end-to-end fit, timed phase by phase (run in a fresh process)."""
    t: dict[str, float] = {}
    start = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        t[name] = now - mark
        mark = now

    import truecount.cli  # noqa: F401  (what `truecount` imports before it runs)
    from truecount import load_case, load_spec
    from truecount.inference.analysis import analyse
    from truecount.inference.fitter import Fitter
    from truecount.outputs.report import write_report
    lap("import")
    case, spec = load_case(KSS), load_spec("baseline")
    lap("load case and spec")
    fitter = Fitter.for_case(case, spec)
    lap("build model")
    fitter.prepare(draws=2000, tune=1000)
    lap("compile")
    tree = fitter.fit(draws=2000, tune=1000, chains=4, seed=0)
    t["sample"] = tree.attrs["sample_seconds"]
    t["derived and predictive (NumPy)"] = (time.perf_counter() - mark) - t["sample"]
    mark = time.perf_counter()
    analysis = analyse(tree, claim_dates={c.id: c.when for c in case.claims})
    lap("gate and summary")
    with tempfile.TemporaryDirectory() as folder:
        write_report(Path(folder), analysis, case, spec)
        lap("report (figures, tables)")
        tree.to_netcdf(Path(folder) / "posterior.nc", engine="h5netcdf")
        lap("write posterior")
    t["total"] = time.perf_counter() - start
    return t


def baseline() -> dict[str, float]:
    """The fit as it was before compile-once: pm.sample plus PyMC predictive sampling."""
    import warnings

    start = time.perf_counter()
    import pymc as pm

    from truecount import load_case, load_spec
    from truecount.model.build import build_model

    model = build_model(load_case(KSS), load_spec("baseline"))
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(draws=2000, tune=1000, chains=4, cores=2, random_seed=0,
                          nuts_sampler="nutpie", progressbar=False, target_accept=0.95)
        pm.sample_prior_predictive(draws=2000, random_seed=1)
        pm.sample_posterior_predictive(idata, random_seed=2, progressbar=False)
    return {"total": time.perf_counter() - start}


def refits(n_refits: int, n_rebuilds: int) -> dict[str, object]:
    """Refit timings: one compiled model against its sampler, and against rebuilding per fit."""
    import numpy as np

    from truecount import load_case, load_spec
    from truecount.inference.fitter import Fitter
    from truecount.model.simulate import simulate

    case, spec = load_case(KSS), load_spec("baseline")
    fitter = Fitter.for_case(case, spec)
    fitter.fit(draws=1000, tune=1000, chains=4, seed=0)  # warm-up: compiles
    inputs = fitter.inputs_for(None)
    own, full = [], []
    for seed in range(5):
        t = time.perf_counter()  # the sampler's own call, without the NumPy derived draws
        fitter._sample(inputs, 1000, 1000, 4, seed, 2, 0.95, False)
        own.append(time.perf_counter() - t)
        t = time.perf_counter()
        fitter.fit(draws=1000, tune=1000, chains=4, seed=seed)
        full.append(time.perf_counter() - t)
    sims = [simulate(case, spec, np.random.default_rng(1000 + i)).case
            for i in range(max(n_refits, n_rebuilds))]
    reuse = []
    for i in range(n_refits):
        t = time.perf_counter()
        fitter.fit(sims[i], draws=1000, tune=1000, chains=4, seed=i)
        reuse.append(time.perf_counter() - t)
    rebuild = []
    for i in range(n_rebuilds):
        t = time.perf_counter()
        Fitter.for_case(sims[i], spec).fit(draws=1000, tune=1000, chains=4, seed=i)
        rebuild.append(time.perf_counter() - t)
    return {
        "sampler_own_median": statistics.median(own), "refit_median": statistics.median(full),
        "reuse_median": statistics.median(reuse), "rebuild_median": statistics.median(rebuild),
        "n_refits": n_refits, "n_rebuilds": n_rebuilds, "reuse_total": sum(reuse),
    }


def _child(mode: str, env: dict[str, str], args: list[str] | None = None) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, *(args or [])],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="warm-cache fits (median)")
    parser.add_argument("--baseline-repeats", type=int, default=2)
    parser.add_argument("--refits", type=int, default=200)
    parser.add_argument("--rebuilds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "phases":
        print(json.dumps(phases()))
        return
    if args.child == "baseline":
        print(json.dumps(baseline()))
        return
    if args.child == "refits":
        print(json.dumps(refits(int(args.rest[0]), int(args.rest[1]))))
        return

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}/pytensor",
                   NUMBA_CACHE_DIR=f"{cache}/numba")
        cold = _child("phases", env)
        warm = [_child("phases", env) for _ in range(args.repeats)]
        base = [_child("baseline", env)["total"] for _ in range(args.baseline_repeats)]
        refit = _child("refits", env, [str(args.refits), str(args.rebuilds)])
    warm_median = {k: statistics.median(float(w[k]) for w in warm) for k in cold}  # type: ignore
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                         f"{platform.python_version()}",
              "cold": cold, "warm_median": warm_median, "baseline_totals": base,
              "refits": refit}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"machine: {result['machine']}\n")
    print("| phase | first fit, cold caches (s) | later fit, warm caches (median, s) |")
    print("| --- | ---: | ---: |")
    for k in cold:
        print(f"| {k} | {float(cold[k]):.2f} | {warm_median[k]:.2f} |")  # type: ignore
    r = refit
    print(f"\nbaseline fit (build + pm.sample + PyMC predictive), warm caches: "
          f"{statistics.median(base):.1f} s (median of {len(base)})")
    print(f"refit of a compiled model (4 x 1,000 draws): {r['refit_median']:.2f} s; the sampler's own "
          f"sampling {r['sampler_own_median']:.2f} s; ratio "
          f"{float(r['refit_median']) / float(r['sampler_own_median']):.2f}")  # type: ignore
    print(f"refit per simulated campaign, one Fitter: {r['reuse_median']:.2f} s (median of "
          f"{r['n_refits']}); rebuilt from scratch: {r['rebuild_median']:.2f} s (median of "
          f"{r['n_rebuilds']}); speed-up "
          f"{float(r['rebuild_median']) / float(r['reuse_median']):.1f}x")  # type: ignore


if __name__ == "__main__":
    main()
