import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.graph.traversal import applys_between

from truecount import load_case, load_spec
from truecount.model import capacity
from truecount.model.build import build_model, erlang_b_pt
from truecount.model.data import arrays, model_inputs, model_structure
from truecount.model.equations import NUMPY, channel_flows
from truecount.model.simulate import draw_parameters


@pytest.fixture(scope="module")
def kss_model():
    from tests.conftest import BASELINE, KSS
    return build_model(load_case(KSS), load_spec(BASELINE))


def test_pytensor_and_numpy_erlang_b_agree():
    load = pt.dvector("load")
    for servers in (1, 6, 20):
        f = pytensor.function([load], erlang_b_pt(servers, load))
        loads = np.array([0.01, 0.5, 3.0, 6.0, 40.0, 1e4])
        np.testing.assert_allclose(f(loads), capacity.erlang_b(servers, loads), rtol=1e-12)


def test_erlang_b_and_its_gradient_are_finite_at_any_load():
    # A long campaign's fading demand reaches loads of 1e-80 Erlangs; the older recursion in 1/B
    # overflowed there and its gradient was NaN (4,178 divergences on a 366-day window).
    load = pt.dvector("load")
    blocking = erlang_b_pt(6, load)
    f = pytensor.function([load], [blocking, pytensor.grad(blocking.sum(), load)])
    loads = np.array([1e-300, 1e-80, 1e-40, 1e-3, 6.0, 1e6, 1e300])
    value, grad = f(loads)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, capacity.erlang_b(6, loads), rtol=1e-12)
    assert grad[2] == pytest.approx(6 * 1e-40**5 / 720, rel=1e-12)  # d/dA A^6/6! at small A
    assert np.all(grad >= 0)


def test_model_has_named_dimensions(kss_model):
    assert set(kss_model.coords) >= {"channel", "day", "claim", "evidence"}
    assert kss_model.named_vars_to_dims["blocking"] == ("channel", "day")
    assert kss_model.named_vars_to_dims["p_honest"] == ("claim",)
    names = {v.name for v in kss_model.free_RVs}
    assert "log_inflation" not in names  # integrated out
    assert {"handle_time", "peak_load_per_line", "honest_probability"} <= names


def test_log_density_is_finite_at_prior_draws(kss_model):
    logp = kss_model.compile_logp()
    rng = np.random.default_rng(1)
    rvs = kss_model.free_RVs
    draws = pm.draw(rvs, draws=50, random_seed=rng)
    for i in range(50):
        point = {}
        for rv, values in zip(rvs, draws, strict=True):
            value = values[i]
            transform = kss_model.rvs_to_transforms.get(rv)
            if transform is not None:
                value = transform.forward(value, *rv.owner.inputs).eval()
            point[kss_model.rvs_to_values[rv].name] = value
        assert np.isfinite(logp(point)), point


def test_expected_enrolments_never_exceed_capacity_in_prior_draws(kss_path, baseline_path):
    # The model's own inequality: lam (1 - B) <= servers * 60 / tau, whatever the demand.
    case, spec = load_case(kss_path, ["round_the_clock"]), load_spec(baseline_path)
    ds = case.to_dataset()
    inputs = arrays(model_inputs(ds, spec))
    rng = np.random.default_rng(7)
    for _ in range(500):
        params = draw_parameters(spec, 1, rng, kinds=("phone_lines",))
        params["peak_load_per_line"] = params["peak_load_per_line"] * 100  # overload
        flows = channel_flows(NUMPY, inputs, params, model_structure(ds, spec))
        ceiling = (6 * inputs["open_hours"] * params["attended_share"][:, None]
                   * params["enrol_share"][:, None] * 60 / params["handle_time"][:, None])
        assert np.all(flows["expected"] <= ceiling * (1 + 1e-9))


def test_structure_switches_change_the_graph(kss_path, baseline_path, tmp_path):
    path = tmp_path / "flat.toml"
    path.write_text('schema_version = 1\nid = "flat"\ntitle = "flat"\nextends = "baseline"\n'
                    '[structure]\ndemand = "constant"\nhonest_claims = false\n'
                    'unclear_claims = "registrations"\n', encoding="utf-8")
    model = build_model(load_case(kss_path), load_spec(path))
    names = {v.name for v in model.free_RVs}
    assert "daily_retention" not in names
    assert "honest_probability" not in names
    assert "counts_attempts_probability" not in names


def test_numpy_equations_equal_the_models_deterministics(kss_model):
    """The equations over NumPy give the model's Deterministics (the same code over PyTensor)."""
    from test_switches import assert_forward_equals_model

    assert_forward_equals_model(kss_model, draws=20, rtol=1e-8)


@pytest.mark.parametrize("mode", ["NUMBA", "FAST_RUN"])
def test_model_erlang_b_equals_the_numpy_recursion_on_a_grid_with_finite_gradients(mode):
    # N 1..5,000 and A from 0.01 N to 50 N, far tails included, on the log scale (the model's).
    from truecount.model.build import log_erlang_b

    servers, log_load = pt.lvector("servers"), pt.dvector("log_load")
    out = log_erlang_b(servers, log_load)
    f = pytensor.function([servers, log_load], [out, pytensor.grad(out.sum(), log_load)],
                          mode=mode)
    ns = np.repeat(np.unique(np.geomspace(1, 5000, 30).round().astype(np.int64)), 20)
    loads = ns * np.tile(np.geomspace(0.01, 50, 20), len(ns) // 20)
    value, grad = f(ns, np.log(loads))
    reference = capacity.log_blocking(ns, np.log(loads))
    np.testing.assert_allclose(value, reference, rtol=1e-10)
    assert np.all(np.isfinite(grad))
    slope = capacity.log_blocking_slope(ns, loads, np.exp(reference))
    np.testing.assert_allclose(grad, slope, rtol=1e-8)  # c - A(1 - B) cancels where B -> 1


def test_the_graph_does_not_grow_with_the_number_of_lines(kss_path, baseline_path, tmp_path):
    sizes = []
    for lines in (6, 2000):
        text = kss_path.read_text(encoding="utf-8").replace("servers = 6", f"servers = {lines}")
        path = tmp_path / f"lines{lines}.toml"
        path.write_text(text, encoding="utf-8")
        model = build_model(load_case(path), load_spec(baseline_path))
        dlogp = pytensor.grad(model.logp(), model.value_vars)
        sizes.append(len(list(applys_between(model.value_vars, dlogp))))
    assert sizes[0] == sizes[1]
