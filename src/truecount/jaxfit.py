"""NUTS on JAX: the model's log density compiled once per structure, the data passed as arguments.

:class:`JaxSampler` turns a model of :func:`truecount.model.build_model` into one XLA program per
chain: blackjax's window adaptation (Stan's schedule: step size by dual averaging to the target
acceptance, a diagonal mass matrix from the tuning draws) followed by ``draws`` NUTS steps, in a
single jitted function of ``(key, initial position, data)``. Because the case's data are
arguments rather than constants, every case of the same structure (same shapes, same prior
families) reuses the same compiled program; JAX's persistent compilation cache
(:func:`truecount._jax.enable_cache`) keeps it across processes, keyed by the program itself and
the JAX and XLA versions, so a stale entry is never a hit.

Chains run in threads, each calling the compiled program (XLA releases the interpreter while it
runs); a chain's draws depend only on its key, so the numbers do not depend on the threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
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

import truecount._jax  # noqa: F401  (registers the Erlang-B operation; JAX settings)

#: Jittered starting points tried per chain before giving up (as PyMC does).
JITTER_TRIES = 10


class JaxSampler:
    """The model's NUTS program, compiled once per structure and shape of data."""

    def __init__(self, model: pm.Model) -> None:
        self.model = model
        self.free = [v.name for v in model.free_RVs]
        self.value_vars = list(model.value_vars)
        self.data = [v for v in model.data_vars if hasattr(v, "get_value")]
        self.data_names = [v.name for v in self.data]
        # The shared data containers become explicit inputs, so that data are arguments.
        inputs = [pt.tensor(name=v.name, dtype=v.dtype, shape=v.type.shape) for v in self.data]
        outputs = [model.logp(), *model.replace_rvs_by_values(model.free_RVs)]
        # Other shared variables (the lengths of the model's dims) are fixed by the structure.
        replace: dict[Any, Any] = {v: pt.constant(v.get_value()) for v in graph_inputs(outputs)
                                   if isinstance(v, SharedVariable) and v not in self.data}
        replace |= dict(zip(self.data, inputs, strict=True))
        logp, *constrained = clone_replace(outputs, replace=replace)
        self._logp = _jaxify(self.value_vars + inputs, [logp])
        self._constrain = _jaxify(self.value_vars + inputs, constrained)
        self._programs: dict[tuple[int, int, float], Any] = {}
        self._lock = threading.Lock()

    def inputs_for(self, case: None) -> dict[str, np.ndarray]:
        """The model's own data (benchmarks; the Fitter checks other cases' structure)."""
        return {v.name: np.asarray(v.get_value()) for v in self.data}

    def log_density(self, position: list[Any], data: list[Any]) -> Any:
        """The log density (with the transforms' Jacobians) at ``position`` for ``data``."""
        return self._logp(*position, *data)[0]

    def program(self, draws: int, tune: int, target_accept: float) -> Any:
        """The jitted chain ``(key, position, data) -> (draws, stats)`` for these settings."""
        import blackjax

        key = (draws, tune, float(target_accept))
        with self._lock:
            if key in self._programs:
                return self._programs[key]

            def chain(rng: Any, position: list[Any], data: list[Any]) -> Any:
                def logdensity(x: list[Any]) -> Any:
                    return self.log_density(x, data)

                warmup_key, sample_key = jax.random.split(rng)
                adapt = blackjax.window_adaptation(blackjax.nuts, logdensity,
                                                   target_acceptance_rate=target_accept)
                (state, parameters), _ = adapt.run(warmup_key, position, num_steps=tune)
                kernel = blackjax.nuts(logdensity, **parameters).step

                def one_step(state: Any, step_key: Any) -> tuple[Any, Any]:
                    state, info = kernel(step_key, state)
                    values = self._constrain(*state.position, *data)
                    return state, (values, {
                        "diverging": info.is_divergent, "energy": info.energy,
                        "tree_depth": info.num_trajectory_expansions,
                        "n_steps": info.num_integration_steps,
                        "acceptance_rate": info.acceptance_rate, "lp": state.logdensity,
                        "step_size": parameters["step_size"] * jnp.ones(()),
                    })

                _, (values, stats) = jax.lax.scan(one_step, state,
                                                  jax.random.split(sample_key, draws))
                return values, stats

            self._programs[key] = jax.jit(chain)
            return self._programs[key]

    def initial_positions(self, data: list[Any], chains: int, seed: int) -> list[list[Any]]:
        """Per chain, the model's initial point jittered by U(-1, 1) on the unconstrained scale.

        Retried until the log density is finite there (:data:`JITTER_TRIES` times at most).
        """
        start = self.model.initial_point()
        logp = jax.jit(self.log_density)
        rng = np.random.default_rng([seed, 0])
        positions = []
        for _ in range(chains):
            for _ in range(JITTER_TRIES):
                position = [np.asarray(start[v.name] + rng.uniform(-1, 1, np.shape(start[v.name])),
                                       dtype=v.dtype) for v in self.value_vars]
                if np.isfinite(float(logp(position, data))):
                    break
            else:
                raise ValueError("no initial point with a finite log density was found "
                                 f"in {JITTER_TRIES} jittered tries")
            positions.append(position)
        return positions

    def sample(self, inputs: dict[str, np.ndarray], *, draws: int, tune: int, chains: int,
               seed: int, target_accept: float, cores: int | None = None) -> xr.DataTree:
        """``chains`` chains of ``tune`` + ``draws`` NUTS steps: posterior and sample_stats."""
        data = [jnp.asarray(inputs[v.name], dtype=v.dtype) for v in self.data]
        program = self.program(draws, tune, target_accept)
        positions = self.initial_positions(data, chains, seed)
        keys = jax.random.split(jax.random.key(seed), chains)

        def run(chain: int) -> Any:
            values, stats = program(keys[chain], positions[chain], data)
            return jax.device_get((values, stats))

        with ThreadPoolExecutor(max_workers=max(1, min(chains, cores or chains))) as pool:
            results = list(pool.map(run, range(chains)))
        posterior = {}
        for i, name in enumerate(self.free):
            stacked = np.stack([r[0][i] for r in results])
            dims = ["chain", "draw", *self.model.named_vars_to_dims.get(name, ())]
            posterior[name] = (dims, stacked)
        stats = {k: (("chain", "draw"), np.stack([np.asarray(r[1][k]) for r in results]))
                 for k in results[0][1]}
        coords = {k: np.asarray(v) for k, v in self.model.coords.items()}
        coords |= {"chain": np.arange(chains), "draw": np.arange(draws)}
        tree = xr.DataTree()
        used = {d for name in self.free for d in self.model.named_vars_to_dims.get(name, ())}
        tree["posterior"] = xr.DataTree(xr.Dataset(
            posterior, coords={k: v for k, v in coords.items() if k in used | {"chain", "draw"}}))
        tree["sample_stats"] = xr.DataTree(xr.Dataset(
            stats, coords={"chain": coords["chain"], "draw": coords["draw"]}))
        return tree


def _jaxify(inputs: list[Any], outputs: list[Any]) -> Any:
    """PyTensor graph -> JAX function, after PyTensor's JAX rewrites."""
    from pytensor.link.jax.dispatch import jax_funcify

    fgraph = FunctionGraph(inputs=inputs, outputs=outputs, clone=True)
    JAX.optimizer.rewrite(fgraph)
    return jax_funcify(fgraph)
