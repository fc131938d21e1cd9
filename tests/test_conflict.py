"""Prior-data conflict: a parameter pulled far outside its prior, or data the priors cannot produce.

The check (:func:`truecount.inference.results.prior_data_conflicts`) reads only the DataTree a fit writes, so
most tests here use hand-made trees or trees assembled from prior draws without sampling; one slow
test fits an impossible claim of 10,000,000,000 end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from arviz_base import from_dict
from tests.conftest import BASELINE, KSS
from tests.test_report import check_html

from truecount import load_case, load_spec
from truecount.cli import main, render_summary
from truecount.inference.analysis import analyse
from truecount.inference.diagnostics import gate
from truecount.inference.fitter import Fitter
from truecount.inference.results import CONFLICT, UNCONVERGED, prior_data_conflicts, summarize
from truecount.model.simulate import draw_parameters
from truecount.outputs.report import write_report

IMPOSSIBLE = 10_000_000_000


def hand_made(noise_median: float, claim: float = 23_000.0, draws: int = 1000) -> xr.DataTree:
    """Posterior, prior and predictive draws of two parameters and one claim, no model."""
    rng = np.random.default_rng(0)
    prior_noise = rng.lognormal(np.log(0.12), 0.55, (1, draws))  # 99% within about 0.03-0.5
    return from_dict(
        {
            "posterior": {
                "claim_noise": rng.lognormal(np.log(noise_median), 0.1, (2, draws)),
                # Moved by the data, but well inside its prior: no conflict.
                "handle_time": rng.lognormal(np.log(3.0), 0.2, (2, draws, 1)),
                "true_enrolments_total": rng.poisson(2000, (2, draws)),  # not a parameter
            },
            "prior": {
                "claim_noise": prior_noise,
                "handle_time": rng.lognormal(1.5, 0.49, (1, draws, 1)),
                "true_enrolments_total": rng.poisson(50, (1, draws)),
            },
            "prior_predictive": {"claim_value": rng.lognormal(np.log(3000), 2.0, (1, draws, 1))},
            "posterior_predictive": {"claim_value": rng.lognormal(np.log(20_000), 0.3,
                                                                  (2, draws, 1))},
            "observed_data": {"claim_value": np.array([claim])},
        },
        coords={"channel": ["phones"], "claim": ["final"]},
        dims={"handle_time": ["channel"], "claim_value": ["claim"]},
    )


def test_a_parameter_far_outside_its_prior_is_named():
    conflicts = prior_data_conflicts(hand_made(noise_median=5.0))
    assert len(conflicts) == 1, conflicts
    (line,) = conflicts
    assert line.startswith("claim_noise: posterior median 5")
    assert "99%" in line and "prior" in line and "spec" in line


def test_a_posterior_inside_its_prior_is_not_a_conflict():
    # Narrower than the prior and off its centre, but inside its central 99%.
    assert prior_data_conflicts(hand_made(noise_median=0.3)) == ()


def test_a_claim_the_priors_cannot_produce_is_named():
    conflicts = prior_data_conflicts(hand_made(noise_median=0.12, claim=IMPOSSIBLE))
    assert len(conflicts) == 1, conflicts
    assert conflicts[0].startswith("claim final (10,000,000,000) is further out")
    assert "0 of 1,000 prior predictive claims are as high" in conflicts[0]


def test_no_prior_draws_no_check():
    tree = hand_made(noise_median=5.0)
    del tree["prior"]
    del tree["prior_predictive"]
    assert prior_data_conflicts(tree) == ()


def test_constant_draws_are_not_a_conflict():
    # A parameter fixed by the spec (or a constant derived value) has no spread to be outside of.
    tree = from_dict({"posterior": {"daily_retention": np.ones((2, 100))},
                      "prior": {"daily_retention": np.ones((1, 100))}})
    assert prior_data_conflicts(tree) == ()


# -- through summarize, the CLI's text and the report, on trees assembled without sampling ----------


def assembled(case_path: Path, claim_noise: float | None = None, draws: int = 400,
              seed: int = 3) -> tuple[xr.DataTree, object, object]:
    """A full fit's DataTree with prior draws standing in for posterior draws (no sampling)."""
    case, spec = load_case(case_path), load_spec(BASELINE)
    fitter = Fitter.for_case(case, spec)
    rng = np.random.default_rng(seed)
    params = draw_parameters(spec, len(case.channels), rng, size=(2, draws), kinds=("phone_lines",))
    if claim_noise is not None:
        params["claim_noise"] = claim_noise * np.exp(rng.normal(0.0, 0.05, (2, draws)))
    posterior = xr.Dataset(
        {name: (("chain", "draw", "channel") if value.ndim == 3 else ("chain", "draw"), value)
         for name, value in params.items() if name in fitter.free},
        coords={"channel": fitter.coords["channel"]})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, draws), dtype=bool)),
                        "energy": (("chain", "draw"), rng.normal(size=(2, draws)))})
    trace = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    tree = fitter._assemble(trace, fitter.inputs_for(None), draws, seed)
    tree.attrs.update(seed=seed, draws=draws, tune=0, chains=2, sampler="prior draws")
    return tree, case, spec


@pytest.fixture(scope="module")
def noisy() -> tuple[xr.DataTree, object, object]:
    return assembled(KSS, claim_noise=5.0)


def test_summary_carries_the_conflicts_into_json(noisy):
    tree, _, _ = noisy
    summary = summarize(tree, gate(tree))
    assert [c.split(":")[0] for c in summary.conflicts] == ["claim_noise"]
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["conflicts"] == list(summary.conflicts)
    plain, _, _ = assembled(KSS)
    assert summarize(plain, gate(plain)).conflicts == ()


def test_an_impossible_claim_is_a_conflict_before_any_sampling(tmp_path):
    text = KSS.read_text(encoding="utf-8")
    assert text.count("value = 49000\n") == 1
    case = tmp_path / "impossible.toml"
    case.write_text(text.replace("value = 49000\n", f"value = {IMPOSSIBLE}\n"), encoding="utf-8")
    tree, _, _ = assembled(case)
    conflicts = summarize(tree, gate(tree)).conflicts
    assert len(conflicts) == 1 and conflicts[0].startswith("claim final_49000 (10,000,000,000)")


def test_render_summary_puts_the_conflict_right_under_the_headline(noisy):
    tree, _, _ = noisy
    verdict = gate(tree)
    summary = summarize(tree, verdict)
    lines = render_summary(summary, tree.attrs, "run").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("True enrolments"))
    assert lines[at + 1].startswith(f"{CONFLICT}: claim_noise: posterior median 5")
    # A result that failed the gate keeps its stamp on every line, the conflict included.
    failed = summarize(tree, verdict.__class__(False, verdict.table, "Diagnostics gate FAILED"))
    lines = render_summary(failed, tree.attrs, "run").splitlines()
    assert lines[0] == f"[{UNCONVERGED}]"
    assert any(line.startswith(f"UNCONVERGED | {CONFLICT}: claim_noise") for line in lines)
    plain, _, _ = assembled(KSS)
    assert CONFLICT not in render_summary(summarize(plain, gate(plain)), plain.attrs, "run")


def test_the_report_marks_the_conflict_in_its_headline(noisy, tmp_path):
    tree, case, spec = noisy
    write_report(tmp_path, analyse(tree), case, spec)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    headline = md.split("## Headline", 1)[1].split("\n## ", 1)[0]
    assert f"> **{CONFLICT}: claim_noise: posterior median 5" in headline
    assert UNCONVERGED not in md  # converged: a conflict is not a failed gate
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    check_html(page)
    assert f'<div class="stamp conflict">{CONFLICT}: claim_noise' in page
    assert 'class="stamp stamp-fixed"' not in page  # the fixed banner is for UNCONVERGED
    assert CONFLICT in (tmp_path / "table.tex").read_text(encoding="utf-8")


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_fitted_impossible_claim_is_flagged_in_summary_text_and_report(tmp_path, capsys):
    text = KSS.read_text(encoding="utf-8")
    case = tmp_path / "impossible.toml"
    case.write_text(text.replace("value = 49000\n", f"value = {IMPOSSIBLE}\n"), encoding="utf-8")
    out = tmp_path / "run"
    code = main(["fit", str(case), "--out", str(out), "--draws", "1000", "--tune", "1000",
                 "--seed", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err  # the sampler is happy: the gate alone would say nothing
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["gate_passed"] is True
    assert any(c.startswith("claim final_49000") for c in summary["conflicts"]), summary
    assert f"{CONFLICT}: claim final_49000" in captured.out
    assert f"> **{CONFLICT}: claim final_49000" in (out / "report.md").read_text(encoding="utf-8")
