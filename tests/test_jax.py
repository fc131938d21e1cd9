"""The JAX route: the Erlang-B operation on JAX, the log density it compiles, its caches.

The default sampler (:mod:`truecount.inference.jaxfit`) runs the model on PyTensor's JAX backend, so the
backend's version of every piece must equal the reference: the recursion of
:func:`truecount.model.capacity.log_blocking_scalar` and its exact slope, and the whole log density and
gradient against PyTensor's own compiled graph, for every structure of the spec.
"""

from __future__ import annotations

import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import log_ndtr

import truecount.inference._jax as tj
from conftest import KSS
from test_switches import CASE_IDS, CASES, _case, _spec
from truecount import load_case, load_spec
from truecount.inference.jaxfit import JaxSampler, _chunks, _progress_line
from truecount.model import capacity
from truecount.model.build import build_model, log_normal_cdf

GRID_N = np.unique(np.concatenate([np.arange(0, 41), np.geomspace(41, 5000, 30).round()]))


def test_log_erlang_b_on_jax_equals_the_reference_on_the_grid():
    # N 0..5,000 and A from 0.01 N to 50 N, the far tails included, and the tiny loads that the
    # reference sends to its log-scale form; relative 1e-10 in log B.
    run = jax.jit(tj.log_erlang_b)
    for n in GRID_N:
        loads = np.concatenate([max(n, 1) * np.geomspace(0.01, 50, 25), [1e-20, 3.9e-18, 5e-18]])
        log_a = np.log(loads)
        reference = np.array([capacity.log_blocking_scalar(int(n), float(x)) for x in log_a])
        got = np.asarray(run(np.full_like(log_a, n), log_a))
        np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-300)


def test_log_erlang_b_on_jax_broadcasts_and_handles_the_limits():
    got = np.asarray(tj.log_erlang_b(np.array([[0.0], [6.0]]), np.array([-np.inf, 0.0, 800.0])))
    assert got.shape == (2, 3)
    assert got[0].tolist() == [0.0, 0.0, 0.0]  # no lines: every attempt is blocked
    assert got[1, 0] == -np.inf and got[1, 2] == 0.0
    assert got[1, 1] == pytest.approx(capacity.log_blocking_scalar(6, 0.0), rel=1e-14)


@pytest.mark.parametrize("n", [1, 6, 156, 2000])
def test_log_erlang_b_gradient_on_jax_is_the_exact_slope_and_finite(n):
    log_a = np.log(n * np.geomspace(0.01, 50, 15))
    grad = np.asarray(jax.vmap(jax.grad(lambda x: tj.log_erlang_b(float(n), x)))(log_a))
    exact = capacity.log_blocking_slope(n, np.exp(log_a), capacity.erlang_b(n, np.exp(log_a)))
    np.testing.assert_allclose(grad, exact, rtol=1e-10, atol=1e-12 * n)
    # Finite and between 0 and the lines from no load to a million times the lines, and at an
    # infinite load. (Far beyond that, c - A(1 - B) cancels: 1 - B rounds to 0 above ~1e16
    # Erlangs a line, in both backends. NUTS stays exact with any gradient, it only moves less
    # well there, and no real channel is there.)
    extreme = np.array([-60.0, -40.0, math.log(n) + 14, 800.0])
    slopes = np.asarray(jax.vmap(jax.grad(lambda x: tj.log_erlang_b(float(n), x)))(extreme))
    assert np.all(np.isfinite(slopes) & (slopes >= 0) & (slopes <= n))


def test_log_normal_cdf_is_exact_with_finite_gradients_far_in_both_tails():
    # PyMC's normal_lcdf fed both branches every z: JAX's gradient was NaN far in either tail.
    z = pt.dvector("z")
    out = log_normal_cdf(z)
    values = np.linspace(-45, 45, 181)
    value, grad = pytensor.function([z], [out, pt.grad(out.sum(), z)])(values)
    np.testing.assert_allclose(value, log_ndtr(values), rtol=1e-12, atol=1e-300)
    assert np.all(np.isfinite(grad))
    from truecount.inference.jaxfit import _jaxify

    on_jax = _jaxify([z], [out])
    jax_grad = jax.grad(lambda x: on_jax(x)[0].sum())(jnp.asarray(values))
    np.testing.assert_allclose(np.asarray(on_jax(values)[0]), value, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(np.asarray(jax_grad), grad, rtol=1e-9, atol=1e-300)


def _assert_jax_density_equals_pytensor(model, points: int = 25) -> None:
    """Log density and gradient on JAX equal PyTensor's at jittered points (sd 3, unconstrained)."""
    sampler = JaxSampler(model)
    data = sampler._data(sampler.inputs_for(None))
    logp = sampler.log_density()
    dlogp = jax.jit(jax.grad(logp))
    mode = "FAST_COMPILE"  # Python's implementations: quick to build, and independent of numba
    ref_logp, ref_dlogp = model.compile_logp(mode=mode), model.compile_dlogp(mode=mode)
    start = model.initial_point()

    def at(point: dict) -> list:
        return [np.asarray(point[v.name]) for v in sampler.value_vars]

    # Compared as differences from the initial point: the terms that depend on the data alone
    # (the evidence's log binomial coefficients) are folded by PyTensor in SciPy and computed by
    # XLA here, and differ by a constant (5e-7 on KSS) that no sampler sees.
    offset = float(logp(at(start), data)) - float(ref_logp(start))
    assert abs(offset) < 1e-5
    rng = np.random.default_rng(7)
    for _ in range(points):
        point = {k: v + rng.normal(0, 3, np.shape(v)) for k, v in start.items()}
        grad = np.concatenate([np.ravel(g) for g in dlogp(at(point), data)])
        assert float(logp(at(point), data)) - offset == \
            pytest.approx(float(ref_logp(point)), rel=1e-10, abs=1e-9)
        np.testing.assert_allclose(grad, ref_dlogp(point), rtol=1e-7, atol=1e-8)


def test_jax_log_density_equals_pytensor_on_kss():
    _assert_jax_density_equals_pytensor(build_model(load_case(KSS), load_spec("baseline")))


@pytest.mark.slow
@pytest.mark.parametrize(("switches", "evidence"), CASES, ids=CASE_IDS)
def test_jax_log_density_equals_pytensor_for_every_structure(tmp_path, switches, evidence):
    _assert_jax_density_equals_pytensor(build_model(load_case(_case(tmp_path, evidence)),
                                                    load_spec(_spec(tmp_path, switches))), 10)


def test_the_program_cache_key_follows_the_graph(tmp_path):
    # A stale program is never used: a prior's parameter is a constant of the graph, so another
    # value gives another digest; the same case and spec give the same digest in any process.
    case = load_case(KSS)
    baseline = JaxSampler(build_model(case, load_spec("baseline")))
    again = JaxSampler(build_model(case, load_spec("baseline")))
    assert baseline.digest == again.digest
    other = tmp_path / "other.toml"
    other.write_text('schema_version = 1\nid = "other"\ntitle = "other"\nextends = "baseline"\n'
                     '[priors.claim_noise]\nunit = "log scale"\ndist = "LogNormal"\n'
                     'elicit = { lower = 0.05, upper = 0.31, mass = 0.9 }\nreason = "a test"\n',
                     encoding="utf-8")
    assert JaxSampler(build_model(case, load_spec(other))).digest != baseline.digest


def test_a_damaged_cached_program_is_replaced_not_used(tmp_path):
    sampler = JaxSampler(build_model(load_case(KSS), load_spec("baseline")), cache=tmp_path)
    specs = [jax.ShapeDtypeStruct((2,), jnp.float64)]
    path = sampler._cache_file(("logp",), specs)
    assert path is not None and path.parent == tmp_path
    path.write_bytes(b"not a program")
    assert sampler._load(("logp",), specs) is None
    assert not path.exists()


def test_chunks_cover_the_draws_and_the_progress_line_says_how_far():
    for draws in (1, 7, 20, 99, 500, 2000, 2001):
        chunks = _chunks(draws)
        assert sum(chunks) == draws and set(chunks[:-1]) <= {100}
    assert _chunks(2000) == [100] * 20 and _chunks(4000) == [100] * 40  # a refit: no new program
    assert _progress_line([True, False], [0, 0], 100, 50, 3.2) == \
        "tuning 2 chains x 50 steps: 1 of 2 done, 3 s"
    line = _progress_line([True, True], [50, 50], 100, 100, 3.0)
    assert line == "sampling 2 chains: 100/200 draws (50%), 100 steps/s, 1 s left"
    assert math.isfinite(float(line.split(", ")[-1].split()[0]))


def test_a_truncated_cached_executable_is_compiled_again_not_loaded(tmp_path):
    # JAX's own cache writes in place: a process stopped mid-write left a truncated executable
    # that crashed every later process. Ours is written whole and checked before loading.
    sampler = JaxSampler(build_model(load_case(KSS), load_spec("baseline")), cache=tmp_path)
    data = sampler._data(sampler.inputs_for(None))
    job = sampler._exported(("logp",), sampler.log_density(), sampler._start, data)
    first = float(sampler._executable(*job)(sampler._start, data))
    (path,) = tmp_path.glob("logp-*.xla")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert float(sampler._executable(*job)(sampler._start, data)) == first
    rewritten = path.read_bytes()  # whole again: its digest matches its contents
    assert hashlib.sha256(rewritten[32:]).digest() == rewritten[:32]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
