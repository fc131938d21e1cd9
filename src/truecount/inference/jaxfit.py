"""NUTS on JAX: the model's programs compiled once per structure, the data passed as arguments.

:class:`JaxSampler` turns a model of :func:`truecount.model.build.build_model` into three XLA programs,
each a function of the case's data (arguments, not constants, so every case of the same
structure reuses them): the log density (for the starting points), the warm-up (blackjax's
window adaptation: Stan's schedule, step size by dual averaging to the target acceptance, a
diagonal mass matrix from the tuning draws) and :data:`CHUNK` NUTS draws.

Two caches make a new process fast, both in the user's cache folder and both keyed by what the
compiled code depends on, so that a stale entry is never used:

- the programs themselves, serialized by ``jax.export`` (``jax-programs/``), keyed by a digest of
  the model's graph (every operation and constant: the priors' parameters are constants), the
  settings (tuning steps, draws per call), the versions of truecount, JAX, jaxlib, blackjax,
  PyTensor and PyMC, and the source of this module and :mod:`truecount.inference._jax`. A process that
  finds them neither turns the graph into JAX nor traces the sampler;
- XLA's executables (``jax-programs/*.xla``), keyed by the program's key, the XLA flags and the
  processor, written whole (a temporary file renamed) with a SHA-256 of their contents checked
  before loading (:meth:`JaxSampler._executable` says why not JAX's own cache).

Chains run in threads, each calling the compiled programs (XLA releases the interpreter while it
runs); a chain's draws depend only on its key, so the numbers do not depend on the threads or on
whether the caches were warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from functools import cache, partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pytensor.compile.mode import JAX
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph import FunctionGraph
from pytensor.graph.replace import clone_replace
from pytensor.graph.traversal import graph_inputs

import truecount.inference._jax

#: Jittered starting points tried per chain before giving up (as PyMC does).
JITTER_TRIES = 10


class JaxSampler:
    """The model's NUTS programs, compiled once per structure and shape of data.

    Parameters
    ----------
    model
        A model of :func:`truecount.model.build.build_model`.
    data_names
        The data containers passed as arguments (default: all the model's).
    cache
        Folder for the serialized programs (``None``: none kept).
    """

    def __init__(self, model: pm.Model, data_names: list[str] | None = None,
                 cache: Path | None = None) -> None:
        self.model = model
        self.free = [v.name for v in model.free_RVs]
        self.value_vars = list(model.value_vars)
        self.data = ([model[name] for name in data_names] if data_names is not None
                     else [v for v in model.data_vars if hasattr(v, "get_value")])
        self.data_names = [v.name for v in self.data]
        self.cache = cache
        # The shared data containers become explicit inputs, so that data are arguments.
        self._inputs = [pt.tensor(name=v.name, dtype=v.dtype, shape=v.type.shape)
                        for v in self.data]
        outputs = [model.logp(), *model.replace_rvs_by_values(model.free_RVs)]
        # Other shared variables (the lengths of the model's dims) are fixed by the structure.
        replace: dict[Any, Any] = {v: pt.constant(v.get_value()) for v in graph_inputs(outputs)
                                   if isinstance(v, SharedVariable) and v not in self.data}
        replace |= dict(zip(self.data, self._inputs, strict=True))
        self._outputs = clone_replace(outputs, replace=replace)
        self.digest = _digest(self.value_vars + self._inputs, self._outputs)
        self._jax: tuple[Any, Any] | None = None  # (log density, constrained values), lazily
        self._programs: dict[tuple[Any, ...], Any] = {}
        self._structure: dict[int, Any] = {}  # tune -> tree structure of (state, parameters)
        self._lock = threading.Lock()
        start = model.initial_point()
        self._start = [np.asarray(start[v.name], dtype=v.dtype) for v in self.value_vars]

    def inputs_for(self, case: None) -> dict[str, np.ndarray]:
        """The model's own data (benchmarks; the Fitter checks other cases' structure)."""
        return {v.name: np.asarray(v.get_value()) for v in self.data}

    # -- the functions that become programs --------------------------------------------------

    def _functions(self) -> tuple[Any, Any]:
        """The graph as JAX functions (only when a program is not in the cache).

        First called outside any trace (:meth:`_program`).
        """
        if self._jax is None:
            logp, *constrained = self._outputs
            inputs = self.value_vars + self._inputs
            example = [*self._start, *(np.asarray(v.get_value()) for v in self.data)]
            # Traced once here, not at every place the sampler calls it or its gradient.
            self._jax = (_traced(_jaxify(inputs, [logp]), example),
                         _traced(_jaxify(inputs, constrained), example))
        return self._jax

    def log_density(self) -> Callable[[list[Any], list[Any]], Any]:
        """The jitted log density ``(position, data) -> float``, with the transforms' Jacobians.

        On the unconstrained scale, positions in the order of the model's value variables.
        """
        self._functions()
        jitted: Callable[[list[Any], list[Any]], Any] = jax.jit(self._log_density)
        return jitted

    def _log_density(self, position: list[Any], data: list[Any]) -> Any:
        return self._functions()[0](*position, *data)[0]

    def _warmup(self, tune: int) -> Any:
        """``(chain key, position, data, target_accept) -> leaves of (state, parameters)``."""
        warmup = self._warmup_tree(tune)

        def flat(*args: Any) -> list[Any]:
            leaves: list[Any]
            leaves, self._structure[tune] = jax.tree.flatten(warmup(*args))
            return leaves

        return flat

    def _steps(self, tune: int, size: int) -> Any:
        """``(chain key, first step, leaves, data) -> (leaves, constrained values, stats)``.

        Step ``i`` of a chain draws with the key ``fold_in(chain's sampling key, i)``, so the
        draws do not depend on how they are split into chunks.
        """
        import blackjax

        def steps(chain_key: Any, first: Any, leaves: list[Any], data: list[Any]) -> Any:
            # The structure of (state, parameters): seen when the warm-up was traced, else from
            # tracing it without running (when only the warm-up was in the cache).
            if tune not in self._structure:
                self._structure[tune] = jax.tree.structure(jax.eval_shape(
                    self._warmup_tree(tune), *_specs((chain_key, self._start, data,
                                                      jnp.float64(0.8)))))
            state, parameters = jax.tree.unflatten(self._structure[tune], leaves)
            kernel = blackjax.nuts(partial(self._log_density, data=data), **parameters).step

            base = jax.random.split(jax.random.wrap_key_data(chain_key))[1]

            def one_step(state: Any, step: Any) -> tuple[Any, Any]:
                state, info = kernel(jax.random.fold_in(base, step), state)
                values = self._functions()[1](*state.position, *data)
                return state, (values, {
                    "diverging": info.is_divergent, "energy": info.energy,
                    "tree_depth": info.num_trajectory_expansions,
                    "n_steps": info.num_integration_steps,
                    "acceptance_rate": info.acceptance_rate, "lp": state.logdensity,
                    "step_size": parameters["step_size"] * jnp.ones(()),
                })

            state, (values, stats) = jax.lax.scan(one_step, state, first + jnp.arange(size))
            return jax.tree.leaves((state, parameters)), values, stats

        return steps

    def _warmup_tree(self, tune: int) -> Any:
        """The warm-up with its real output structure (for :meth:`_steps` to unflatten)."""
        import blackjax

        def warmup(chain_key: Any, position: list[Any], data: list[Any], target_accept: Any
                   ) -> Any:
            adapt = blackjax.window_adaptation(
                blackjax.nuts, partial(self._log_density, data=data),
                target_acceptance_rate=target_accept)
            key = jax.random.split(jax.random.wrap_key_data(chain_key))[0]
            result, _ = adapt.run(key, position, num_steps=tune)
            return result

        return warmup

    # -- compiling ---------------------------------------------------------------------------

    def prepare(self, inputs: dict[str, np.ndarray], *, draws: int, tune: int) -> float:
        """Compile (or load) the programs for ``tune`` and the chunks of ``draws``.

        Returns the seconds it took: 0 when this sampler compiled them before.
        """
        sizes = sorted(set(_chunks(draws)))
        wanted = [("logp",), ("warmup", tune)] + [("steps", tune, size) for size in sizes]
        if all(w in self._programs for w in wanted):
            return 0.0
        start = time.perf_counter()
        data = self._data(inputs)
        key = _chain_keys(0, 1)[0]
        with self._lock:
            logp = self._exported(("logp",), jax.jit(self._log_density), self._start, data)
            warmup = self._exported(("warmup", tune), self._warmup(tune), key, self._start, data,
                                    jnp.float64(0.8))
            leaves = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in warmup[1].out_avals]
            steps = [self._exported(("steps", tune, size), self._steps(tune, size), key,
                                    np.int64(0), leaves, data) for size in sizes]
            todo = [job for job in (logp, warmup, *steps) if job[0] not in self._programs]
            # XLA compiles outside the interpreter's lock: the programs compile side by side.
            with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))
                                    ) as pool:
                compiled = pool.map(lambda job: self._executable(*job), todo)
                self._programs.update((job[0], c) for job, c in zip(todo, compiled, strict=True))
        return time.perf_counter() - start

    def _exported(self, name: tuple[Any, ...], function: Any, *args: Any
                  ) -> tuple[tuple[Any, ...], Any, Any]:
        """``(name, exported program, argument specs)``: from the cache, or traced anew."""
        specs = _specs(args)
        exported = self._load(name, specs)
        if exported is None:
            self._functions()  # outside any trace, so that its constants stay constants
            exported = jax.export.export(jax.jit(function))(*specs)
            self._store(name, specs, exported)
        return name, exported, specs

    def _executable(self, name: tuple[Any, ...], exported: Any, specs: Any) -> Any:
        """XLA's executable of an exported program: from the cache if whole, else compiled.

        Our own cache rather than JAX's persistent one, which writes entries in place: a
        process stopped while writing (Ctrl-C during a first compile) left a truncated
        executable that crashed every later process loading it. Here an entry is written to a
        temporary file and renamed, and carries the SHA-256 of its contents, checked before it is
        loaded. Keyed by the program's own key, the XLA flags and the processor.
        """
        from jax.experimental.serialize_executable import deserialize_and_load, serialize

        lowered = jax.jit(exported.call).lower(*specs)
        path = self._cache_file(name, specs, "xla", _machine())
        if path is not None and path.is_file():
            blob = path.read_bytes()
            if hashlib.sha256(blob[32:]).digest() == blob[:32]:
                try:
                    return deserialize_and_load(blob[32:], lowered.in_tree, lowered.out_tree)
                except Exception:  # an entry that does not load is replaced
                    pass
            path.unlink(missing_ok=True)
        compiled = lowered.compile()
        if path is not None:
            try:
                payload = serialize(compiled)[0]
                _write_atomically(path, hashlib.sha256(payload).digest() + payload)
            except (OSError, ValueError, NotImplementedError):
                pass  # a cache that cannot be written costs time, not results
        return compiled

    def _cache_file(self, name: tuple[Any, ...], specs: Any, kind: str = "jaxexport",
                    extra: str = "") -> Path | None:
        if self.cache is None:
            return None
        shapes = jax.tree.map(lambda s: (s.shape, str(s.dtype)), specs)
        key = hashlib.sha256(json.dumps([self.digest, _code_versions(), list(name),
                                         repr(shapes), extra]).encode()).hexdigest()[:24]
        return self.cache / f"{'-'.join(map(str, name))}-{key}.{kind}"

    def _load(self, name: tuple[Any, ...], specs: Any) -> Any:
        path = self._cache_file(name, specs)
        if path is None or not path.is_file():
            return None
        try:
            return jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # a damaged entry is replaced, never used
            path.unlink(missing_ok=True)
            return None

    def _store(self, name: tuple[Any, ...], specs: Any, exported: Any) -> None:
        path = self._cache_file(name, specs)
        if path is None:
            return
        try:  # a cache that cannot be written costs time, not results
            _write_atomically(path, bytes(exported.serialize()))
        except OSError:
            pass

    def _data(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        return [jnp.asarray(inputs[v.name], dtype=v.dtype) for v in self.data]

    # -- sampling ----------------------------------------------------------------------------

    def initial_positions(self, data: list[Any], chains: int, seed: int) -> list[list[Any]]:
        """Per chain, the model's initial point jittered by U(-1, 1) on the unconstrained scale.

        Retried until the log density is finite there (:data:`JITTER_TRIES` times at most).
        """
        logp = self._programs["logp",]
        rng = np.random.default_rng([seed, 0])
        positions = []
        for _ in range(chains):
            for _ in range(JITTER_TRIES):
                position = [np.asarray(x + rng.uniform(-1, 1, np.shape(x)), dtype=x.dtype)
                            for x in self._start]
                if np.isfinite(float(logp(position, data))):
                    break
            else:
                raise ValueError("no initial point with a finite log density was found "
                                 f"in {JITTER_TRIES} jittered tries")
            positions.append(position)
        return positions

    def sample(self, inputs: dict[str, np.ndarray], *, draws: int, tune: int, chains: int,
               seed: int, target_accept: float, cores: int | None = None,
               progress: Callable[[str], None] | None = None) -> xr.DataTree:
        """``chains`` chains of ``tune`` + ``draws`` NUTS steps: posterior and sample_stats.

        ``progress(line)`` is called about four times a second with a line saying how far the
        chains are (tuning, then draws with draws per second and time left).
        """
        self.prepare(inputs, draws=draws, tune=tune)
        data = self._data(inputs)
        positions = self.initial_positions(data, chains, seed)
        chunks = _chunks(draws)
        chain_keys = _chain_keys(seed, chains)
        done = [0] * chains  # draws kept so far, per chain
        tuned = [False] * chains
        stop = threading.Event()
        target = jnp.float64(target_accept)

        def run(chain: int) -> list[Any] | None:
            leaves = self._programs["warmup", tune](chain_keys[chain], positions[chain], data,
                                                    target)
            tuned[chain] = True
            parts = []
            for size in chunks:
                if stop.is_set():
                    return None
                leaves, values, stats = self._programs["steps", tune, size](
                    chain_keys[chain], np.int64(done[chain]), leaves, data)
                parts.append(jax.device_get((values, stats)))
                done[chain] += size
            return parts

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, min(chains, cores or chains))) as pool:
            futures = [pool.submit(run, chain) for chain in range(chains)]
            try:
                while wait(futures, timeout=0.25).not_done:
                    if progress is not None:
                        progress(_progress_line(tuned, done, draws, tune,
                                                time.perf_counter() - started))
            except BaseException:
                stop.set()  # each chain stops at its next chunk
                raise
            results = [f.result() for f in futures]
        if progress is not None:
            progress(_progress_line(tuned, done, draws, tune, time.perf_counter() - started))
        return self._tree([r for r in results if r is not None], draws)

    def _tree(self, results: list[list[Any]], draws: int) -> xr.DataTree:
        """Chunks per chain -> a tree with ``posterior`` and ``sample_stats`` groups."""
        def join(group: int, key: Any) -> np.ndarray:
            return np.stack([np.concatenate([np.asarray(part[group][key]) for part in parts])
                             for parts in results])

        posterior = {name: (["chain", "draw", *self.model.named_vars_to_dims.get(name, ())],
                            join(0, i)) for i, name in enumerate(self.free)}
        stats = {k: (("chain", "draw"), join(1, k)) for k in results[0][0][1]}
        used = {d for name in self.free for d in self.model.named_vars_to_dims.get(name, ())}
        coords = {k: np.asarray(v) for k, v in self.model.coords.items() if k in used}
        sample = {"chain": np.arange(len(results)), "draw": np.arange(draws)}
        tree = xr.DataTree()
        tree["posterior"] = xr.DataTree(xr.Dataset(posterior, coords=coords | sample))
        tree["sample_stats"] = xr.DataTree(xr.Dataset(stats, coords=sample))
        return tree


def _chain_keys(seed: int, chains: int) -> np.ndarray:
    """Each chain's threefry key (two 32-bit words), from NumPy's generator seeded ``[seed, 4]``.

    Made on the host without JAX, so that a fit runs no JAX program but its own three.
    """
    rng = np.random.default_rng([seed, 4])
    return rng.integers(0, 2**32, size=(chains, 2), dtype=np.uint32)


def _specs(args: Any) -> Any:
    """Shapes and types of a tree of arrays."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), args)


#: Draws per call of the draw program: progress shows and Ctrl-C stops between calls, and every
#: multiple of it (2,000 draws, or the 4,000 of a refit) runs the same compiled program.
CHUNK = 100


def _chunks(draws: int) -> list[int]:
    """``draws`` as calls of :data:`CHUNK` draws and one of the remainder."""
    return [CHUNK] * (draws // CHUNK) + ([draws % CHUNK] if draws % CHUNK else [])


def _progress_line(tuned: list[bool], done: list[int], draws: int, tune: int,
                   elapsed: float) -> str:
    """``tuning 4 chains x 1,000 steps: 2 of 4 done`` or ``3,000/8,000 draws, ... s left``."""
    chains = len(done)
    if not all(tuned):
        return (f"tuning {chains} chains x {tune:,} steps: {sum(tuned)} of {chains} done, "
                f"{elapsed:.0f} s")
    kept, total = sum(done), chains * draws
    # A tuning step costs about what a draw does: time left from the rate over all steps so far.
    steps = chains * tune + kept
    left = (total - kept) * elapsed / steps if steps else 0.0
    rate = steps / elapsed if elapsed > 0 else 0.0
    return (f"sampling {chains} chains: {kept:,}/{total:,} draws ({kept / total:.0%}), "
            f"{rate:,.0f} steps/s, {left:.0f} s left")


def _jaxify(inputs: list[Any], outputs: list[Any]) -> Any:
    """PyTensor graph -> JAX function, after PyTensor's JAX rewrites.

    PyTensor's JAX backend drops the graph's run-time checks (a parameter's range, a broadcast),
    and warns each time; the checks guard against inputs that the case and spec validation
    already refuse, and a value outside a distribution's support still gives a log density of
    -inf, so the warnings are not shown.
    """
    import warnings

    from pytensor.link.jax.dispatch import jax_funcify

    fgraph = FunctionGraph(inputs=inputs, outputs=outputs, clone=True)
    JAX.optimizer.rewrite(fgraph)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping .* Op .* as JAX tracing would remove")
        return jax_funcify(fgraph)


def _traced(function: Any, example: list[Any]) -> Any:
    """``function`` traced once, its constants as NumPy arrays.

    PyTensor's JAX functions close over their constants as JAX arrays, which JAX passes to a
    program as hidden arguments and ``jax.export`` cannot serialize; as NumPy arrays they are
    part of the program.
    """
    from jax.extend.core import jaxpr_as_fun

    closed, shape = jax.make_jaxpr(function, return_shape=True)(*example)
    consts = [np.asarray(c) for c in closed.consts]
    run = jaxpr_as_fun(closed.replace(consts=consts))
    tree = jax.tree.structure(shape)
    return lambda *args: jax.tree.unflatten(tree, run(*args))


def _digest(inputs: list[Any], outputs: list[Any]) -> str:
    """A digest of a graph: every operation with its parameters, every constant's bytes.

    Two graphs with the same digest compute the same function of their inputs, so a program
    exported from one serves the other. (Python's ``hash`` is not used: it differs between
    processes.)
    """
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import io_toposort

    ids: dict[Any, int] = {v: i for i, v in enumerate(inputs)}
    h = hashlib.sha256()
    for v in inputs:
        h.update(f"in:{v.type}|".encode())
    for node in io_toposort(inputs, outputs):
        parts = []
        for v in node.inputs:
            if v in ids:
                parts.append(f"v{ids[v]}")
            elif isinstance(v, Constant):
                data = np.asarray(v.data)
                parts.append(f"c{v.type}:{hashlib.sha256(data.tobytes()).hexdigest()[:16]}")
            else:  # pragma: no cover - every root is an input or a constant
                raise ValueError(f"the graph has an unexpected root {v}")
        op = node.op
        props = op._props_dict() if getattr(op, "__props__", None) else {}
        h.update(f"{type(op).__module__}.{type(op).__qualname__}{sorted(props.items())!r}"
                 f"{op}({','.join(parts)})|".encode())
        for out in node.outputs:
            ids[out] = len(ids)
    h.update(("out:" + ",".join(str(ids[v]) for v in outputs)).encode())
    return h.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` to ``path`` by a temporary file renamed into place (never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@cache
def _machine() -> str:
    """What an XLA executable compiled here depends on besides its program."""
    import platform

    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return json.dumps([platform.machine(), platform.processor(), flags,
                       os.environ.get("XLA_FLAGS", ""), jax.devices()[0].client.platform_version])


@cache
def _code_versions() -> dict[str, str]:
    """What besides the graph shapes the programs: library versions and this code's source."""
    from importlib.metadata import version

    source = hashlib.sha256()
    for module in (truecount.inference._jax, sys.modules[__name__]):
        source.update(Path(str(module.__file__)).read_bytes())
    return {name: version(name) for name in ("truecount", "jax", "jaxlib", "blackjax",
                                             "pytensor", "pymc")} | {
        "source": source.hexdigest()[:16], "x64": str(jax.config.jax_enable_x64)}
