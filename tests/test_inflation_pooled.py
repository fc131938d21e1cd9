"""A pooled inflation scale (structure ``inflation = "pooled"``, spec ``inflation_pooled``).

The claims' likelihood given a scale is the fixed-scale one; the scale is then a parameter the
campaign's claims share. These tests hold the two variants together and check that the pooled
parameter exists, is drawn and is recorded exactly where the switch asks for it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import KSS
from truecount import load_case, load_spec
from truecount.model.build import build_model
from truecount.model.data import arrays, model_inputs, model_structure, needs_parameter
from truecount.model.equations import numpy_deterministics
from truecount.model.simulate import draw_parameters, simulate
from truecount.quantities import PARAMETERS, SBC


@pytest.fixture(scope="module")
def kss():
    return load_case(KSS)


def test_the_scale_is_a_parameter_only_when_pooled(kss):
    fixed, pooled = load_spec("baseline"), load_spec("inflation_pooled")
    assert fixed.structure["inflation"] == "fixed"
    assert pooled.structure["inflation"] == "pooled"
    ds = kss.to_dataset()
    assert not needs_parameter("inflation_scale", model_structure(ds, fixed))
    assert needs_parameter("inflation_scale", model_structure(ds, pooled))
    names = {v.name for v in build_model(kss, pooled).free_RVs}
    assert "inflation_scale" in names and "log_inflation" not in names
    assert "inflation_scale" not in {v.name for v in build_model(kss, fixed).free_RVs}
    assert "inflation_scale" in SBC and PARAMETERS["inflation_scale"].when == ("inflation", "pooled")


def test_a_fixed_spec_draws_no_scale_and_keeps_its_random_stream(kss):
    fixed, pooled = load_spec("baseline"), load_spec("inflation_pooled")
    kinds = ("phone_lines",)
    a = draw_parameters(fixed, 1, np.random.default_rng(5), kinds=kinds)
    b = draw_parameters(pooled, 1, np.random.default_rng(5), kinds=kinds)
    assert "inflation_scale" not in a and "inflation_scale" in b
    # Every draw of a fixed spec is what it was before the scale's prior existed.
    without = dataclasses.replace(fixed, priors={n: p for n, p in fixed.priors.items()
                                                 if n != "inflation_scale"})
    before = draw_parameters(without, 1, np.random.default_rng(5), kinds=kinds)
    assert a.keys() == before.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], before[name])
    # The pooled spec's draws before the scale are the same draws (registry order).
    for name in ("handle_time", "attended_share", "peak_load_per_line", "enrol_share",
                 "daily_retention"):
        np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("scale", [0.3, 2.0, 5.0])
def test_pooled_likelihood_at_a_scale_is_the_fixed_likelihood_with_that_scale(kss, scale):
    fixed, pooled = load_spec("baseline"), load_spec("inflation_pooled")
    ds = kss.to_dataset()
    params = draw_parameters(pooled, ds.sizes["channel"], np.random.default_rng(2), size=(3,),
                             kinds=("phone_lines",))
    params["inflation_scale"] = np.full(3, scale)
    got = numpy_deterministics(arrays(model_inputs(ds, pooled)), model_structure(ds, pooled),
                               params, 99.0)  # the fixed scale is ignored when pooled
    want = numpy_deterministics(arrays(model_inputs(ds, fixed)), model_structure(ds, fixed),
                                params, scale)
    np.testing.assert_allclose(got["claim_loglik"], want["claim_loglik"], rtol=1e-12)
    np.testing.assert_allclose(got["p_honest"], want["p_honest"], rtol=1e-12)


def test_simulated_claims_follow_the_drawn_scale(kss):
    pooled = load_spec("inflation_pooled")
    rng = np.random.default_rng(0)
    params = draw_parameters(pooled, 1, rng, kinds=("phone_lines",))
    params["honest_probability"] = np.asarray(0.0)
    params["counts_attempts_probability"] = np.asarray(0.0)
    logs = {}
    for scale in (0.1, 4.0):
        params["inflation_scale"] = np.asarray(scale)
        values = [simulate(kss, pooled, np.random.default_rng(s), dict(params)).case.claims[-1].value
                  for s in range(40)]
        logs[scale] = np.log(values)
    sim = simulate(kss, pooled, np.random.default_rng(1))
    assert "inflation_scale" in sim.truth
    # Inflation half-normal with scale 4 against 0.1: the claims sit far higher on average.
    assert logs[4.0].mean() - logs[0.1].mean() > 2.0
