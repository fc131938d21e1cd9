"""Compile routes side by side: a new process fitting KSS with empty caches, then with warm ones.

    .venv/bin/python benchmarks/routes.py [--repeats 2] [--routes nutpie-numba,numpyro,...]

For each repeat and route (interleaved, so that the machine's load falls on all alike) it starts
a process with every cache (``XDG_CACHE_HOME``, PyTensor's compile folder, numba's cache, JAX's
persistent cache) in a new empty folder, then two more processes on the caches the first one
left. Each process imports truecount, builds the KSS model, compiles it by its route and samples
4 chains x (1,000 tuning + 2,000 kept) draws with seed 0, target acceptance 0.95. Printed: the
median seconds per route and phase, the posterior medians of the free parameters (the routes
sample the same posterior), divergences, and whether the cold and warm draws are the same to the
last bit.

Routes: ``nutpie-numba`` (today's: nutpie on PyTensor's numba backend), ``numpyro`` and
``blackjax`` (PyMC's JAX samplers, chains on parallel XLA host devices, JAX's persistent
compilation cache), ``nutpie-jax`` (nutpie on PyTensor's JAX backend), ``truecount-jax``
(``Fitter(sampler="jax")``, :mod:`truecount.inference.jaxfit`: blackjax programs with the data as
arguments, in JAX's persistent cache under ``$XDG_CACHE_HOME/truecount/jax``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ("nutpie-numba", "numpyro", "blackjax", "nutpie-jax", "truecount-jax")
DRAWS, TUNE, CHAINS, SEED, TARGET = 2000, 1000, 4, 0, 0.95


def child(route: str) -> None:
    """One process: import, build, compile and sample by ``route``; one JSON line on stdout."""
    import numpy as np

    start = time.perf_counter()
    import truecount
    from truecount.model.build import build_model

    if route in ("numpyro", "blackjax", "nutpie-jax"):
        import truecount.inference._jax as tj

        tj.enable_cache(str(Path(os.environ["XDG_CACHE_HOME"]) / "truecount" / "jax"))
    imported = time.perf_counter() - start
    start = time.perf_counter()
    model = build_model(truecount.load_case(ROOT / "data" / "kss_2021.toml"),
                        truecount.load_spec("baseline"))
    free = [v.name for v in model.free_RVs]
    built = time.perf_counter() - start
    start = time.perf_counter()
    if route in ("nutpie-numba", "truecount-jax"):
        from truecount.inference.fitter import Fitter

        fitter = Fitter(model, "nutpie" if route == "nutpie-numba" else "jax")
        fitter.prepare(draws=DRAWS, tune=TUNE)  # JAX: programs and executables, or their caches
        inputs = fitter.inputs_for(None)
        compiled = time.perf_counter() - start
        trace = fitter._sample(inputs, DRAWS, TUNE, CHAINS, SEED, CHAINS, TARGET, False)
    elif route == "nutpie-jax":
        import nutpie

        compiled_model = nutpie.compile_pymc_model(model, var_names=free, backend="jax",
                                                   gradient_backend="jax")
        compiled = time.perf_counter() - start
        trace = nutpie.sample(compiled_model, draws=DRAWS, tune=TUNE, chains=CHAINS,
                              cores=CHAINS, seed=SEED, target_accept=TARGET, progress_bar=False)
    else:
        import pymc as pm

        compiled = 0.0  # PyMC's JAX samplers compile inside the call
        with model:
            trace = pm.sample(draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=SEED,
                              nuts_sampler=route, target_accept=TARGET, var_names=free,
                              progressbar=False, compute_convergence_checks=False,
                              nuts_sampler_kwargs={"chain_method": "parallel"})
    sampled = time.perf_counter() - start - compiled
    posterior = trace["posterior"]
    digest = hashlib.sha256()
    medians = {}
    for name in free:
        values = np.asarray(posterior[name].values, dtype=np.float64)
        digest.update(values.tobytes())
        medians[name] = float(np.median(values))
    stats = trace["sample_stats"]
    print(json.dumps({"route": route, "import": imported, "build": built, "compile": compiled,
                      "sample": sampled, "medians": medians,
                      "divergences": int(np.asarray(stats["diverging"]).sum()),
                      "digest": digest.hexdigest()[:16]}))


def run(route: str, cache: Path) -> dict[str, object]:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache / "xdg"),
               PYTENSOR_FLAGS=f"base_compiledir={cache / 'pytensor'}",
               NUMBA_CACHE_DIR=str(cache / "numba"))
    if route == "numpyro":  # its parallel chains need one XLA host device each
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={CHAINS}"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", route], env=env, check=True,
                         capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    routes = args.routes.split(",")
    rows: dict[tuple[str, str], list[dict[str, object]]] = {}
    same: dict[str, list[bool]] = {r: [] for r in routes}
    for repeat in range(args.repeats):
        for route in routes:
            with tempfile.TemporaryDirectory() as folder:
                cold = run(route, Path(folder))
                warm = [run(route, Path(folder)) for _ in range(2)]
            rows.setdefault((route, "cold"), []).append(cold)
            rows.setdefault((route, "warm"), []).extend(warm)
            same[route].append(all(w["digest"] == cold["digest"] for w in warm))
            print(f"# repeat {repeat + 1} {route}: cold {cold['wall']:.1f} s, warm "
                  f"{', '.join(f'{w["wall"]:.1f}' for w in warm)} s", file=sys.stderr, flush=True)
    print(f"KSS, 4 x (1,000 + 2,000) draws, seed 0; medians of {args.repeats} cold and "
          f"{2 * args.repeats} warm new processes per route, seconds")
    print("| route | caches | process (wall) | imports | build | compile | sample | divergences |"
          " cold = warm draws |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (route, kind), results in rows.items():
        def med(key: str, results: list[dict[str, object]] = results) -> float:
            return statistics.median(float(r[key]) for r in results)  # type: ignore[arg-type]
        print(f"| {route} | {kind} | {med('wall'):.1f} | {med('import'):.1f} | {med('build'):.1f} "
              f"| {med('compile'):.1f} | {med('sample'):.1f} | {med('divergences'):.0f} | "
              f"{'yes' if all(same[route]) else 'NO'} |")
    print("\nposterior medians of the free parameters (first cold run of each route)")
    names = list(rows[(routes[0], "cold")][0]["medians"])  # type: ignore[call-overload]
    print("| parameter | " + " | ".join(routes) + " |")
    print("|---|" + "---|" * len(routes))
    for name in names:
        cells = [f"{rows[(r, 'cold')][0]['medians'][name]:.4g}" for r in routes]  # type: ignore[index]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
