"""Every documented switch of the spec, alone and in combination, builds, agrees and fits.

The combinations are read from :data:`truecount.inputs.spec.STRUCTURE`, so a new switch is covered the day
it is added. Fast tests check the graph of each combination (every data container is read by the
log density: nutpie refuses new data for a container its compiled graph does not use, which is how
``demand = "constant"`` crashed every fit) and that the equations over NumPy equal the model's
Deterministics; slow tests check that equality for every combination and fit the defaults, each
switch alone and all switches together through :class:`Fitter`, the way ``truecount fit`` and
``sensitivity --vary structure:...`` do.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pymc as pm
import pytest
from pytensor.graph.traversal import ancestors

from conftest import KSS
from truecount import load_case, load_spec
from truecount.inference.fitter import Fitter
from truecount.inputs.spec import STRUCTURE
from truecount.model.build import build_model, model_info
from truecount.model.equations import DETERMINISTICS, numpy_deterministics

COMBINATIONS = [dict(zip(STRUCTURE, values, strict=True))
                for values in itertools.product(*(s.choices for s in STRUCTURE.values()))]
IDS = ["-".join(f"{k}={v}" for k, v in c.items()) for c in COMBINATIONS]


def _spec(tmp_path: Path, switches: dict) -> Path:
    def toml(v):
        return str(v).lower() if isinstance(v, bool) else f'"{v}"'

    lines = ['schema_version = 1', 'id = "switches"', 'title = "switches"', 'extends = "baseline"',
             "[structure]", *(f"{k} = {toml(v)}" for k, v in switches.items())]
    path = tmp_path / "switches.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _case(tmp_path: Path, evidence: bool) -> Path:
    if evidence:
        return KSS
    text = KSS.read_text(encoding="utf-8")
    text = re.sub(r"\[\[evidence\]\].*?(?=\n# -- third-party)", "", text, flags=re.S)
    path = tmp_path / "no_evidence.toml"
    path.write_text(text, encoding="utf-8")
    return path


def two_channel_case(tmp_path: Path) -> Path:
    """KSS with a second channel (a desk, 2 lines, other hours and days), claims that count each
    funnel quantity (and one unclear), a count for a day, a count for two hours about the desk
    alone, and evidence with counts about both channels."""
    text = KSS.read_text(encoding="utf-8")
    desk = """
[[channels]]
id = "desk"
kind = "phone_lines"
servers = 2
opens = "10:00"
closes = "14:30"
first_day = 2021-11-23
last_day = 2021-11-25

[[channels.cites]]
source = "malik_knights_2021"
quote = "a test channel"
"""
    claims = "".join(f"""
[[claims]]
id = "{counts}_{value}"
value = {value}
rounding = {rounding}
date = {date}
counts = "{counts}"
presented_as = "registrations"
cumulative = {"false" if extra.startswith("since") else "true"}
by = "test"
source = "malik_knights_2021"
quote = "a test claim"
{extra}""" for counts, value, rounding, date, extra in (
        ("registrations", 2000, 1, "2021-11-22", ""),
        ("answered", 300, 10, "2021-11-23T12:00:00", 'since = 2021-11-23T10:00:00\nchannel = "desk"'),
        ("attempts", 60000, 10000, "2021-11-24", ""),
        ("registrations", 700, 10, "2021-11-24", "since = 2021-11-24"),
        ("unclear", 80000, 1000, "2021-11-25", "")))
    evidence = """
[[evidence]]
id = "desk_reports"
channel = "desk"
failed = 3
succeeded = 9
source = "malik_knights_2021"
quote = "a test report"
"""
    marker = "# -- alternative readings"
    text = text.replace(marker, desk + "\n" + marker, 1)
    start = text.index("# -- published claims")
    end = text.index("# -- evidence about reaching the lines")
    text = text[:start] + claims + "\n" + text[end:]
    marker = "# -- third-party arithmetic"
    text = text.replace(marker, evidence + "\n" + marker, 1)
    path = tmp_path / "two_channels.toml"
    path.write_text(text, encoding="utf-8")
    return path


CASES = [(c, True) for c in COMBINATIONS] + [(COMBINATIONS[0], False)]
CASE_IDS = [*IDS, f"{IDS[0]}-no-evidence"]
# Fitted: the defaults, each switch alone at each other value, every switch away from its
# default, and no evidence (a fit per combination would grow as 2^switches; the equations are
# checked on every combination above).
_DEFAULTS = COMBINATIONS[0]
FITTED = [(c, e) for c, e in CASES
          if not e or sum(c[k] != _DEFAULTS[k] for k in c) in (0, 1, len(c))]
FITTED_IDS = [i for (c, e), i in zip(CASES, CASE_IDS, strict=True) if (c, e) in FITTED]


@pytest.mark.parametrize(("switches", "evidence"), CASES, ids=CASE_IDS)
def test_every_data_container_is_read_by_the_log_density(tmp_path, switches, evidence):
    model = build_model(load_case(_case(tmp_path, evidence)), load_spec(_spec(tmp_path, switches)))
    read = {v.name for v in ancestors([model.logp()])}
    unused = [v.name for v in model.data_vars if v.name not in read]
    assert unused == []


def assert_forward_equals_model(model: pm.Model, draws: int = 10, rtol: float = 1e-7) -> None:
    """The equations over NumPy give the model's Deterministics at ``draws`` prior draws.

    ``rtol`` 1e-7: PyMC's normal_lcdf and SciPy's log_ndtr differ in the 9th digit in the tails.
    """
    info = model_info(model)
    names = [n for n in DETERMINISTICS if n in model.named_vars]  # "desks": walk-in desks only
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")
    inputs = {v.name: np.asarray(v.get_value()) for v in model.data_vars}
    sigma_u = info.spec.priors["log_inflation"].params["sigma"]
    rvs = model.free_RVs
    prior_draws = pm.draw(rvs, draws=draws, random_seed=3)
    for i in range(draws):
        params = {rv.name: np.asarray(d[i]) for rv, d in zip(rvs, prior_draws, strict=True)}
        point = {}
        for rv in rvs:
            value = params[rv.name]
            transform = model.rvs_to_transforms.get(rv)
            if transform is not None:
                value = transform.forward(value, *rv.owner.inputs).eval()
            point[model.rvs_to_values[rv].name] = value
        for name, prior in info.spec.priors.items():  # Fixed priors and unused parameters
            params.setdefault(name, np.full(1, prior.scipy().mean()))
        from_model = dict(zip(names, fn(point), strict=True))
        from_numpy = numpy_deterministics(inputs, info.structure, params, sigma_u)
        for name in names:
            np.testing.assert_allclose(from_numpy[name], from_model[name], rtol=rtol, atol=1e-10,
                                       err_msg=name)


@pytest.mark.slow  # about 8 s of compiling per combination; tests/test_model.py checks KSS fast
@pytest.mark.parametrize(("switches", "evidence"), CASES, ids=CASE_IDS)
def test_numpy_equations_equal_the_models_deterministics(tmp_path, switches, evidence):
    assert_forward_equals_model(build_model(load_case(_case(tmp_path, evidence)),
                                            load_spec(_spec(tmp_path, switches))))


@pytest.mark.slow
@pytest.mark.parametrize(("switches", "evidence"), FITTED, ids=FITTED_IDS)
def test_each_switch_fits(tmp_path, switches, evidence):
    fitter = Fitter.for_case(load_case(_case(tmp_path, evidence)),
                             load_spec(_spec(tmp_path, switches)))
    tree = fitter.fit(draws=100, tune=100, chains=2, seed=0)
    posterior = tree["posterior"]
    assert dict(posterior.sizes)["draw"] == 100
    assert np.all(np.isfinite(posterior["true_enrolments_total"].values))
    assert ("daily_retention" in posterior) == (switches["demand"] == "decaying")


def test_the_equations_agree_on_a_two_channel_case(tmp_path):
    """Two channels of different size and hours, a claim of each funnel quantity, evidence with
    counts about each channel: NumPy and PyTensor give the same Deterministics."""
    case = load_case(two_channel_case(tmp_path))
    assert len(case.channels) == 2 and len(case.evidence) == 2
    assert_forward_equals_model(build_model(case, load_spec("baseline")), draws=10)


@pytest.mark.slow
@pytest.mark.parametrize("switches", COMBINATIONS, ids=IDS)
def test_the_equations_agree_on_a_two_channel_case_under_every_switch(tmp_path, switches):
    assert_forward_equals_model(build_model(load_case(two_channel_case(tmp_path)),
                                            load_spec(_spec(tmp_path, switches))))


@pytest.mark.slow
def test_a_two_channel_case_fits_with_the_default_sampler(tmp_path):
    fitter = Fitter.for_case(load_case(two_channel_case(tmp_path)), load_spec("baseline"))
    tree = fitter.fit(draws=100, tune=200, chains=2, seed=0)
    posterior = tree["posterior"]
    assert posterior.sizes["channel"] == 2 and posterior.sizes["claim"] == 5
    assert np.all(np.isfinite(posterior["true_enrolments_total"].values))
    assert np.all(posterior["capacity"].sel(channel="desk") < posterior["capacity"].sel(
        channel="kss_phones"))  # 2 lines for 4.5 hours on 3 days against 6 for 11 hours on 5
