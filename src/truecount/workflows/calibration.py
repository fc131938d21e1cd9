"""Calibration: simulation-based calibration (SBC) and coverage on simulated campaigns.

SBC (Talts et al. 2018; Modrak et al. 2023): draw parameters from the prior, simulate a campaign
(:func:`truecount.model.simulate.simulate`), fit it, and record the rank of each true value among
``thin`` evenly spaced posterior draws. If the model and its inference are calibrated, ranks are
uniform on ``0..thin``; :func:`uniformity` tests that per quantity with a chi-square test and
simultaneous ECDF bands. The coverage study fits campaigns from the independent discrete-event
simulator (:mod:`truecount.workflows.des`) and counts how often the 50/80/90/95% equal-tailed intervals of
true enrolments contain the truth.

Simulations run on Dask distributed (:func:`calibrate`): a local cluster of ``workers`` processes,
or an existing cluster by address (:func:`truecount.workflows.runner.run_tasks`). Each worker compiles the
model once (:func:`truecount.workflows.runner.compiled`, a per-process cache) and reuses it for every
simulation it is given; results are appended to ``results.jsonl`` as they arrive, so an interrupted
run resumes where it stopped and a worker that dies loses only its simulations in flight, which
Dask retries. Each simulated campaign is also written as a case file,
``cases/SIMULATOR-INDEX.toml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from truecount.errors import InputError
from truecount.inference.results import channel_kinds, own_channels
from truecount.quantities import SBC
from truecount.workflows.runner import compiled, run_tasks

#: Quantities whose SBC ranks are recorded (per channel where the parameter is;
#: :data:`truecount.quantities.SBC`).
MONITORED = SBC
MASSES = (0.5, 0.8, 0.9, 0.95)
RESULTS = "results.jsonl"
JOB_FILE = "job.json"


@dataclass(frozen=True)
class Job:
    """What every simulation of a calibration run shares."""

    case: str
    spec: str = "baseline"
    readings: tuple[str, ...] = ()
    simulator: str = "sbc"  # "sbc" (our own forward model) or "des" (discrete-event call centre)
    draws: int = 500
    tune: int = 500
    chains: int = 4
    cores: int = 1
    thin: int = 99
    seed: int = 0
    target_accept: float = 0.95
    shrink: float = 1.0  # < 1 narrows every posterior around its mean: a deliberately bad model
    #: How the simulator inflates claims: "prior" (the spec's) or a world the prior does not
    #: describe, "log-uniform:MAX[:HONEST]" (:class:`truecount.model.simulate.InflationWorld`).
    inflation: str = "prior"
    #: Refit a fit that fails its gate once, as ``truecount fit`` does (default: measure the fits
    #: as they come).
    retry: bool = False

    def key(self) -> tuple[str, str, tuple[str, ...]]:
        """What fixes the compiled model."""
        return (self.case, self.spec, self.readings)


def run_one(task: tuple[Job, int]) -> dict[str, Any]:
    """Simulate campaign ``index`` of ``job``, fit it, and return ranks, intervals and checks."""
    job, index = task
    from truecount.inference.analysis import fit_and_analyse

    start = time.perf_counter()
    from truecount.model.simulate import InflationWorld

    fitter, case = compiled(job.case, job.spec, job.readings)
    rng = np.random.default_rng([job.seed, index])
    world = InflationWorld.parse(job.inflation)
    if job.simulator == "des":
        from truecount.workflows.des import des_campaign

        sim = des_campaign(case, fitter.spec, rng, inflation=world)
    else:
        from truecount.model.simulate import simulate

        sim = simulate(case, fitter.spec, rng, inflation=world)
    # Gated as every fit is; refitted once only when the job says so (by default a calibration
    # measures the fits as they come).
    analysis = fit_and_analyse(fitter, sim.case, draws=job.draws, tune=job.tune,
                               chains=job.chains, cores=job.cores, seed=int(rng.integers(2**31)),
                               target_accept=job.target_accept, retry=job.retry)
    tree, verdict = analysis.tree, analysis.verdict
    post = tree["posterior"].to_dataset()
    kinds = channel_kinds(tree)
    ranks: dict[str, int] = {}
    truth: dict[str, float] = {}
    for name in MONITORED:
        if name not in post or name not in sim.truth:
            continue
        extra = post[name].dims[2:]  # after chain and draw
        true_da = xr.DataArray(np.asarray(sim.truth[name], dtype=float), dims=extra,
                               coords={d: post[d] for d in extra})
        da, true_da = own_channels(post[name], name, kinds), own_channels(true_da, name, kinds)
        true = np.atleast_1d(true_da.values)
        flat = da.values.reshape(da.sizes["chain"] * da.sizes["draw"], -1)
        labels = ([name] if "channel" not in da.dims
                  else [f"{name}[{c}]" for c in da["channel"].values])
        for j, label in enumerate(labels):
            draws = flat[:, j]
            if job.shrink != 1.0:
                draws = draws.mean() + job.shrink * (draws - draws.mean())
            ranks[label] = sbc_rank(draws, float(true[j]), job.thin, rng)
            truth[label] = float(true[j])
    total = post["true_enrolments_total"].values.ravel()
    y = float(sim.truth["true_enrolments_total"])
    intervals = {}
    for mass in MASSES:
        lo, hi = np.quantile(total, [(1 - mass) / 2, (1 + mass) / 2])
        intervals[f"{mass:g}"] = {"lower": float(lo), "upper": float(hi),
                                  "covered": bool(lo <= y <= hi)}
    # Honest and counting what it says it counts: such a claim is possible, and a fit that
    # calls it impossible is wrong (an honest count of call attempts presented as people is not).
    from truecount.model.data import model_inputs
    from truecount.quantities import FUNNEL
    from truecount.workflows.des import case_to_toml

    stated = model_inputs(sim.case.to_dataset(), fitter.spec)["claim_quantity"].values.argmax(-1)
    honest = np.asarray(sim.truth["honest"], bool) & (
        np.array([FUNNEL.index(c) for c in sim.truth["counted"]]) == stated)
    possible = post["claim_possible"].astype(float).mean(("chain", "draw")).values
    return {"index": index, "case_toml": case_to_toml(sim.case), "ranks": ranks, "truth": truth,
            "intervals": intervals, "honest_as_stated": honest.tolist(),
            "p_possible": possible.tolist(),
            "true_enrolments_total": y, "divergences": verdict.divergences,
            "gate_passed": verdict.passed, "refitted": bool(analysis.note),
            "seconds": time.perf_counter() - start}


def sbc_rank(draws: np.ndarray, truth: float, thin: int, rng: np.random.Generator) -> int:
    """Rank of ``truth`` among ``thin`` evenly spaced draws, 0..thin; ties broken at random."""
    picked = np.asarray(draws)[np.linspace(0, len(draws) - 1, thin).round().astype(int)]
    below = int(np.sum(picked < truth))
    ties = int(np.sum(picked == truth))
    return below + (int(rng.integers(ties + 1)) if ties else 0)


def calibrate(job: Job, sims: int, out: Path, workers: int = 2, scheduler: str | None = None,
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run ``sims`` simulations of ``job`` (resuming ``out/results.jsonl``); return all results.

    ``workers == 1`` without a scheduler runs in this process; otherwise on Dask: a local cluster
    of ``workers`` single-threaded processes, or the cluster at ``scheduler``.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / JOB_FILE).write_text(json.dumps(asdict(job), indent=2) + "\n", encoding="utf-8")
    path = out / RESULTS
    done = _read(path)
    todo = [i for i in range(sims) if i not in {r["index"] for r in done}]
    say = progress or (lambda text: None)
    if done:
        say(f"resuming: {len(done)} of {sims} simulations already in {path}")
    start = time.perf_counter()
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a", encoding="utf-8") as sink:  # end a line cut by an interruption
            sink.write("\n")
    with path.open("a", encoding="utf-8") as sink:
        cases = out / "cases"
        cases.mkdir(exist_ok=True)

        def record(result: dict[str, Any], finished: int) -> None:
            # The simulated campaign as a case file (a later cumulative claim can fall below an
            # earlier one through the claims' noise; load_case refuses such a file, by design).
            text = result.pop("case_toml", None)
            if text is not None:
                (cases / f"{job.simulator}-{result['index']:05d}.toml").write_text(
                    text, encoding="utf-8")
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            elapsed = time.perf_counter() - start
            left = elapsed / finished * (len(todo) - finished)
            say(f"{len(done) + finished}/{sims} simulations, {elapsed:.0f} s elapsed, "
                f"about {left:.0f} s left")

        run_tasks(run_one, [(job, index) for index in todo], workers=workers,
                  scheduler=scheduler, on_result=record)
    return sorted(_read(path), key=lambda r: r["index"])


def _read(path: Path) -> list[dict[str, Any]]:
    """The results recorded so far; a line cut by an interruption (or damaged) is rerun."""
    if not path.exists():
        return []
    results = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(result, dict) and isinstance(result.get("index"), int):
            results.append(result)
    return results


def read_job(path: Path) -> Job:
    """The :class:`Job` recorded in a calibration folder's ``job.json``, or one line saying why not."""
    fix = "Resume with the folder as truecount wrote it, or choose another --out."
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
        return Job(**{**data, "readings": tuple(data["readings"])})
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(path, "", "a file that is not UTF-8 JSON", "job.json as `truecount "
                         "calibrate` wrote it", fix) from None
    except (TypeError, KeyError):
        raise InputError(path, "", "other fields than a calibration job's", "job.json as "
                         "`truecount calibrate` wrote it", fix) from None


@dataclass(frozen=True)
class Uniformity:
    """SBC verdict for one quantity: chi-square p-value and whether the ECDF leaves its band."""

    quantity: str
    n: int
    chi2_p: float
    outside_band: bool

    @property
    def uniform(self) -> bool:
        """No evidence against uniform ranks at the 1% level, ECDF inside its 99% band."""
        return self.chi2_p >= 0.01 and not self.outside_band


def uniformity(results: list[dict[str, Any]], thin: int, bins: int = 20,
               rng: np.random.Generator | None = None) -> list[Uniformity]:
    """Test each monitored quantity's ranks for uniformity on ``0..thin``."""
    rng = rng or np.random.default_rng(0)
    names = sorted({k for r in results for k in r["ranks"]})
    out = []
    for name in names:
        ranks = np.array([r["ranks"][name] for r in results if name in r["ranks"]])
        counts, _ = np.histogram(ranks, bins=bins, range=(-0.5, thin + 0.5))
        p = float(stats.chisquare(counts).pvalue)
        out.append(Uniformity(name, len(ranks), p, bool(ecdf_outside_band(ranks, thin, rng))))
    return out


def ecdf_band(n: int, thin: int, rng: np.random.Generator, level: float = 0.99,
              reps: int = 2000) -> float:
    """Half-width of a simultaneous band for ECDF(rank/(thin+1)) - uniform, by simulation."""
    grid = (np.arange(thin + 1) + 1) / (thin + 1)
    sims = rng.integers(0, thin + 1, size=(reps, n))
    ecdf = (sims[..., None] < np.arange(1, thin + 2)).mean(axis=1)
    return float(np.quantile(np.abs(ecdf - grid).max(axis=1), level))


def ecdf_outside_band(ranks: np.ndarray, thin: int, rng: np.random.Generator) -> bool:
    """Whether the ranks' ECDF leaves the simultaneous 99% band around the uniform one."""
    grid = (np.arange(thin + 1) + 1) / (thin + 1)
    ecdf = (ranks[:, None] < np.arange(1, thin + 2)).mean(axis=0)
    return bool(np.abs(ecdf - grid).max() > ecdf_band(len(ranks), thin, rng))


def coverage(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Share of campaigns whose interval of true enrolments holds the truth, per mass."""
    rows = []
    for mass in MASSES:
        key = f"{mass:g}"
        hits = np.array([r["intervals"][key]["covered"] for r in results])
        widths = np.array([r["intervals"][key]["upper"] - r["intervals"][key]["lower"]
                           for r in results])
        n, k = len(hits), int(hits.sum())
        lo, hi = stats.binomtest(k, n).proportion_ci(0.95) if n else (np.nan, np.nan)
        rows.append({"mass": mass, "n": n, "covered": k, "rate": k / n if n else np.nan,
                     "ci_low": float(lo), "ci_high": float(hi),
                     "median_width": float(np.median(widths)) if n else np.nan})
    return rows


#: A claim is called impossible when the posterior gives it less than this chance of being
#: within the channel's capacity.
IMPOSSIBLE_BELOW = 0.05


def honest_called_impossible(results: list[dict[str, Any]]) -> dict[str, int]:
    """Honest claims that count what they say, and how many of them a fit called impossible."""
    honest = called = 0
    for r in results:
        for is_honest, p in zip(r.get("honest_as_stated", ()), r.get("p_possible", ()), strict=True):
            honest += bool(is_honest)
            called += bool(is_honest) and p < IMPOSSIBLE_BELOW
    return {"honest_claims": honest, "honest_called_impossible": called}


def write_outputs(out: Path, job: Job, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``sbc.csv``, ``coverage.csv``, ``summary.json`` and the rank figures into ``out``."""
    import pandas as pd

    from truecount.outputs.figures import figure_png

    checks = uniformity(results, job.thin)
    table = pd.DataFrame([{**asdict(u), "uniform": u.uniform} for u in checks])
    table.to_csv(out / "sbc.csv", index=False)
    cover = coverage(results)
    pd.DataFrame(cover).to_csv(out / "coverage.csv", index=False)
    (out / "ranks.png").write_bytes(figure_png(rank_figure(results, job.thin)))
    summary = {
        "job": asdict(job), "simulations": len(results),
        "all_uniform": all(u.uniform for u in checks),
        "not_uniform": [u.quantity for u in checks if not u.uniform],
        "coverage": cover,
        "gate_failures": sum(not r["gate_passed"] for r in results),
        "refitted": sum(bool(r.get("refitted")) for r in results),
        "gate_passed_first_time": sum(r["gate_passed"] and not r.get("refitted")
                                      for r in results),
        **honest_called_impossible(results),
        "divergent_fits": sum(r["divergences"] > 0 for r in results),
        "median_seconds_per_simulation": float(np.median([r["seconds"] for r in results])),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def rank_figure(results: list[dict[str, Any]], thin: int) -> Any:
    """Rank histograms and ECDF differences with a simultaneous 99% band, one row per quantity."""
    from matplotlib.figure import Figure

    names = sorted({k for r in results for k in r["ranks"]})
    fig = Figure(figsize=(8.2, 1.9 * len(names) + 0.6), layout="constrained")
    axes = fig.subplots(len(names), 2, squeeze=False)
    rng = np.random.default_rng(0)
    grid = (np.arange(thin + 1) + 1) / (thin + 1)
    for (hist_ax, ecdf_ax), name in zip(axes, names, strict=True):
        ranks = np.array([r["ranks"][name] for r in results if name in r["ranks"]])
        bins = min(20, thin + 1)
        hist_ax.hist(ranks, bins=bins, range=(-0.5, thin + 0.5), color="#4477aa")
        expected = len(ranks) / bins
        band = stats.binom.ppf([0.005, 0.995], len(ranks), 1 / bins)
        hist_ax.axhspan(band[0], band[1], color="0.85", zorder=0)
        hist_ax.axhline(expected, color="0.4", linewidth=0.8)
        hist_ax.set_title(f"{name}: rank histogram", fontsize=9)
        ecdf = (ranks[:, None] < np.arange(1, thin + 2)).mean(axis=0)
        width = ecdf_band(len(ranks), thin, rng)
        ecdf_ax.fill_between(grid, -width, width, color="0.85")
        ecdf_ax.plot(grid, ecdf - grid, color="#4477aa")
        ecdf_ax.axhline(0, color="0.4", linewidth=0.8)
        ecdf_ax.set_title(f"{name}: ECDF - uniform (99% band)", fontsize=9)
    fig.suptitle(f"Simulation-based calibration: {len(results)} simulations, ranks 0-{thin}")
    return fig
