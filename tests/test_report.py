import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from truecount import load_case, load_spec
from truecount.inference.analysis import Options, analyse
from truecount.inference.diagnostics import Thresholds, gate
from truecount.inference.fitter import fit
from truecount.inference.results import UNCONVERGED, format_number
from truecount.model.build import build_model
from truecount.outputs.report import render_html, render_markdown, write_report

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Checker(HTMLParser):
    """Checks that every element is closed in order and collects image sources."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def check_html(text):
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    assert text.startswith("<!DOCTYPE html>")
    return checker.images


def test_renderers_escape_and_embed():
    blocks = [("h", 1, "A <title>"), ("stamp", "UNCONVERGED"), ("p", "**bold** & `code`"),
              ("ul", ["one", "two"]), ("table", ["a", "b"], [["1", "x|y"]]), ("pre", "x < y"),
              ("img", "fig", "caption")]
    page = render_html(blocks, {"fig": b"\x89PNG\r\n\x1a\nxx"}, title="t")
    images = check_html(page)
    assert images == ["data:image/png;base64,iVBORw0KGgp4eA=="]
    assert "A &lt;title&gt;" in page and "<strong>bold</strong> &amp; <code>code</code>" in page
    assert page.count("UNCONVERGED") == 2  # the fixed banner and the block
    md = render_markdown(blocks)
    assert "![caption](figures/fig.png)" in md and "| 1 | x/y |" in md


@pytest.fixture(scope="module")
def small_fit(tmp_path_factory):
    from tests.conftest import BASELINE, KSS
    case, spec = load_case(KSS), load_spec(BASELINE)
    tree = fit(build_model(case, spec), draws=150, tune=150, chains=2, seed=5)
    return tree, case, spec


@pytest.mark.slow
def test_report_from_a_small_fit(small_fit, tmp_path):
    tree, case, spec = small_fit
    lenient = gate(tree, thresholds=Thresholds(ess_bulk_min=10, ess_tail_min=10, rhat_max=1.1,
                                               divergences_max=10))
    analysis = analyse(tree, Options(thresholds=(3500.0,)), verdict=lenient,
                       claim_dates={c.id: c.when for c in case.claims})
    written = write_report(tmp_path, analysis, case, spec)
    assert {p.name for p in written} >= {"report.md", "report.html", "summary.csv", "table.tex",
                                         "posterior.png", "timeline.png", "diagnostics.png"}
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    table = pd.read_csv(tmp_path / "summary.csv", index_col="quantity")
    # Every number of the headline is the table's.
    row = table.loc["true_enrolments_total"]
    headline = re.search(r"\*\*True enrolments by the end of the drive \([0-9-]+\): (.+?)\.\*\*",
                         md).group(1)
    assert headline == (f"{format_number(row['median'])} (90% equal-tailed credible interval "
                        f"{format_number(row['eti90_lb'])}-{format_number(row['eti90_ub'])})")
    for claim in ("utv_23000", "final_49000"):
        r = table.loc[f"inflation_factor[{claim}]"]
        cell = (f"{format_number(r['median'])} ({format_number(r['eti90_lb'])}-"
                f"{format_number(r['eti90_ub'])})")
        assert cell in md
    # No draw makes 49,000 possible: a bound, never 0.
    n = tree["posterior"].sizes["chain"] * tree["posterior"].sizes["draw"]
    assert f"< 1 in {n:,} draws" in md
    assert "P(true enrolments < 3,500)" in md
    assert UNCONVERGED not in md
    for item in ("BARG checklist", "Methods", "Posterior predictive check", "Diagnostics",
                 "Sensitivity", "Reproduce", "handle_time", "malik_knights_2021"):
        assert item in md
    images = check_html((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert len(images) == 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "\\toprule" in (tmp_path / "table.tex").read_text(encoding="utf-8")
    assert {"eti90_lb", "hdi95_ub", "r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)


@pytest.mark.slow
def test_failed_gate_stamps_every_page_and_figure(small_fit, tmp_path):
    tree, case, spec = small_fit
    verdict = gate(tree)  # 2 x 150 draws cannot reach an ESS of 400
    assert not verdict.passed
    write_report(tmp_path, analyse(tree, Options(kind="hdi"), verdict=verdict), case, spec)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert md.count(UNCONVERGED) >= 3  # top, headline, diagnostics
    assert "highest-density credible interval" in md
    html_text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "stamp-fixed" in html_text
    assert "UNCONVERGED" in (tmp_path / "table.tex").read_text(encoding="utf-8")


@pytest.mark.slow
def test_fit_writes_report_and_report_command_rewrites_it(tmp_path, kss_path, capsys):
    from truecount.cli import main

    out = tmp_path / "run"
    code = main(["fit", str(kss_path), "--out", str(out), "--draws", "150", "--tune", "150",
                 "--chains", "2", "--allow-unconverged"])
    assert code == 3  # unconverged, but written because asked, and stamped
    assert (out / "report.html").exists() and (out / "run.json").exists()
    assert "UNCONVERGED" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["stamp"] == UNCONVERGED
    code = main(["report", str(out), "--threshold", "1000", "--interval", "hdi"])
    assert code == 3
    assert "P(true enrolments < 1,000)" in (out / "report.md").read_text(encoding="utf-8")


def test_methods_list_the_priors_the_model_has():
    """A phone-line case under a fixed scale: no call-centre, desk, form or pooled-scale prior in
    the table, and a line naming them; under the pooled spec the scale is listed."""
    import numpy as np
    import xarray as xr
    from tests.conftest import KSS

    from truecount.outputs.report import _methods

    case = load_case(KSS)

    def table(spec_name, names):
        post = xr.Dataset({n: (("chain", "draw"), np.zeros((1, 2))) for n in names})
        blocks = _methods(xr.DataTree.from_dict({"posterior": post}), case, load_spec(spec_name))
        (rows,) = [b[2] for b in blocks if b[0] == "table" and b[1][0] == "parameter"]
        return [r[0] for r in rows], " ".join(str(b[1]) for b in blocks if b[0] == "p")

    lines = ("handle_time", "attended_share", "peak_load_per_line", "enrol_share",
             "daily_retention", "claim_noise", "honest_probability",
             "counts_attempts_probability", "report_bias_odds")
    listed, text = table("baseline", lines)
    assert set(listed) == {*lines, "log_inflation"}
    assert "`patience`" in text and "`inflation_scale`" in text
    listed, _ = table("inflation_pooled", (*lines, "inflation_scale"))
    assert "inflation_scale" in listed
