r"""The model's one custom operation for PyTensor's JAX backend, and JAX's settings.

Importing this module imports JAX and registers :class:`truecount.model.build.LogErlangB` with PyTensor's
JAX dispatcher, so that any JAX route (PyMC's numpyro or blackjax samplers, nutpie's JAX backend,
:mod:`truecount.inference.jaxfit`) can compile the model. It is imported only by those routes: the
numba route never pays for JAX.

The recursion is the one of :func:`truecount.model.capacity.log_blocking_scalar` (same scaled
:math:`x_k = 1 + (k/A)\,x_{k-1}`, rescaled by :math:`2^{-500}`, exact), one line per step of an
XLA while loop run for every element at once (an element whose lines are done stops changing);
the loads below :math:`4 \cdot 10^{-18}` that the NumPy reference sends to its log-scale form
take the exact limit :math:`\log B = c \log A - \log c! - A` instead (the sum
:math:`\sum_{k \le c} A^k/k!` is :math:`1 + A` to double precision there; 0 for no
lines). The gradient is the exact slope :func:`truecount.model.capacity.log_blocking_slope`, as in
the numba backend. Tested equal to the reference in ``tests/test_jax.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from pytensor.link.jax.dispatch import jax_funcify

from truecount.model.build import LogErlangB
from truecount.model.capacity import (
    _LOG_RESCALE,
    _PLAIN_FROM_LOG_LOAD,
    _RESCALE_ABOVE,
    _RESCALE_BY,
    log_blocking_slope,
)

#: Lines of the recursion per iteration of the XLA loop.
_LINES_PER_STEP = 4

jax.config.update("jax_enable_x64", True)
# Constants stay in the program (JAX otherwise passes those over 32 bytes as hidden arguments,
# which jax.export cannot serialize); the model's constants are a few kilobytes at most.
jax.config.update("jax_embedded_constants_max_bytes", 1 << 24)


@jax.custom_jvp  # type: ignore[untyped-decorator]
def log_erlang_b(servers: Any, log_load: Any) -> Any:
    """``log B(servers, A)`` from ``log A``, elementwise over broadcast JAX arrays."""
    servers, log_load = jnp.broadcast_arrays(jnp.asarray(servers, jnp.float64),
                                             jnp.asarray(log_load, jnp.float64))
    plain = log_load > _PLAIN_FROM_LOG_LOAD
    inverse_load = jnp.exp(-jnp.where(plain, log_load, 0.0))
    ones = jnp.ones_like(log_load)

    def step(state: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
        # Several lines per iteration (the loop's own cost dominates one line's arithmetic),
        # rescaled after every four: m cannot overflow in four steps from below the rescaling
        # point, each factor k/A being below 3e23.
        k, m, one, log_scale = state
        for line in range(_LINES_PER_STEP):
            k = k + 1.0
            m = jnp.where(k <= servers, one + (k * inverse_load) * m, m)
            if line % 4 == 3:
                big = m > _RESCALE_ABOVE
                m, one = jnp.where(big, m * _RESCALE_BY, m), jnp.where(big, one * _RESCALE_BY, one)
                log_scale = log_scale + jnp.where(big, _LOG_RESCALE, 0.0)
        return k, m, one, log_scale

    most = jnp.max(jnp.where(plain, servers, 0.0), initial=0.0)
    _, m, _, log_scale = lax.while_loop(lambda s: s[0] < most, step,
                                        (jnp.float64(0.0), ones, ones, jnp.zeros_like(log_load)))
    recursion = -(jnp.log(m) + log_scale)
    safe_log_load = jnp.where(plain, _PLAIN_FROM_LOG_LOAD, log_load)
    tiny = jnp.where(servers > 0, servers * safe_log_load - lax.lgamma(servers + 1.0)
                     - jnp.exp(safe_log_load), 0.0)
    return jnp.where(plain, recursion, tiny)


@log_erlang_b.defjvp  # type: ignore[untyped-decorator]
def _log_erlang_b_jvp(primals: tuple[Any, Any], tangents: tuple[Any, Any]) -> tuple[Any, Any]:
    servers, log_load = primals
    out = log_erlang_b(servers, log_load)
    slope = log_blocking_slope(jnp.asarray(servers, jnp.float64), jnp.exp(log_load),
                               jnp.exp(out))
    # An infinite load (log A > 709) gives inf * 0: the slope's limit there is 0.
    return out, jnp.where(jnp.isfinite(slope), slope, 0.0) * tangents[1]


@jax_funcify.register(LogErlangB)  # type: ignore[untyped-decorator]
def _jax_log_erlang_b(op: Any, node: Any = None, **kwargs: Any) -> Any:
    return log_erlang_b


def enable_cache(folder: str) -> None:
    """Keep JAX's compiled executables in ``folder`` (PyMC's JAX samplers in the benchmark).

    :mod:`truecount.inference.jaxfit` keeps its own executables, written whole.

    JAX keys them by the program, the JAX and XLA versions, the flags and the machine, so a stale
    entry is never a hit. A size limit (4 GB, least recently used first out) also makes JAX read
    and write entries under a file lock: without one it writes in place, and another process
    (a calibration worker, a second fit) could read an entry half written.
    """
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


__all__ = ["enable_cache", "log_erlang_b"]
