"""Figures of a run, on a small synthetic tree with the layout of a fit's tree."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import arviz_base as azb
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from truecount.outputs import figures

STAMP = "UNCONVERGED: the diagnostics gate failed; do not quote these numbers"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = ["phones"]
DAYS = ["2021-11-19", "2021-11-20", "2021-11-21"]
CLAIMS = ["early_300", "final_800"]
EVIDENCE = ["posts"]


def _parameters(rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Draws of every model parameter (per-channel ones with a trailing channel axis)."""
    per_channel = (*shape, len(CHANNELS))
    return {
        "handle_time": rng.lognormal(1.2, 0.3, per_channel),
        "attended_share": rng.beta(8, 2, per_channel),
        "peak_load_per_line": rng.lognormal(0.0, 1.0, per_channel),
        # Constant, as with constant demand: exercises the "constant" branches.
        "daily_retention": np.ones(per_channel),
        "enrol_share": rng.beta(5, 3, per_channel),
        "claim_noise": rng.lognormal(-2.0, 0.4, shape),
        "honest_probability": rng.beta(2, 2, shape),
        "counts_attempts_probability": rng.beta(2, 2, shape),
        "report_bias_odds": rng.lognormal(1.0, 0.5, shape),
    }


def _quantities(rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Parameters plus derived counts; the first day is closed (zero enrolments)."""
    out = _parameters(rng, shape)
    expected = rng.gamma(20.0, 10.0, (*shape, len(CHANNELS), len(DAYS)))
    expected[..., 0] = 0.0
    true = rng.poisson(expected)
    capacity = rng.gamma(30.0, 20.0, (*shape, len(CHANNELS)))
    exposure = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    at_claim = np.einsum("...cd,kd->...k", true, exposure)
    out.update({
        "expected_enrolments": expected,
        "true_enrolments": true,
        "true_enrolments_total": true.sum(axis=(-2, -1)),
        "true_at_claim": at_claim,
        "capacity": capacity,
        "capacity_at_claim": np.einsum("...c,kc->...k", capacity, np.full((len(CLAIMS), 1), 0.5)),
        "inflation_factor": np.array([300.0, 800.0]) / np.maximum(at_claim, 1),
    })
    return out


def _replicated(rng: np.random.Generator, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Replicated claims (rounded to 100, some to 0) and evidence counts."""
    claims = np.round(rng.lognormal(np.log([300.0, 800.0]), 0.8, (*shape, len(CLAIMS))) / 100) * 100
    return {"claim_value": claims,
            "evidence_reports_failed": rng.binomial(10, 0.6, (*shape, len(EVIDENCE)))}


def _tree() -> xr.DataTree:
    rng = np.random.default_rng(1)
    posterior_shape, prior_shape = (2, 50), (1, 100)
    channel_day = ["channel", "day"]
    dims = {
        "handle_time": ["channel"], "attended_share": ["channel"], "peak_load_per_line": ["channel"],
        "daily_retention": ["channel"], "enrol_share": ["channel"], "capacity": ["channel"],
        "expected_enrolments": channel_day, "true_enrolments": channel_day,
        "true_at_claim": ["claim"], "capacity_at_claim": ["claim"], "inflation_factor": ["claim"],
        "claim_value": ["claim"], "evidence_reports_failed": ["evidence"],
        "open_hours": channel_day, "claim_exposure": ["claim", "channel", "day"],
        "claim_rounding": ["claim"], "evidence_reports": ["evidence"],
    }
    energy = rng.normal(0.0, 3.0, posterior_shape).cumsum(axis=1) * 0.1 + rng.normal(0, 3, posterior_shape)
    return azb.from_dict(
        {
            "posterior": _quantities(rng, posterior_shape),
            "prior": _quantities(rng, prior_shape),
            "sample_stats": {"energy": energy, "diverging": np.zeros(posterior_shape, dtype=bool)},
            "posterior_predictive": _replicated(rng, posterior_shape),
            "prior_predictive": _replicated(rng, prior_shape),
            "observed_data": {"evidence_reports_failed": np.array([6])},
            "constant_data": {
                "claim_value": np.array([300.0, 800.0]),
                "claim_rounding": np.array([100.0, 100.0]),
                "open_hours": np.array([[0.0, 10.0, 10.0]]),
                "claim_exposure": np.array([[[0.0, 1.0, 0.0]], [[0.0, 1.0, 1.0]]]),
                "evidence_reports": np.array([10]),
            },
        },
        coords={"channel": CHANNELS, "day": DAYS, "claim": CLAIMS, "evidence": EVIDENCE},
        dims=dims,
        attrs={"/": {"gate_passed": 0, "case_id": "synthetic", "spec_id": "test"}},
    )


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    return _tree()


FUNCTIONS: dict[str, Callable[..., Figure]] = {
    "posterior_enrolments": figures.posterior_enrolments,
    "timeline": figures.timeline,
    "prior_posterior": figures.prior_posterior,
    "diagnostics": figures.diagnostics,
    "predictive_check": figures.predictive_check,
}


def _texts(fig: Figure) -> list[str]:
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts]
        texts.append(ax.get_title())
    return texts


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("stamp", [None, STAMP])
def test_figure_renders(tree: xr.DataTree, name: str, stamp: str | None) -> None:
    fig = FUNCTIONS[name](tree, stamp=stamp)
    assert isinstance(fig, Figure)
    png = figures.figure_png(fig)
    assert isinstance(png, bytes)
    assert png.startswith(PNG_SIGNATURE)
    stamped = [t for t in _texts(fig) if STAMP in t.replace("\n", " ")]
    if stamp is None:
        assert not stamped
    else:
        # The red line at the top carries the exact text; the diagonal one may wrap it.
        assert STAMP in [t.get_text() for t in fig.texts]
        assert len(stamped) >= 2
        assert all(t.get_color() in ("#c00000", "#d00000") for t in fig.texts
                   if STAMP in t.get_text().replace("\n", " "))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_stamp_line_sits_above_titles_and_axes(tree: xr.DataTree, name: str) -> None:
    fig = FUNCTIONS[name](tree, stamp=STAMP)
    figures.figure_png(fig)
    top_line = next(t for t in fig.texts if t.get_text() == STAMP)
    below = [ax.get_tightbbox().y1 for ax in fig.axes]
    if fig.get_suptitle():
        below.append(fig._suptitle.get_window_extent().y1)
    assert top_line.get_window_extent().y0 >= max(below) - 1
    assert top_line.get_window_extent().y1 <= fig.bbox.y1 + 1


def test_posterior_enrolments_marks_claims_and_capacity(tree: xr.DataTree) -> None:
    fig = figures.posterior_enrolments(tree, mass=0.8)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    texts = _texts(fig)
    assert any("early_300" in t and "300" in t for t in texts)
    assert any("final_800" in t for t in texts)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("capacity ceiling (median)") for t in legend)
    assert any(t.startswith("80% interval") for t in legend)
    assert any(t == "prior" for t in legend)


def test_timeline_places_claims_on_their_last_covered_day(tree: xr.DataTree) -> None:
    fig = figures.timeline(tree)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    points = {line.get_label(): line.get_xydata()[0] for line in ax.get_lines()
              if line.get_label().startswith("claim ")}
    # Matplotlib's date numbers count days since 1970-01-01, like datetime64[D].
    days = [float(np.datetime64(d, "D").astype(float)) for d in DAYS]
    assert points["claim early_300: 300"][0] == pytest.approx(days[1])
    assert points["claim final_800: 800"][0] == pytest.approx(days[2])
    assert points["claim final_800: 800"][1] == pytest.approx(800.0)


def test_prior_posterior_panels_and_log_axis(tree: xr.DataTree) -> None:
    fig = figures.prior_posterior(tree, var_names=["handle_time", "peak_load_per_line", "missing"])
    assert len(fig.axes) == 2
    scales = {ax.get_title(): ax.get_xscale() for ax in fig.axes}
    assert scales == {"handle_time [phones]": "linear", "peak_load_per_line [phones]": "log"}


def test_prior_posterior_without_any_known_parameter(tree: xr.DataTree) -> None:
    fig = figures.prior_posterior(tree, var_names=["missing"], stamp=STAMP)
    assert figures.figure_png(fig).startswith(PNG_SIGNATURE)


def test_diagnostics_has_a_panel_per_parameter_element_and_energy(tree: xr.DataTree) -> None:
    fig = figures.diagnostics(tree)
    titles = [ax.get_title() for ax in fig.axes]
    present = [n for n in figures.PARAMETERS if n in tree["posterior"].to_dataset()]
    assert len(titles) == len(present) + 1
    assert titles[-1].startswith("energy")
    assert any(t.startswith("handle_time\nphones, R-hat") for t in titles)
    assert "0 divergent transitions" in fig.get_suptitle()


def test_predictive_check_panels(tree: xr.DataTree) -> None:
    fig = figures.predictive_check(tree)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles] == ["claim early_300", "claim final_800", "evidence posts"]
    assert fig.axes[0].get_xscale() == "log"
    assert fig.axes[2].get_xlabel() == "reports describing a failure (of 10)"


def test_figures_build_in_threads(tree: xr.DataTree) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        pngs = list(pool.map(lambda f: figures.figure_png(f(tree, stamp=STAMP)), FUNCTIONS.values()))
    assert all(png.startswith(PNG_SIGNATURE) for png in pngs)
