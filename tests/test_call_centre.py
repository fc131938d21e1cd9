"""Call centres with a queue: agents, one queue, callers who hang up (Erlang-A).

The model's answered share (``equations.erlang_a_answered``: Erlang-B and a hypergeometric
factor, by series or Temme's expansion) is held against the birth-death chain summed state by
state (``capacity.erlang_a_chain``), and the discrete-event centre against both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from truecount import InputError, load_case, load_spec
from truecount.model import capacity
from truecount.model.bounds import case_capacity
from truecount.model.build import build_model
from truecount.model.data import channel_kinds, model_inputs, model_structure
from truecount.model.equations import NUMPY, erlang_a_answered
from truecount.workflows.des import QueueCentre, case_to_toml, des_campaign, run_queue_centre

CASE = ROOT / "docs" / "calibration" / "call_centre.toml"
LARGE = ROOT / "docs" / "calibration" / "call_centres.toml"


def _answered(servers: int, load: float, ratio: float) -> float:
    log_b = capacity.log_blocking(np.array(servers), np.log(load))
    return float(erlang_a_answered(NUMPY, np.array(float(servers)), np.log(load), log_b,
                                   np.array(ratio)))


@pytest.mark.parametrize("servers", [1, 6, 40, 500])
def test_the_answered_share_is_the_erlang_a_chains(servers):
    worst = 0.0
    for rho in (0.05, 0.5, 0.9, 1.0, 1.1, 2.0, 10.0, 50.0):
        for ratio in (0.05, 0.3, 1.0, 5.0):
            exact = capacity.erlang_a_chain(servers, rho * servers, ratio)
            worst = max(worst, abs(_answered(servers, rho * servers, ratio) - exact) / exact)
    assert worst < 1e-5


def test_the_answered_share_runs_from_erlang_b_to_the_agents_throughput():
    # Callers who hang up at once: the loss system.
    assert _answered(6, 6.0, 1e-6) == pytest.approx(1.0 - capacity.erlang_b(6, 6.0), rel=1e-4)
    # Patient callers below the agents' throughput: nearly all answered.
    assert _answered(500, 400.0, 20.0) > 0.999
    # Overload: the agents answer what they can, S / A of the callers.
    assert _answered(500, 5000.0, 1.0) == pytest.approx(0.1, rel=1e-3)
    # Never more than lines would answer in an hour: at most S / A.
    for load in (3.0, 30.0, 300.0):
        assert _answered(20, load, 3.0) <= min(1.0, 20.0 / load) + 1e-12


def test_a_call_centre_needs_agents(tmp_path: Path):
    text = CASE.read_text(encoding="utf-8").replace("servers = 40\n", "", 1)
    path = tmp_path / "case.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_case(path)
    assert "servers" in str(info.value) and "\n" not in str(info.value)


def test_the_capacity_table_counts_agents_as_lines():
    from truecount.cli import render_capacity

    result = case_capacity(load_case(CASE), 5.0)
    assert [c.kind for c in result.channels] == ["call_centre", "call_centre"]
    assert result.channels[0].max_registrations == pytest.approx(40 * 12 * 5 * 12.0)
    text = render_capacity(result)
    assert "40 agents" in text and "callers who hold in its queue" in text


@pytest.mark.slow  # about 20 s of compiling
def test_the_model_of_a_call_centre_has_patience_and_equals_the_numpy_equations():
    from test_switches import assert_forward_equals_model

    case, spec = load_case(CASE), load_spec("baseline")
    model = build_model(case, spec)
    assert "patience" in {v.name for v in model.free_RVs}
    assert_forward_equals_model(model, draws=20, rtol=1e-8)
    ds = case.to_dataset()
    assert channel_kinds(model_inputs(ds, spec), model_structure(ds, spec)) == [
        "call_centre", "call_centre"]


def test_a_case_of_lines_alone_has_no_patience(kss_path):
    case, spec = load_case(kss_path), load_spec("baseline")
    assert "patience" not in {v.name for v in build_model(case, spec).free_RVs}


def test_a_case_mixing_lines_and_a_call_centre_knows_which_is_which(tmp_path: Path):
    text = LARGE.read_text(encoding="utf-8").replace('kind = "call_centre"', 'kind = "phone_lines"',
                                                     1)
    path = tmp_path / "mixed.toml"
    path.write_text(text, encoding="utf-8")
    ds, spec = load_case(path).to_dataset(), load_spec("baseline")
    inputs = model_inputs(ds, spec)
    assert list(inputs["channel_is_queue"].values) == [0.0, 1.0, 1.0]
    assert channel_kinds(inputs, model_structure(ds, spec)) == [
        "phone_lines", "call_centre", "call_centre"]


def test_the_simulated_centre_answers_what_erlang_a_says_under_its_assumptions():
    # Round the clock for 10 days, exponential handle times and patience, every agent on duty.
    q = QueueCentre(servers=10, opens_min=0, closes_min=1440, open_days=10, peak_per_hour=180.0,
                    retention=1.0, handle_mean_min=5.0, attended_share=1.0, enrol_share=1.0,
                    patience_mean_min=5.0, exponential=True, retry_prob=0.0)
    res = run_queue_centre(q, np.random.default_rng(0))
    share = res.answered.sum() / res.attempts.sum()
    assert share == pytest.approx(capacity.erlang_a_chain(10, 15.0, 1.0), abs=0.02)
    assert (res.failed_busy + res.answered == res.attempts).all()


def test_the_simulated_centre_refuses_a_campaign_too_large_to_simulate():
    q = QueueCentre(servers=500, opens_min=0, closes_min=1440, open_days=30, peak_per_hour=1e6,
                    retention=1.0, handle_mean_min=5.0, attended_share=0.9, enrol_share=0.5,
                    patience_mean_min=3.0)
    with pytest.raises(ValueError, match="over the simulation's limit"):
        run_queue_centre(q, np.random.default_rng(0))


def test_a_simulated_call_centre_campaign_round_trips_as_a_case_file(tmp_path: Path):
    case, spec = load_case(CASE), load_spec("baseline")
    sim = des_campaign(case, spec, np.random.default_rng(5))
    assert sim.truth["true_enrolments_total"] > 0
    path = tmp_path / "sim.toml"
    path.write_text(case_to_toml(sim.case), encoding="utf-8")
    again = load_case(path)
    assert [c.kind for c in again.channels] == ["call_centre", "call_centre"]
    assert [c.value for c in again.claims] == [c.value for c in sim.case.claims]
