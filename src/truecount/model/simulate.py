"""Forward simulation of a campaign from known parameter values.

:func:`simulate` runs the model's generative story forwards in NumPy: demand, Erlang-B blocking,
answered calls, true enrolments (Poisson), published claims (what they count, honest or inflated,
imprecise, rounded) and reports of failed attempts (biased towards failure). It returns the case with
its claims and evidence replaced by simulated ones, and the truth, so that a fit can be checked
against it: parameter recovery, prior predictive checks, calibration.

The channel arithmetic is :mod:`truecount.model.capacity`'s, the same definitions the model uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from truecount.inputs.case import Case
from truecount.model.forward import (
    CHANNEL_PARAMETERS,
    QUANTITIES,
    claims_from_funnel,
    deterministics,
    draw_parameters,
    model_inputs,
    model_structure,
    realize_counts,
    reported_failure,
    significant_rounding,
)
from truecount.inputs.spec import Spec


@dataclass(frozen=True)
class Simulated:
    """A simulated campaign: the case as a fit would see it, and the truth behind it."""

    case: Case
    truth: dict[str, Any]


def simulate(case: Case, spec: Spec, rng: np.random.Generator,
             params: dict[str, Any] | None = None) -> Simulated:
    """Simulate the claims and evidence of ``case``'s channels under ``params`` (default: a prior draw).

    Parameters
    ----------
    case
        Supplies the channels, the claims' dates, rounding and what they count, and the evidence
        items (which become counts of failed and succeeded reports).
    spec
        Supplies the structure, the priors (for a parameter draw) and the inflation scale.
    rng
        Source of randomness; the same seed gives the same campaign.
    params
        Values of the sampled parameters (see :data:`truecount.inputs.spec.PARAMETERS`); per-channel
        parameters are arrays over the case's channels.
    """
    ds = case.to_dataset()
    inputs = model_inputs(ds, spec)
    structure = model_structure(ds, spec)
    if params is None:
        params = draw_parameters(spec, ds.sizes["channel"], rng)
    sigma_u = spec.priors["log_inflation"].params["sigma"]
    det = deterministics(inputs, structure, params, sigma_u)
    counts, at_claim = realize_counts(det["expected_enrolments"], inputs["claim_exposure"], rng)
    # As the model assumes, a claim reports the expected funnel quantity at its date (the model
    # conditions on it; the Poisson count is drawn around it), rounded to two figures.
    values, honest, counted = claims_from_funnel(
        det["funnel_at_claim"], inputs["claim_quantity"], np.asarray(structure["unclear"]),
        None, params, sigma_u, structure["honest_claims"], rng)
    units = significant_rounding(values)
    p_report = reported_failure(det["failed_share"], params)
    evidence = []
    for j, item in enumerate(case.evidence):
        n = int(inputs["evidence_reports"][j])
        channel = int(np.argmax(inputs["evidence_channel"][j]))
        failed = int(rng.binomial(n, p_report[channel]))
        evidence.append(dataclasses.replace(item, failed=failed, succeeded=n - failed,
                                            strength=None))
    claims = tuple(dataclasses.replace(c, value=int(v), rounding=int(u))
                   for c, v, u in zip(case.claims, values, units, strict=True))
    digest = hashlib.sha256(repr((case.sha256, values.tolist(), [e.failed for e in evidence]))
                            .encode()).hexdigest()
    simulated = dataclasses.replace(case, claims=claims, evidence=tuple(evidence), sha256=digest,
                                    simulated=True)
    truth = dict(params)
    truth.update(
        true_enrolments=counts, true_enrolments_total=int(counts.sum()), true_at_claim=at_claim,
        expected_enrolments=det["expected_enrolments"], blocking=det["blocking"],
        failed_share=det["failed_share"], honest=honest, counted=[QUANTITIES[i] for i in counted],
    )
    return Simulated(simulated, truth)


def truth_dataset(sim: Simulated) -> xr.Dataset:
    """The truth of a simulated campaign as a dataset with the case's dimensions."""
    ds = sim.case.to_dataset()
    t = sim.truth
    data = {
        "true_enrolments": (("channel", "day"), t["true_enrolments"]),
        "true_enrolments_total": ((), t["true_enrolments_total"]),
        "true_at_claim": (("claim",), t["true_at_claim"]),
        "blocking": (("channel", "day"), t["blocking"]),
        "failed_share": (("channel",), t["failed_share"]),
    }
    for name in CHANNEL_PARAMETERS:
        if name in t:
            data[name] = (("channel",), np.asarray(t[name]))
    return xr.Dataset(data, coords={k: ds[k].values for k in ("channel", "day", "claim")})
