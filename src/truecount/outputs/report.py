"""The report an analyst can publish from: report.md, report.html, figures and tables.

A view over results: every number comes from
:func:`truecount.inference.results.quantity_table` and :func:`truecount.inference.results.summarize`,
every figure from :mod:`truecount.outputs.figures`; this module only arranges them. The report
is built as a list of blocks rendered twice, to Markdown (figures linked) and to one
self-contained HTML file (figures embedded as data URIs).

Anchor: Kruschke, J. K. (2021). Bayesian Analysis Reporting Guidelines. *Nature Human Behaviour*
5, 1282-1291. The report ends with a BARG checklist saying where each item is addressed, or that it
is not.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from truecount.inference.analysis import PSENSE_THRESHOLD, Analysis
from truecount.inference.diagnostics import GateResult
from truecount.inference.results import (
    CONFLICT,
    CONFLICT_MASS,
    FORM_TEXT,
    INTERVAL_KINDS,
    Summary,
    format_number,
)
from truecount.inputs.case import Case
from truecount.inputs.spec import STRUCTURE, Spec
from truecount.outputs import figures
from truecount.quantities import PARAMETERS, SAMPLED

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SUMMARY_CSV = "summary.csv"
TABLE_TEX = "table.tex"
FIGURES_DIR = "figures"

#: Parameters shown in the diagnostics excerpt and the prior/posterior figure: the sampled ones.
MAIN_PARAMETERS = SAMPLED


Block = tuple[Any, ...]


def write_report(folder: Path, analysis: Analysis, case: Case, spec: Spec,
                 sensitivity: tuple[list[Any], dict[str, Any]] | None = None) -> list[Path]:
    """Write report.md, report.html, summary.csv, table.tex and figures/*.png into ``folder``.

    Every number is ``analysis``'s (:func:`truecount.inference.analysis.analyse`); ``case`` and
    ``spec`` supply the words (sources, priors with reasons). ``sensitivity`` is the rows and
    settings of a ``truecount sensitivity`` folder (:func:`truecount.workflows.sensitivity.load_outputs`);
    the report's sensitivity section always has the power-scaling check of this fit, and the
    refits under alternatives when they are given.
    """
    tree, table, summary = analysis.tree, analysis.table, analysis.summary
    options = analysis.options
    stamp = summary.stamp
    fig_dir = folder / FIGURES_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    pngs = {
        "posterior": figures.posterior_enrolments(tree, mass=options.mass, stamp=stamp),
        "timeline": figures.timeline(tree, mass=options.mass, stamp=stamp),
        "prior_posterior": figures.prior_posterior(tree, stamp=stamp),
        "predictive": figures.predictive_check(tree, stamp=stamp),
        "diagnostics": figures.diagnostics(tree, stamp=stamp),
    }
    if sensitivity is not None:
        pngs["sensitivity"] = figures.forest_plot(sensitivity[0], stamp=stamp)
    images: dict[str, bytes] = {}
    for name, fig in pngs.items():
        images[name] = figures.figure_png(fig)
        (fig_dir / f"{name}.png").write_bytes(images[name])
    blocks = _blocks(analysis, case, spec, sensitivity)
    written = [folder / REPORT_MD, folder / REPORT_HTML, folder / SUMMARY_CSV, folder / TABLE_TEX]
    written[0].write_text(render_markdown(blocks), encoding="utf-8")
    written[1].write_text(render_html(blocks, images, title=f"truecount report: {case.title}"),
                          encoding="utf-8")
    table.to_csv(written[2], index_label="quantity")
    written[3].write_text(latex_table(summary), encoding="utf-8")
    return written + [fig_dir / f"{name}.png" for name in pngs]


# -- content ----------------------------------------------------------------------------------------


def _blocks(analysis: Analysis, case: Case, spec: Spec,
            sensitivity: tuple[list[Any], dict[str, Any]] | None = None) -> list[Block]:
    tree, summary, options = analysis.tree, analysis.summary, analysis.options
    attrs = tree.attrs
    kind_name = INTERVAL_KINDS[options.kind]
    b: list[Block] = [("h", 1, f"truecount report: {case.title}")]
    if summary.stamp:
        b.append(("stamp", summary.stamp))
    end = max(c.last_day for c in case.channels)
    b += [
        ("p", f"Case `{case.id}` ({case.path.name}, readings: "
              f"{', '.join(case.applied_readings) or 'as stated'}) under spec `{spec.id}` "
              f"({spec.title}). Seed {attrs.get('seed')}, {summary.chains} chains x "
              f"{summary.draws:,} draws. Intervals are {options.mass:.0%} {kind_name}s; "
              "numbers are rounded to a tenth of the posterior standard deviation's leading digit."),
        ("h", 2, "Headline"),
    ]
    if summary.stamp:
        b.append(("stamp", summary.stamp))
    ceiling = (f"The channel could have registered at most {summary.capacity.text()} people over "
               "its open hours (every attended line always busy, every answered call an "
               "enrolment)." if math.isfinite(summary.capacity.median) else
               "Capacity does not bound the total: an online form, which no line limits, is "
               "among the channels, so only the claims about the lines alone can be checked "
               "against what the lines could do.")
    b.append(("p", f"**True enrolments by the end of the drive ({end}): "
                   f"{summary.true_enrolments.text()}.** {ceiling}"))
    for conflict in summary.conflicts:
        b.append(("conflict", f"{CONFLICT}: {conflict}"))
    if summary.conflicts:
        b.append(("p", "A prior-data conflict: a parameter's posterior median outside the central "
                       f"{CONFLICT_MASS:.0%} of its prior, or an observed claim or report outside "
                       f"the central {CONFLICT_MASS:.0%} of what the priors predict. The "
                       "diagnostics gate cannot see this: the sampler explores such a posterior "
                       "as well as any other."))
    rows = []
    for c in summary.claims:
        rows.append([c.id, f"{c.value:,}", c.date, _iv(c.true_at_claim), _iv(c.inflation),
                     c.p_possible_text, f"{c.p_honest:.2f}", f"{c.p_counts_attempts:.2f}",
                     _iv(c.days_needed) if c.p_possible_text != FORM_TEXT else "not bounded"])
    b.append(("table", ["claim", "published", "covers", "true enrolments it counts",
                        "inflation factor (claim / true)", "P(physically possible)",
                        "P(honest)", "P(counts call attempts)",
                        "days the channel would need"], rows))
    b.append(("p", f"Each interval: median ({options.mass:.0%} {kind_name}). "
                   "Physically possible: the claim fits the channel's capacity before its date. "
                   "A probability that no draw reached is given as a bound."))
    b.append(("h", 3, "Decision statements"))
    statements = [f"P(claim {c.id} of {c.value:,} was physically possible) = {c.p_possible_text}."
                  for c in summary.claims]
    statements += [f"P(true enrolments < {t['threshold']:,.0f}) = {t['text']}."
                   for t in summary.thresholds]
    if not summary.thresholds:
        statements.append("No thresholds were named (`truecount report RUN_DIR --threshold N`).")
    b.append(("ul", statements))
    b.append(("img", "posterior", "Posterior of true enrolments (log axis), with the claims and "
                     "the capacity ceiling"))
    b.append(("img", "timeline", "Cumulative true enrolments over the drive, claims and capacity"))
    warnings = case.warnings()
    if warnings:
        b.append(("h", 3, "Warnings about the case"))
        b.append(("ul", warnings))

    b += _methods(tree, case, spec)
    b += _diagnostics(summary, analysis.verdict, analysis.table)
    b += _predictive(analysis)
    b += _sensitivity(analysis, case, sensitivity)
    b += _barg(summary, sensitivity is not None)
    b += [("h", 2, "Reproduce"),
          ("pre", _reproduce(tree, case, spec))]
    return b


def _iv(iv: Any) -> str:
    return f"{format_number(iv.median)} ({format_number(iv.lower)}-{format_number(iv.upper)})"


def _servers(c: Any) -> str:
    if c.kind == "call_centre":
        return f"a call centre of {c.servers} agents"
    if c.kind == "walk_in":
        low, high = c.servers_range
        count = f"{low:,}" if low == high else f"between {low:,} and {high:,}"
        return f"walk-in desks, {count} of them"
    return f"{c.servers} lines" if c.bounded else "an online form"


def _methods(tree: xr.DataTree, case: Case, spec: Spec) -> list[Block]:
    attrs = tree.attrs
    channels = "; ".join(
        f"{c.id}: {_servers(c)} open "
        f"{c.hours_label} ({c.hours_per_day:g} h a day) from {c.first_day} to {c.last_day}"
        for c in case.channels)
    forms = ("" if all(c.bounded for c in case.channels) else
             " An online form has no lines: it takes submissions at a rate of its own "
             "(peak_submissions_per_hour, decaying as the calls do), none of them lost, a share "
             "of them enrolments; capacity cannot bound a claim it counts towards.")
    if any(c.kind == "call_centre" for c in case.channels):
        forms += (" A call centre's callers who find every agent busy hold in one queue and hang "
                  "up after an exponential patience of mean `patience` minutes (Erlang-A): its "
                  "blocking B is the share who hang up, and its capacity is the same arithmetic "
                  "as lines'.")
    if any(c.kind == "walk_in" for c in case.channels):
        forms += (" At walk-in desks people who find every desk busy queue and leave after an "
                  "exponential time of mean `queue_patience` minutes (Erlang-A, as a call "
                  "centre's callers). Where the sources give the number of desks as a range, the "
                  "model samples where it lies (`servers_position`, uniform on the log scale "
                  "unless the spec says otherwise), and Erlang-B is interpolated between whole "
                  "numbers of desks; the `desks` row of the table is the posterior count.")
    if spec.structure["inflation"] == "pooled":
        forms += (" The scale of the inflated claims' half-normal log factor is not fixed: the "
                  "campaign's claims share it (`inflation_scale`, with its own prior), so claims "
                  "that capacity bounds inform how far the others are inflated.")
    structure = "; ".join(f"{k} = {v} ({STRUCTURE[k].meaning})" for k, v in spec.structure.items())
    b: list[Block] = [
        ("h", 2, "Methods"),
        ("p", f"We estimate how many people really enrolled in the {case.actor} drive from the "
              "published claims, the capacity of the channel people had to enrol through, and "
              f"reports that the channel could not be reached. Channel: {channels}. Each open "
              "day, callers make call attempts at a rate that decays from the first open day; a "
              "caller who finds every line busy gets no answer (Erlang's loss model), and lines "
              "are attended only part of their open hours. A share of answered calls become "
              "enrolments; true enrolments are Poisson counts around that expectation. Each "
              "claim reports a quantity on the funnel call attempts -> answered calls -> "
              "enrolments at its date, either honestly or inflated by a factor whose logarithm is "
              "half-normal; the inflation is integrated out analytically, and a claim whose "
              "meaning is unclear may count call attempts rather than people. Reports of "
              "unreachable lines are binomial in the share of attempts that failed, distorted by "
              f"the greater readiness of those who failed to post.{forms} Structure: "
              f"{structure}."),
        ("pre", "lambda[c,d]   = lambda0[c] * rho[c]^i[c,d]             demand (i: open-day index)\n"
                "B[c,d]        = ErlangB(S[c], lambda[c,d] tau[c] / 60)  blocking, S lines\n"
                "answered[c,d] = lambda[c,d] H[c,d] s[c] (1 - B[c,d])    H open hours, s attended\n"
                "mu[c,d]       = q[c] answered[c,d];  N[c,d] ~ Poisson(mu[c,d])\n"
                "log y[k]      = log Q[k] + u[k] + e[k]                  Q: what claim k counts\n"
                "e[k] ~ N(0, sigma^2 + (R[k]/y[k])^2 / 12)              imprecision + rounding R\n"
                "u[k] = 0 (honest, prob. pi)  or  u[k] ~ HalfNormal(sigma_u), integrated out"
                + ("\n                                                       sigma_u shared, "
                   "with a prior" if spec.structure["inflation"] == "pooled" else "") + "\n"
                "f[c] = sum_d attempts (1 - s (1 - B)) / sum_d attempts  share of attempts failing\n"
                "failed[j] ~ Binomial(n[j], psi f / (psi f + 1 - f))     psi: reporting bias"),
        ("p", "The full derivation is in the docstring of `truecount.model.equations`. Priors, each with "
              "the reason given in the spec file:"),
    ]
    # The priors this fit's model has: its sampled parameters, and the inflation integrated out
    # (the spec also holds priors for kinds of channel and switches this case does not use).
    posterior = tree["posterior"]
    used = {name: p for name, p in spec.priors.items()
            if name in posterior or not PARAMETERS[name].sampled}
    pooled = spec.structure["inflation"] == "pooled"
    rows = [[name, PARAMETERS[name].meaning,
             "HalfNormal(sigma = inflation_scale), the scale shared by the claims"
             if pooled and name == "log_inflation" else p.describe(), p.reason]
            for name, p in used.items()]
    b.append(("table", ["parameter", "meaning", "prior", "reason"], rows))
    if len(used) < len(spec.priors):
        unused = ", ".join(f"`{n}`" for n in spec.priors if n not in used)
        b.append(("p", f"The spec's other priors ({unused}) are for kinds of channel or model "
                       "switches this case does not use; the model has no such parameter."))
    mapping = ", ".join(f"'{k}' = {m.failed} failed of {m.reports} reports"
                        for k, m in spec.evidence_strength.items())
    b.append(("p", f"Qualitative evidence is read as data by the spec's mapping: {mapping}. "
                   f"Why: {spec.evidence_strength_reason}"))
    b.append(("h", 3, "Data and sources"))
    rows = [[c.id, f"{c.value:,} (rounded to {c.rounding:,})",
             c.period + ("" if c.channel is None else f", {c.scope}"), c.counts,
             c.by, f"\"{c.cited.quote}\" [{c.cited.source}]"] for c in case.claims]
    b.append(("table", ["claim", "value", "covers", "counts", "by", "quote [source]"], rows))
    rows = []
    for e in case.evidence:
        what = (f"{e.failed} failed, {e.succeeded} succeeded" if e.has_counts
                else f"strength '{e.strength}'")
        rows.append([e.id, e.channel, what, f"\"{e.cited.quote}\" [{e.cited.source}]"])
    if rows:
        b.append(("table", ["evidence", "channel", "reports", "quote [source]"], rows))
    rows = [[c.id, "; ".join(f"\"{s.quote}\" [{s.source}]" for s in c.cited)]
            for c in case.channels]
    b.append(("table", ["channel", "sources"], rows))
    b.append(("ul", [f"[{s.id}] {', '.join(s.authors) + ': ' if s.authors else ''}{s.title}. "
                     f"{s.publisher}, {s.date}." + (f" {s.url}" if s.url else "")
                     for s in case.sources.values()]))
    b.append(("h", 3, "Computation"))
    sampler = {"jax": f"blackjax {attrs.get('blackjax_version')} NUTS on JAX "
                      f"{attrs.get('jax_version')}",
               "nutpie": f"nutpie {attrs.get('nutpie_version')} NUTS",
               "pymc": "PyMC NUTS"}.get(str(attrs.get("sampler")), f"{attrs.get('sampler')} NUTS")
    b.append(("p", f"Sampler: {sampler}, {attrs.get('chains')} chains, "
                   f"{attrs.get('tune')} tuning steps and {attrs.get('draws')} kept draws each, "
                   f"target acceptance {attrs.get('target_accept')}, seed {attrs.get('seed')}. "
                   f"Software: truecount {attrs.get('truecount_version')}, PyMC "
                   f"{attrs.get('pymc_version')}, PyTensor {attrs.get('pytensor_version')}, "
                   f"ArviZ {attrs.get('arviz_version')} "
                   f"(arviz-stats {attrs.get('arviz_stats_version')}), NumPy "
                   f"{attrs.get('numpy_version')}."))
    return b


def _diagnostics(summary: Summary, verdict: GateResult, table: pd.DataFrame) -> list[Block]:
    b: list[Block] = [("h", 2, "Diagnostics")]
    if summary.stamp:
        b.append(("stamp", summary.stamp))
    b.append(("p", verdict.text))
    ebfmi = ", ".join(f"{v:.2f}" for v in verdict.ebfmi)
    b.append(("p", f"Divergent transitions: {verdict.divergences}. E-BFMI per chain: {ebfmi}. "
                   f"Every reported quantity, element by element ({len(verdict.table)} in all), "
                   f"is in {SUMMARY_CSV} with its R-hat and bulk and tail ESS; the main ones:"))
    rows = []
    for label, row in table.iterrows():
        if str(label).split("[")[0] in (*MAIN_PARAMETERS, "true_enrolments_total",
                                        "inflation_factor"):
            rows.append([str(label), format_number(row["median"]), f"{row['r_hat']:.3f}",
                         f"{row['ess_bulk']:.0f}", f"{row['ess_tail']:.0f}"])
    b.append(("table", ["quantity", "median", "R-hat", "bulk ESS", "tail ESS"], rows))
    b.append(("img", "diagnostics", "Rank plots per chain and energy plot"))
    b.append(("img", "prior_posterior", "Prior (outline) against posterior for the main "
                                        "parameters"))
    return b


def _predictive(analysis: Analysis) -> list[Block]:
    b: list[Block] = [("h", 2, "Posterior predictive check")]
    items = []
    for check in analysis.predictive:
        if check.kind == "claim":
            items.append(f"Claim {check.id} ({check.observed:,.0f}): {check.share_lower:.0%} of "
                         f"replicated claims are lower, {check.share_equal:.0%} equal (after "
                         "rounding).")
        else:
            items.append(f"Evidence {check.id} ({check.observed:.0f} failed reports): "
                         f"{check.share_lower:.0%} of replicates are lower, "
                         f"{check.share_equal:.0%} equal.")
    b.append(("ul", items))
    b.append(("p", "A claim far in either tail of its replicates would say the model cannot "
                   "produce it; replicated claims are drawn by the same generative story "
                   "(truecount.model.simulate) from each posterior draw."))
    b.append(("img", "predictive", "Replicated claims and evidence against the observed ones"))
    return b


def _sensitivity(analysis: Analysis, case: Case,
                 sensitivity: tuple[list[Any], dict[str, Any]] | None) -> list[Block]:

    b: list[Block] = [("h", 2, "Sensitivity")]
    if sensitivity is None:
        b.append(("p", "Refits under alternative readings, specs and priors are not part of this "
                       "report: run `truecount sensitivity` and rewrite it with `truecount report "
                       "RUN_DIR --sensitivity FOLDER`. The case defines the readings "
                       f"{', '.join(case.readings) or '(none)'}."))
    else:
        rows, meta = sensitivity
        claims = list(rows[0].claims)
        b.append(("p", f"The case refitted under {len(rows) - 1} alternatives (seed "
                       f"{meta.get('seed')}, {meta.get('chains')} chains x {meta.get('draws'):,} "
                       f"draws each; {rows[0].true_enrolments.mass:.0%} equal-tailed intervals). "
                       "A fit that failed the diagnostics gate is marked and left out of the "
                       "conclusions."
                       + (f" Note: this report's fit reads the case with "
                          f"{', '.join(case.applied_readings)}; the sensitivity baseline reads it "
                          "as stated." if case.applied_readings else "")))
        table = []
        for r in rows:
            cells = [r.name, r.spec, _iv(r.true_enrolments)]
            for claim in claims:
                c = r.claims[claim]
                cells += [_iv(c["inflation"]), c["p_possible_text"]]
            cells.append("passed" if r.gate_passed else "**FAILED: do not quote**")
            cells.append(r.fit)
            table.append(cells)
        header = ["alternative", "spec", "true enrolments"]
        for claim in claims:
            header += [f"inflation of {claim}", f"P({claim} possible)"]
        b.append(("table", [*header, "gate", "fit"], table))
        b.append(("ul", list(meta.get("conclusions", ()))))
        b.append(("img", "sensitivity", "True enrolments and each claim's inflation under every "
                                        "alternative"))
    b.append(("h", 3, "Power-scaling sensitivity of this fit"))
    ps = analysis.power_scaling
    if ps is None:
        b.append(("p", "Not available: this run was fitted before truecount stored the log prior "
                       "and log likelihood with each fit. Refit to add it."))
        return b
    b.append(("p", "How much each quantity's posterior moves when the prior, or the likelihood, is "
                   "raised to a power near 1 (Kallioinen et al. 2024, `arviz_stats.psense`, by "
                   "importance weighting, no refits). Values at or above "
                   f"{PSENSE_THRESHOLD} count as sensitive. A quantity the prior moves while the "
                   "data barely do rests on an assumption; quote it with the refits above."))
    b.append(("table", ["quantity", "prior", "likelihood", "reading"],
              [[str(q), f"{row.prior:.3f}", f"{row.likelihood:.3f}", row.diagnosis]
               for q, row in ps.iterrows()]))
    return b



def _barg(summary: Summary, refits: bool) -> list[Block]:
    converged = "yes" if summary.gate_passed else "FAILED (see Diagnostics)"
    rows = [
        ["Preamble: why Bayesian", "Methods (posterior probabilities of claims)", "partly"],
        ["1A Data variables", "Methods: Data and sources", "yes"],
        ["1B Likelihood and parameters", "Methods (words and formulas)", "yes"],
        ["1C Priors, justified", "Methods: priors table with reasons", "yes"],
        ["1D Formal specification", "Methods formulas; truecount.model.equations docstring",
         "yes"],
        ["1E Prior predictive check", "Headline: prior-data conflict check (parameters against "
                                      "their prior draws, claims and reports against the prior "
                                      "predictive); prior draws in posterior.nc (prior, "
                                      "prior_predictive); prior outlines in the figures",
         "partly: no dedicated section"
         + ("; **CONFLICT** (see Headline)" if summary.conflicts else "")],
        ["2A Software and versions", "Methods: Computation", "yes"],
        ["2B Chain convergence (R-hat, ESS)", "Diagnostics", converged],
        ["2C Chain resolution (ESS)", "Diagnostics; summary.csv", converged],
        ["3A Posterior predictive check", "Posterior predictive check", "yes"],
        ["3B Posterior summary, interval type and mass", "Headline; summary.csv; table.tex", "yes"],
        ["3C Posterior probabilities of hypotheses", "Decision statements", "yes"],
        ["4 Decisions and their criteria", "Decision statements (thresholds named by the "
                                           "analyst)", "partly: no loss function"],
        ["5 Sensitivity to priors and model", "Sensitivity: power-scaling"
                                              + ("; refits under alternatives" if refits else ""),
         "yes" if refits else "partly: no refits under alternatives (truecount sensitivity)"],
        ["6 Reproducibility", "Reproduce; run folder (inputs, seed, hashes)", "yes"],
    ]
    return [("h", 2, "BARG checklist (Kruschke 2021)"),
            ("table", ["item", "where in this report", "addressed"], rows)]


def _reproduce(tree: xr.DataTree, case: Case, spec: Spec) -> str:
    a = tree.attrs
    readings = "".join(f" --reading {r}" for r in case.applied_readings)
    return (f"truecount fit {case.path}{readings} --spec {spec.path} --seed {a.get('seed')} "
            f"--draws {a.get('draws')} --tune {a.get('tune')} --chains {a.get('chains')}\n"
            f"case sha256 {a.get('case_sha256')}\nspec sha256 {a.get('spec_sha256')}")


def latex_table(summary: Summary) -> str:
    """A booktabs table of the headline, ready to paste into a paper."""
    def tex(s: str) -> str:
        return re.sub(r"([_%&#$])", r"\\\1", s)

    iv = summary.true_enrolments
    kind = INTERVAL_KINDS[iv.kind]
    lines = [
        "% truecount: " + tex(f"{summary.case_id} under {summary.spec_id}, seed {summary.seed}"),
        r"\begin{tabular}{lrrrr}", r"\toprule",
        r"Quantity & Value & Median & \multicolumn{2}{c}{" + f"{iv.mass:.0%}".replace("%", r"\%")
        + r" interval} \\", r"\midrule",
        f"True enrolments by the end & & {format_number(iv.median)} & "
        f"{format_number(iv.lower)} & {format_number(iv.upper)} \\\\",
    ]
    for c in summary.claims:
        t, f = c.true_at_claim, c.inflation
        lines.append(f"Claim {tex(c.id)}: true enrolments by then & {c.value:,} & "
                     f"{format_number(t.median)} & {format_number(t.lower)} & "
                     f"{format_number(t.upper)} \\\\")
        lines.append(f"\\quad inflation factor & & {format_number(f.median)} & "
                     f"{format_number(f.lower)} & {format_number(f.upper)} \\\\")
        lines.append(f"\\quad P(physically possible) & \\multicolumn{{4}}{{r}}"
                     f"{{{tex(c.p_possible_text)}}} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"% Intervals: {tex(kind)}s. " + ("UNCONVERGED: do not quote."
                                                 if summary.stamp else "Diagnostics gate passed.")]
    lines += [f"% {CONFLICT}: {conflict}" for conflict in summary.conflicts]
    return "\n".join(lines) + "\n"


# -- rendering --------------------------------------------------------------------------------------


def render_markdown(blocks: list[Block]) -> str:
    """Blocks as Markdown; images link to figures/NAME.png."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind in ("stamp", "conflict"):
            out.append(f"> **{block[1]}**")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "pre":
            out.append("```\n" + block[1] + "\n```")
        elif kind == "img":
            out.append(f"![{block[2]}]({FIGURES_DIR}/{block[1]}.png)")
        elif kind == "table":
            header, rows = block[1], block[2]
            cells = [header, ["---"] * len(header), *rows]
            out.append("\n".join("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |"
                                 for r in cells))
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:Georgia,serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45;
color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #bbb;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f2f2f2} pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.85rem}
img{max-width:100%;display:block;margin:1rem 0} figcaption{font-size:.9rem;color:#555}
.stamp{background:#b00020;color:#fff;font-weight:bold;padding:.6rem 1rem;margin:1rem 0}
.conflict{background:#9a4a00}
.stamp-fixed{position:fixed;top:0;left:0;right:0;text-align:center;z-index:10;margin:0}
@media print{.stamp-fixed{position:fixed}}
"""


def render_html(blocks: list[Block], images: dict[str, bytes], title: str) -> str:
    """Blocks as one self-contained HTML page, figures embedded as data URIs."""
    body: list[str] = []
    stamped = any(block[0] == "stamp" for block in blocks)
    if stamped:
        text = next(block[1] for block in blocks if block[0] == "stamp")
        body.append(f'<div class="stamp stamp-fixed">{html.escape(text)}</div>')
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "stamp":
            body.append(f'<div class="stamp">{html.escape(block[1])}</div>')
        elif kind == "conflict":
            body.append(f'<div class="stamp conflict">{html.escape(block[1])}</div>')
        elif kind == "ul":
            items = "".join(f"<li>{_inline(i)}</li>" for i in block[1])
            body.append(f"<ul>{items}</ul>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "img":
            data = base64.b64encode(images[block[1]]).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block[2])}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{html.escape(block[2])}</figcaption></figure>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>"
                           for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    top = ' style="padding-top:3rem"' if stamped else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body{top}>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)

