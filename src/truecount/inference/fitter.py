"""Inference: compile a model structure once, fit it to any data of that structure.

:class:`Fitter` compiles a model built by :func:`truecount.model.build.build_model` once and samples it
for the case it was built from or for any other case of the same structure (same channels and
line counts, claims of the same kinds, same spec switches), passing the new data without
recompiling. Its samplers (``sampler=``):

- ``"jax"`` (default): :mod:`truecount.inference.jaxfit`, blackjax's NUTS in XLA programs kept with their
  executables in the user's cache folder (:func:`cache_folder`), so a new process that has
  seen the structure before starts sampling after a few seconds;
- ``"nutpie"``: nutpie on PyTensor's numba backend (its compiled C callbacks cannot be cached, so
  every new process compiles for 15-20 s, and about a minute with empty caches);
- ``"pymc"``: PyMC's own NUTS.

``benchmarks/routes.py`` measures them side by side (``docs/performance.md``).

Everything else a fit returns is computed in NumPy by the model's own equations
(:mod:`truecount.model.equations` over :data:`~truecount.model.equations.NUMPY`), so no further
compilation happens per fit: the Deterministics, the prior draws, the prior and posterior
predictive draws, and the derived quantities analysts quote (true counts, inflation factors,
whether each claim was possible).

:func:`fit` is the one-shot form: ``fit(model, draws=..., tune=..., chains=..., seed=...)``.

Groups of the returned :class:`xarray.DataTree`: ``posterior``, ``sample_stats``, ``log_prior``
and ``log_likelihood`` (per draw, for power-scaling sensitivity), ``prior``, ``prior_predictive``,
``posterior_predictive``, ``observed_data``, ``constant_data``; its attributes
record the versions, the seed, the sampler settings, the hashes of the case and spec, and timings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from truecount.errors import TruecountError
from truecount.inputs.case import Case
from truecount.inputs.spec import Spec
from truecount.model import equations
from truecount.model.build import build_model, model_info
from truecount.model.data import arrays, channel_kinds, model_inputs, model_structure
from truecount.model.simulate import draw_parameters, published_claims, realize_counts
from truecount.quantities import FUNNEL, PARAMETERS, QUANTITY

SAMPLE_DIMS = ("chain", "draw")
#: The samplers a :class:`Fitter` can use; the first is the default.
SAMPLERS = ("jax", "nutpie", "pymc")
#: NUTS target acceptance of every fit (see :meth:`Fitter.fit`).
DEFAULT_TARGET_ACCEPT = 0.95


class SamplingError(TruecountError):
    """The sampler could not run (initialisation failed, a numerical error, too few draws)."""


class StructureError(TruecountError):
    """Data given to a :class:`Fitter` does not fit the structure it compiled."""


class Fitter:
    """A model structure compiled once, fitted to as many datasets of that structure as needed.

    Parameters
    ----------
    model
        A model from :func:`truecount.model.build.build_model`; its data containers are swapped per fit.
    sampler
        ``"jax"`` (default), ``"nutpie"`` or ``"pymc"`` (module docstring); a missing optional
        library falls back to the next one that is installed.

    Examples
    --------
    .. code-block:: python

        fitter = Fitter.for_case(case, spec)
        tree = fitter.fit(draws=2000, tune=1000, chains=4, seed=0)   # compiles once
        other = fitter.fit(simulated_case, seed=1)                   # reuses the compiled model
    """

    def __init__(self, model: pm.Model, sampler: str = SAMPLERS[0]) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
        sampler = _installed(sampler)
        self.model = model
        self.info = model_info(model)
        self.sampler = sampler
        self.free = [v.name for v in model.free_RVs]
        self.data_names = [v.name for v in model.data_vars]
        self.dims = {name: tuple(dims) for name, dims in model.named_vars_to_dims.items()}
        self.coords = {k: np.asarray(v) for k, v in model.coords.items()}
        self._compiled: Any = None
        self.compile_seconds = 0.0

    @classmethod
    def for_case(cls, case: Case | xr.Dataset, spec: Spec, sampler: str = SAMPLERS[0]
                 ) -> Fitter:
        """Build the model of ``case`` under ``spec`` and wrap it."""
        return cls(build_model(case, spec), sampler)

    @property
    def spec(self) -> Spec:
        """The spec the model was built under."""
        return self.info.spec

    def compile(self) -> None:
        """Compile the log density and its gradient (once; later fits reuse it).

        For ``"jax"`` this takes the graph's digest; the XLA programs are compiled, or loaded from
        the cache, by :meth:`prepare` (at the first fit with given ``tune`` and ``draws``).
        """
        if self._compiled is not None or self.sampler == "pymc":
            return
        start = time.perf_counter()
        if self.sampler == "jax":
            from truecount.inference.jaxfit import JaxSampler

            self._compiled = JaxSampler(self.model, self.data_names,
                                        cache=cache_folder() / "jax-programs")
            self.compile_seconds = time.perf_counter() - start
            return
        import nutpie
        import pytensor

        # No fast-math: with it (PyTensor's default for numba) LLVM may reassociate and contract
        # floating-point arithmetic differently when the pieces are compiled together (empty
        # cache) than when they are loaded from the cache one by one, so the first fit on a
        # machine gave other draws than every later one with the same seed (KSS: 1,900 vs 2,000).
        # IEEE arithmetic gives the same bits either way; sampling is no slower on our models.
        with pytensor.config.change_flags(numba__fastmath=False):
            self._compiled = nutpie.compile_pymc_model(self.model, var_names=self.free)
        self.compile_seconds = time.perf_counter() - start
        _remember_compile_seconds(self.structure_key(), self.compile_seconds)

    def prepare(self, case: Case | xr.Dataset | None = None, *, draws: int = 2000,
                tune: int = 1000) -> float:
        """Compile all a fit with these settings needs; the seconds it took (0: done before).

        :meth:`fit` calls it; call it first to time compiling apart from sampling. For
        ``"jax"`` the XLA programs depend on ``tune`` and on the chunks of ``draws``.
        """
        return self._prepare(self.inputs_for(case), draws, tune)

    def _prepare(self, inputs: dict[str, np.ndarray], draws: int, tune: int) -> float:
        before = self._compiled is not None
        self.compile()
        spent = 0.0 if before else self.compile_seconds
        if self.sampler == "jax" and self._compiled is not None:
            seconds = self._compiled.prepare(inputs, draws=draws, tune=tune)
            if seconds:
                spent += seconds
                self.compile_seconds += seconds
                _remember_compile_seconds(self._settings_key(draws, tune), spent)
        return spent

    def structure_key(self) -> str:
        """What the compiled code depends on: structure, prior families, versions, sampler."""
        spec = self.spec
        parts = {"sampler": self.sampler,
                 "structure": {k: repr(v) for k, v in sorted(self.info.structure.items())},
                 "priors": {k: p.dist for k, p in sorted(spec.priors.items())},
                 "versions": _versions()}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def expected_compile_seconds(self, draws: int = 2000, tune: int = 1000) -> float | None:
        """How long compiling for these settings took the last time on this machine (None: never)."""
        return _compile_seconds().get(self._settings_key(draws, tune))

    def _settings_key(self, draws: int, tune: int) -> str:
        """The structure key, and for ``"jax"`` the settings its programs depend on."""
        if self.sampler != "jax":
            return self.structure_key()
        from truecount.inference.jaxfit import _chunks

        return f"{self.structure_key()}:{tune}:{','.join(map(str, sorted(set(_chunks(draws)))))}"

    def inputs_for(self, case: Case | xr.Dataset | None) -> dict[str, np.ndarray]:
        """The data arrays of ``case`` (default: the model's own), checked against the structure."""
        if case is None:
            return {name: np.asarray(self.model[name].get_value()) for name in self.data_names}
        ds = case.to_dataset() if isinstance(case, Case) else case
        structure = model_structure(ds, self.spec)
        if structure != self.info.structure:
            raise StructureError(
                f"case {ds.attrs.get('case_id', '')!r} has another model structure "
                f"({structure}) than the compiled one ({self.info.structure}); build a new Fitter")
        inputs = arrays(model_inputs(ds, self.spec))
        for name in self.data_names:
            expected = self.model[name].get_value().shape
            if inputs[name].shape != expected:
                raise StructureError(f"{name} has shape {inputs[name].shape}, the compiled model "
                                     f"{expected}: build a new Fitter for this case")
        return {name: inputs[name] for name in self.data_names}

    def fit(self, case: Case | xr.Dataset | None = None, *, draws: int = 2000, tune: int = 1000,
            chains: int = 4, seed: int = 0, cores: int | None = None,
            target_accept: float = DEFAULT_TARGET_ACCEPT, progress: bool = False) -> xr.DataTree:
        """Sample the posterior for ``case`` (default: the case the model was built from).

        Parameters
        ----------
        draws, tune, chains
            Kept draws and tuning steps per chain, and the number of chains (always passed to the
            sampler: nutpie's own defaults differ).
        seed
            Seeds the sampler and every NumPy draw: same data, seed and environment, same numbers.
        cores
            Chains run in parallel on this many cores (default: all, at most ``chains``).
        target_accept
            NUTS target acceptance, 0.95 (nutpie's default is 0.8). On the KSS case 0.9 gave no
            divergences and 30% fewer leapfrog steps, but 74 of 200 SBC fits (prior draws) had
            1-2 divergences at 0.9 against 0-1 in a few at 0.95: the claims' honest component is
            narrow when the claim noise is small. The gate catches a fit where it is not enough.
        progress
            Show the sampler's progress bar.
        """
        if draws < 4 or chains < 1 or tune < 0:
            raise SamplingError(f"draws must be >= 4 and chains >= 1 (got draws={draws}, "
                                f"chains={chains}, tune={tune})")
        start = time.perf_counter()
        inputs = self.inputs_for(case)  # a mismatched case fails before any compiling
        cores = min(chains, cores or os.cpu_count() or 1)
        try:
            spent = self._prepare(inputs, draws, tune)  # inputs checked above, once
            sampled_at = time.perf_counter()
            trace = self._sample(inputs, draws, tune, chains, seed, cores, target_accept, progress)
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            raise self._failure(exc, inputs) from exc
        got = dict(trace["posterior"].sizes)
        if (got.get("chain"), got.get("draw")) != (chains, draws):
            # nutpie returns what it has when interrupted; a short trace is never a result.
            raise SamplingError(
                f"the sampler returned {got.get('chain', 0)} chains x {got.get('draw', 0)} draws, "
                f"not the {chains} x {draws} asked for (stopped early); nothing is reported")
        sample_seconds = time.perf_counter() - sampled_at
        tree = self._assemble(trace, inputs, draws, seed)
        tree.attrs.update(
            sampler=self.sampler, seed=seed, draws=draws, tune=tune, chains=chains,
            target_accept=target_accept,
            compile_seconds=round(spent, 3),
            sample_seconds=round(sample_seconds, 3),
            total_seconds=round(time.perf_counter() - start, 3),
        )
        return tree

    # -- internals ----------------------------------------------------------------------------

    def _sample(self, inputs: dict[str, np.ndarray], draws: int, tune: int, chains: int,
                seed: int, cores: int, target_accept: float, progress: bool) -> xr.DataTree:
        if self.sampler == "jax":
            tree: xr.DataTree = self._compiled.sample(
                inputs, draws=draws, tune=tune, chains=chains, seed=seed,
                target_accept=target_accept, cores=cores,
                progress=_progress_printer() if progress else None)
            return tree
        if self.sampler == "nutpie":
            import nutpie

            data = {name: np.asarray(value, dtype=self.model[name].get_value().dtype)
                    for name, value in inputs.items()}
            compiled = self._compiled.with_data(**data)
            # Not blocking: nutpie's blocking call turns Ctrl-C into a short trace returned as if
            # finished. Waiting here lets KeyboardInterrupt (and the CLI's SIGTERM exception)
            # propagate, after cancelling the sampler's threads.
            sampler = nutpie.sample(
                compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                progress_bar=progress, target_accept=target_accept, save_warmup=False,
                blocking=False)
            try:
                trace: xr.DataTree = sampler.wait()
            except BaseException:
                sampler.cancel()
                raise
            return trace
        with self.model:
            pm.set_data({name: value for name, value in inputs.items()})
            trace = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                              random_seed=seed, nuts_sampler="pymc", progressbar=progress,
                              var_names=self.free, target_accept=target_accept,
                              compute_convergence_checks=False)
        return trace

    def _failure(self, exc: BaseException, inputs: dict[str, np.ndarray]) -> SamplingError:
        """A one-line :class:`SamplingError` for a sampler's exception, naming what to check."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "initial" not in str(exc).lower():
            return SamplingError(f"sampling failed ({self.sampler}: {first}); check the case and "
                                 "spec, or retry with another --seed")
        bad = self._nonfinite_terms(inputs)
        where = (f"log density not finite at the initial point in {', '.join(bad)}"
                 if bad else "log density not finite at any starting point tried")
        return SamplingError(
            f"the model could not be initialised ({where}; {self.sampler}: {first}): check the "
            "case's claims and evidence against the spec's priors (a claim or report the model "
            "gives no probability, a Fixed value outside its prior's range)")

    def _nonfinite_terms(self, inputs: dict[str, np.ndarray]) -> list[str]:
        """Model terms whose log density is -inf or nan at the initial point with ``inputs``."""
        saved = {name: self.model[name].get_value() for name in self.data_names}
        try:
            with self.model:
                pm.set_data(inputs)
            logps = self.model.point_logps(round_vals=16)
        except Exception:  # a diagnosis of a failure must not fail itself
            return []
        finally:
            with self.model:
                pm.set_data(saved)
        return [f"{name} ({value})" for name, value in logps.items() if not np.isfinite(value)]

    def _params(self, ds: xr.Dataset | dict[str, np.ndarray], shape: tuple[int, ...]
                ) -> dict[str, np.ndarray]:
        """Parameter arrays for the NumPy equations; Fixed priors are filled from the spec."""
        params = {}
        for name, prior in self.spec.priors.items():
            if name in ds:
                value = ds[name]
                params[name] = np.asarray(getattr(value, "values", value), dtype=float)
            elif prior.dist == "Fixed":
                n = len(self.coords["channel"])
                full = (*shape, n) if PARAMETERS[name].per_channel else shape
                params[name] = np.full(full, prior.params["value"])
        return params

    def _assemble(self, trace: xr.DataTree, inputs: dict[str, np.ndarray], draws: int,
                  seed: int) -> xr.DataTree:
        posterior = trace["posterior"].to_dataset()[self.free]
        shape = (posterior.sizes["chain"], posterior.sizes["draw"])
        n_channels = len(self.coords["channel"])
        prior_draws = draw_parameters(self.spec, n_channels, np.random.default_rng([seed, 1]),
                                      size=(1, draws), kinds=self.info.structure["kinds"])
        prior_params = {k: v for k, v in prior_draws.items() if k in self.free}
        groups = {}
        for group, params_source, group_shape, stream in (
                ("posterior", posterior, shape, 2), ("prior", prior_params, (1, draws), 3)):
            params = self._params(params_source, group_shape)
            rng = np.random.default_rng([seed, stream])
            draws_ds, predictive = self._derived(params, inputs, rng)
            groups[group] = draws_ds
            groups[f"{group}_predictive"] = predictive
            if group == "posterior":
                groups["log_prior"], groups["log_likelihood"] = self._log_densities(
                    params, draws_ds, inputs)
        coords = self._coords()
        observed = xr.Dataset(
            {"claim_value": (("claim",), inputs["claim_value"])}
            | ({"evidence_reports_failed": (("evidence",), inputs["evidence_failed"])}
               if "evidence_failed" in inputs else {}),
            coords={k: coords[k] for k in ("claim", "evidence")})
        constant = xr.Dataset({name: (self.dims[name], value) for name, value in inputs.items()},
                              coords=coords)
        tree = xr.DataTree()
        tree["posterior"] = xr.DataTree(groups["posterior"])
        tree["sample_stats"] = trace["sample_stats"]
        for name in ("log_prior", "log_likelihood", "prior", "prior_predictive",
                     "posterior_predictive"):
            tree[name] = xr.DataTree(groups[name])
        tree["observed_data"] = xr.DataTree(observed)
        tree["constant_data"] = xr.DataTree(constant)
        tree.attrs.update(self.info.attrs)
        tree.attrs["channel_kinds"] = ",".join(channel_kinds(inputs, self.info.structure))
        tree.attrs.update(_versions())
        return tree

    def _log_densities(self, params: dict[str, np.ndarray], draws_ds: xr.Dataset,
                       inputs: dict[str, np.ndarray]) -> tuple[xr.Dataset, xr.Dataset]:
        """Per-draw log prior of each sampled parameter and log likelihood of each claim and report.

        What power-scaling sensitivity (``arviz_stats.psense``) reweights. The claims enter the
        model as a Potential, which PyMC's ``compute_log_likelihood`` cannot see, so both groups
        are computed here in NumPy (tested equal to PyMC's ``compute_log_prior`` and to the
        model's own terms). The log prior is on the parameters' own scale (no Jacobian).
        """
        sd = SAMPLE_DIMS
        coords = draws_ds.coords
        prior = {}
        for name in self.free:
            prior[name] = ((*sd, *PARAMETERS[name].dims),
                           self.spec.priors[name].scipy().logpdf(params[name]))
        like: dict[str, Any] = {"claim_value": ((*sd, "claim"), draws_ds["claim_loglik"].values)}
        if self.info.structure["has_evidence"]:
            from scipy import stats

            p_evidence = equations.evidence_probability(
                equations.NUMPY, draws_ds["failed_share"].values, params, inputs)
            like["evidence_reports_failed"] = ((*sd, "evidence"), stats.binom.logpmf(
                inputs["evidence_failed"], inputs["evidence_reports"], p_evidence))
        keep = {k: v for k, v in coords.items() if k in (*sd, "channel", "claim", "evidence")}
        return xr.Dataset(prior, coords=keep), xr.Dataset(like, coords=keep)

    def _coords(self) -> dict[str, np.ndarray]:
        coords = dict(self.coords)
        coords["quantity"] = np.asarray(FUNNEL)
        return coords

    def _derived(self, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                 rng: np.random.Generator) -> tuple[xr.Dataset, xr.Dataset]:
        """Deterministics, true counts, inflation, possibility and predictive draws for a group."""
        structure = self.info.structure
        sigma_u = float(self.spec.priors["log_inflation"].params["sigma"])
        det = equations.numpy_deterministics(inputs, structure, params, sigma_u)
        counts, at_claim = realize_counts(det["expected_enrolments"], inputs["claim_exposure"],
                                          rng)
        y = inputs["claim_value"]
        claims, _, _ = published_claims(det, inputs, structure, params, sigma_u, rng,
                                        inputs["claim_rounding"])
        sd = SAMPLE_DIMS
        data: dict[str, Any] = {}
        # A claim is measured against what it says it counts: people against the true count
        # (and the lines' capacity), answered calls or attempts against their expected number.
        # Lines bound answered calls, not attempts: a count of attempts is never ruled out.
        stated = inputs["claim_quantity"]  # (claim, quantity), one-hot
        counted = np.where(stated[:, FUNNEL.index("registrations")] > 0.5, at_claim,
                           (det["funnel_at_claim"] * stated).sum(axis=-1))
        attempts_stated = stated[:, FUNNEL.index("attempts")] > 0.5
        values = dict(params) | det | {
            "true_enrolments": counts,
            "true_enrolments_total": counts.sum(axis=(-1, -2)),
            "true_at_claim": at_claim,
            "inflation_factor": y / np.maximum(counted, 1),
            "claim_possible": (y <= det["capacity_at_claim"]) | attempts_stated,
        }
        data = {name: ((*sd, *QUANTITY[name].dims), value) for name, value in values.items()}
        coords = self._coords()
        shape = counts.shape[:2]
        sample_coords = {"chain": np.arange(shape[0]), "draw": np.arange(shape[1])}
        draws_ds = xr.Dataset(data, coords=coords | sample_coords)
        predictive: dict[str, Any] = {"claim_value": ((*sd, "claim"), claims)}
        if structure["has_evidence"]:
            p_evidence = equations.evidence_probability(equations.NUMPY, det["failed_share"],
                                                        params, inputs)
            predictive["evidence_reports_failed"] = (
                (*sd, "evidence"), rng.binomial(inputs["evidence_reports"].astype(np.int64),
                                                p_evidence))
        return draws_ds, xr.Dataset(predictive, coords=coords | sample_coords)


def fit(model: pm.Model, *, draws: int = 2000, tune: int = 1000, chains: int = 4, seed: int = 0,
        cores: int | None = None, sampler: str = "nutpie",
        target_accept: float = DEFAULT_TARGET_ACCEPT, progress: bool = False) -> xr.DataTree:
    """Compile and sample ``model`` once: ``Fitter(model, sampler).fit(...)``.

    Use a :class:`Fitter` to refit the same structure without recompiling.
    """
    return Fitter(model, sampler).fit(draws=draws, tune=tune, chains=chains, seed=seed,
                                      cores=cores, target_accept=target_accept, progress=progress)


#: A fit that fails the gate is refitted once: at this target acceptance if it had divergent
#: transitions (smaller steps), otherwise with twice the draws (too few effective draws).
RETRY_TARGET_ACCEPT = 0.99


def fit_gated(fitter: Fitter, case: Case | xr.Dataset | None = None, *, draws: int, tune: int,
              chains: int, seed: int, cores: int | None = None,
              target_accept: float = DEFAULT_TARGET_ACCEPT, retry: bool = True,
              progress: bool = False, say: Any = None) -> tuple[xr.DataTree, Any, str]:
    """Fit and gate; with ``retry``, refit once a fit that failed the gate: ``(tree, verdict, note)``.

    The refit takes smaller steps (``target_accept`` 0.99) after divergent transitions, otherwise
    twice the draws (low ESS or high R-hat), and is gated too; ``note`` says why it happened (empty
    when it did not) and ``say(text)`` is told before it starts. The tree's attributes record the
    settings of the fit returned, so ``truecount rerun`` reproduces it without a retry.
    """
    from truecount.inference.diagnostics import gate

    tree = fitter.fit(case, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores,
                      target_accept=target_accept, progress=progress)
    verdict = gate(tree)
    if verdict.passed or not retry:
        return tree, verdict, ""
    n = verdict.divergences
    if n:
        why = f"{n} divergent transition{'s' if n != 1 else ''}"
        target_accept = max(target_accept, RETRY_TARGET_ACCEPT)
        how = f"target_accept {target_accept:g}"
    else:
        why, draws = "low ESS or high R-hat", 2 * draws
        how = f"{draws:,} draws per chain"
    if say is not None:
        say(f"the fit failed the diagnostics gate ({why}); refitting once with {how}")
    first = tree.attrs
    tree = fitter.fit(case, draws=draws, tune=tune, chains=chains, seed=seed, cores=cores,
                      target_accept=target_accept, progress=progress)
    # The times a user waited: the compiling happened before the first fit.
    tree.attrs["compile_seconds"] = first.get("compile_seconds", 0.0)
    tree.attrs["total_seconds"] = round(first.get("total_seconds", 0.0)
                                        + tree.attrs.get("total_seconds", 0.0), 3)
    return tree, gate(tree), f"refit after the first failed the gate ({why})"


def cache_folder() -> Path:
    """The truecount folder in the user's cache folder (``$XDG_CACHE_HOME``, else ``~/.cache``).

    It holds JAX's compiled programs (``jax/``) and the compile times; ``truecount cache`` shows
    and clears it.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "truecount"


def compile_times_file() -> Path:
    """Where compile times are remembered (only for the message a user sees while waiting)."""
    return cache_folder() / "compile-seconds.json"


def _installed(sampler: str) -> str:
    """``sampler``, or the next of :data:`SAMPLERS` whose libraries are installed."""
    needs = {"jax": ("jax", "blackjax"), "nutpie": ("nutpie",), "pymc": ()}
    for name in SAMPLERS[SAMPLERS.index(sampler):]:
        try:
            for module in needs[name]:
                __import__(module)
        except ImportError:  # pragma: no cover - both are dependencies
            continue
        return name
    return "pymc"  # pragma: no cover


def _progress_printer() -> Any:
    """A progress line on stderr, rewritten in place (only used when stderr is a terminal)."""
    import sys

    def show(line: str) -> None:
        sys.stderr.write(f"\r\033[Ktruecount: {line}")
        if "100%" in line:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _compile_seconds() -> dict[str, float]:
    try:
        data = json.loads(compile_times_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)} \
        if isinstance(data, dict) else {}


def _remember_compile_seconds(key: str, seconds: float) -> None:
    times = _compile_seconds()
    times[key] = round(seconds, 1)
    path = compile_times_file()
    try:  # a message's estimate is not worth failing a fit for
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(times, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass


def _versions() -> dict[str, str]:
    def v(package: str) -> str:
        try:
            return version(package)
        except Exception:  # pragma: no cover - only for packages missing from the environment
            return "not installed"

    return {
        "truecount_version": v("truecount"), "pymc_version": v("pymc"),
        "pytensor_version": v("pytensor"), "arviz_version": v("arviz"),
        "arviz_stats_version": v("arviz-stats"), "nutpie_version": v("nutpie"),
        "jax_version": v("jax"), "jaxlib_version": v("jaxlib"), "blackjax_version": v("blackjax"),
        "numpy_version": np.__version__,
    }
