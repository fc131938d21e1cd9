"""Walk-in desks: people queue in person and may leave; the number of desks may be a range.

A walk-in channel is a queue with patience (Erlang-A, as a call centre) whose count of desks can
be uncertain: the model then samples where it lies in the case's range, and Erlang-B is
interpolated between whole numbers of desks (``equations.log_erlang_b``). These tests hold the
interpolation to the whole numbers, the case format's range and its errors, the capacity table's
upper bound, the model against the NumPy equations, and the discrete-event campaign.
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
from truecount.model.equations import NUMPY, log_erlang_b
from truecount.workflows.des import case_to_toml, des_campaign

CASE = ROOT / "docs" / "calibration" / "walk_in.toml"
RANGED = {"servers_range": True}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "case.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_blocking_between_whole_numbers_of_desks_joins_them():
    log_load = np.log(np.array([5.0, 30.0, 80.0]))[:, None]
    desks = np.array([10.0, 10.25, 10.5, 10.999, 11.0, 40.0])
    got = log_erlang_b(NUMPY, desks, log_load, RANGED)
    exact = capacity.log_blocking(desks.astype(np.int64), log_load)
    whole = desks == np.floor(desks)
    np.testing.assert_allclose(got[:, whole], exact[:, whole], rtol=1e-12)
    # Between 10 and 11 it runs from one to the other, falling as desks are added.
    assert (np.diff(got[:, :5], axis=1) < 0).all()
    step = capacity.log_blocking(np.array(11), log_load) - capacity.log_blocking(np.array(10),
                                                                                 log_load)
    np.testing.assert_allclose(got[:, 2:3], exact[:, :1] + 0.5 * step, rtol=1e-12)


def test_a_walk_in_channel_takes_a_range_of_desks():
    case = load_case(CASE)
    points = case.channel("points")
    assert (points.kind, points.servers_range, points.servers_label) == (
        "walk_in", (20, 60), "20-60 desks")
    ds = case.to_dataset()
    assert list(ds.servers_upper.values) == [60, 6]
    inputs = model_inputs(ds, load_spec("baseline"))
    np.testing.assert_allclose(inputs["servers_log_span"].values, [np.log(3.0), 0.0])
    assert model_structure(ds, load_spec("baseline"))["servers_range"]


@pytest.mark.parametrize("servers, found", [
    ("[60, 20]", "[60, 20]"), ("[20]", "[20]"), ("[20, 60, 80]", "[20, 60, 80]"),
    ('[20, "many"]', "[20, 'many']"), ("[0, 5]", "[0, 5]"),
])
def test_a_bad_range_of_desks_is_one_line_naming_the_field(tmp_path: Path, servers, found):
    text = CASE.read_text(encoding="utf-8").replace("servers = [20, 60]", f"servers = {servers}")
    with pytest.raises(InputError) as info:
        load_case(_write(tmp_path, text))
    message = str(info.value)
    assert "channels[0].servers" in message and "fewest" in message and "\n" not in message


def test_only_walk_in_desks_take_a_range(tmp_path: Path):
    text = CASE.read_text(encoding="utf-8").replace("servers = 6\n", "servers = [4, 8]\n")
    with pytest.raises(InputError) as info:
        load_case(_write(tmp_path, text))
    assert "channels[1].servers" in str(info.value)


def test_the_capacity_table_is_an_upper_bound_at_the_most_desks():
    from truecount.cli import render_capacity

    result = case_capacity(load_case(CASE), 5.0)
    points = result.channels[0]
    assert points.max_registrations == pytest.approx(60 * 9 * 5 * 12.0)
    assert result.claims[0].line_hours_before == pytest.approx(60 * 9)
    text = render_capacity(result)
    assert "20-60 desks" in text and "most desks" in text


def test_a_reading_that_states_the_count_removes_the_range(tmp_path: Path):
    text = CASE.read_text(encoding="utf-8") + (
        '\n[readings.forty]\ndescription = "Forty desks."\nsource = "synthetic"\n'
        'quote = "A made-up campaign for calibration."\n'
        "[readings.forty.channels.points]\nservers = 40\n")
    case = load_case(_write(tmp_path, text)).with_readings(["forty"])
    assert case.channel("points").servers_range == (40, 40)
    assert not model_structure(case.to_dataset(), load_spec("baseline"))["servers_range"]


@pytest.mark.slow  # about 30 s of compiling
def test_the_model_of_walk_in_desks_samples_their_count_and_equals_the_numpy_equations():
    from test_switches import assert_forward_equals_model

    case, spec = load_case(CASE), load_spec("baseline")
    model = build_model(case, spec)
    free = {v.name for v in model.free_RVs}
    assert {"queue_patience", "servers_position"} <= free and "patience" not in free
    assert_forward_equals_model(model, draws=20, rtol=1e-8)
    ds = case.to_dataset()
    assert channel_kinds(model_inputs(ds, spec), model_structure(ds, spec)) == [
        "walk_in", "phone_lines"]


def test_a_known_number_of_desks_has_no_position_to_sample(tmp_path: Path):
    text = CASE.read_text(encoding="utf-8").replace("servers = [20, 60]", "servers = 40")
    case, spec = load_case(_write(tmp_path, text)), load_spec("baseline")
    assert "servers_position" not in {v.name for v in build_model(case, spec).free_RVs}


def test_desks_mixed_with_a_call_centre_know_which_is_which(tmp_path: Path):
    text = CASE.read_text(encoding="utf-8").replace('kind = "phone_lines"', 'kind = "call_centre"')
    ds, spec = load_case(_write(tmp_path, text)).to_dataset(), load_spec("baseline")
    inputs = model_inputs(ds, spec)
    assert list(inputs["channel_is_walk_in"].values) == [1.0, 0.0]
    assert channel_kinds(inputs, model_structure(ds, spec)) == ["walk_in", "call_centre"]


def test_a_simulated_walk_in_campaign_round_trips_as_a_case_file(tmp_path: Path):
    case, spec = load_case(CASE), load_spec("baseline")
    sim = des_campaign(case, spec, np.random.default_rng(3))
    assert sim.truth["true_enrolments_total"] > 0
    again = load_case(_write(tmp_path, case_to_toml(sim.case)))
    assert [c.kind for c in again.channels] == ["walk_in", "phone_lines"]
    assert again.channel("points").servers_range == (20, 60)
    assert [c.value for c in again.claims] == [c.value for c in sim.case.claims]
