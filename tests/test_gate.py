import numpy as np
from arviz_base import from_dict

from truecount.inference.diagnostics import gate
from truecount.inference.results import format_probability, hdi, round_sig, round_to_sd


def make_tree(stuck: bool, divergences: int = 0, draws: int = 1000):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, draws))
    if stuck:
        x = x + np.array([0.0, 0.0, 3.0, 3.0])[:, None]  # two chains in another place
    diverging = np.zeros((4, draws), dtype=bool)
    diverging.flat[:divergences] = True
    return from_dict({
        "posterior": {"handle_time": x, "true_enrolments_total": np.exp(x),
                      "blocking": np.zeros((4, draws))},
        "sample_stats": {"diverging": diverging, "energy": rng.normal(size=(4, draws))},
    })


def test_gate_passes_a_good_fit():
    result = gate(make_tree(stuck=False))
    assert result.passed, result.text
    assert result.text.startswith("Diagnostics gate PASSED")
    assert bool(result.table.loc["blocking", "constant"])


def test_gate_fails_chains_that_disagree():
    result = gate(make_tree(stuck=True))
    assert not result.passed
    assert "handle_time: R-hat" in result.text
    assert result.table.loc["handle_time", "r_hat"] > 1.01


def test_gate_fails_divergences_and_low_ess():
    result = gate(make_tree(stuck=False, divergences=3))
    assert not result.passed and "3 divergent transitions" in result.text
    short = gate(make_tree(stuck=False, draws=60))
    assert not short.passed and "ESS" in short.text


def test_gate_fails_low_ebfmi():
    tree = make_tree(stuck=False)
    energy = np.cumsum(np.random.default_rng(1).normal(size=(4, 1000)), axis=1)  # random walk
    tree["sample_stats"] = tree["sample_stats"].to_dataset().assign(
        energy=(("chain", "draw"), energy))
    result = gate(tree)
    assert not result.passed and "E-BFMI below 0.3" in result.text


def test_probability_with_no_draw_is_a_bound_not_zero():
    assert format_probability(0.0, 8000) == "< 1 in 8,000 draws"
    assert format_probability(1.0, 8000) == "> 7,999 in 8,000 draws"
    assert format_probability(0.25, 8000) == "0.25"
    assert format_probability(0.99988, 8000) == "1 - 1.2e-04"  # was "1.0e+00"
    assert format_probability(0.001, 8000) == "1.0e-03"


def test_hdi_and_rounding():
    x = np.concatenate([np.zeros(900), np.linspace(10, 100, 100)])
    assert hdi(x, 0.9) == (0.0, 0.0)
    assert hdi(np.arange(1000.0), 0.5) == (0.0, 499.0)
    assert round_sig(5483.2, 2) == 5500 and round_sig(0.01234, 2) == 0.012
    assert round_to_sd(1937.5, 1500.0) == 1900.0
    assert round_to_sd(44.37, 40.0) == 44.0
    assert round_to_sd(0.6234, 0.21) == 0.62
    assert round_to_sd(3.0, 0.0) == 3.0
