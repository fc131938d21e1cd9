"""Forward simulation of a campaign from known parameter values.

:func:`simulate` runs the model's generative story forwards in NumPy: demand, Erlang-B blocking,
answered calls, true enrolments (Poisson), published claims (what they count, honest or inflated,
imprecise, rounded) and reports of failed attempts (biased towards failure). It returns the case with
its claims and evidence replaced by simulated ones, and the truth, so that a fit can be checked
against it: parameter recovery, prior predictive checks, calibration.

The channel arithmetic is :mod:`truecount.capacity`'s, the same definitions the model uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from truecount import capacity
from truecount.case import Case
from truecount.model import QUANTITIES, model_inputs, model_structure
from truecount.spec import Spec

#: Parameters that take one value per channel; the others are shared by the whole case.
CHANNEL_PARAMETERS = ("handle_time", "attended_share", "peak_attempts_per_hour", "daily_retention",
                      "enrol_share")
#: Parameters integrated out of the model, whose spec value is a fixed scale.
FIXED_SCALES = ("log_inflation",)


@dataclass(frozen=True)
class Simulated:
    """A simulated campaign: the case as a fit would see it, and the truth behind it."""

    case: Case
    truth: dict[str, Any]


def draw_parameters(spec: Spec, n_channels: int, rng: np.random.Generator) -> dict[str, Any]:
    """One draw of every sampled parameter from the spec's priors (per channel where it applies)."""
    params: dict[str, Any] = {}
    for name, prior in spec.priors.items():
        if name in FIXED_SCALES:
            continue
        size = n_channels if name in CHANNEL_PARAMETERS else None
        params[name] = np.asarray(prior.scipy().rvs(size=size, random_state=rng), dtype=float)
    return params


def channel_flows(inputs: dict[str, np.ndarray], servers: tuple[int, ...], params: dict[str, Any],
                  demand: str) -> dict[str, np.ndarray]:
    """Expected attempts, answered calls, enrolments and blocking per (channel, day)."""
    tau = np.asarray(params["handle_time"], float)[:, None]
    share = np.asarray(params["attended_share"], float)[:, None]
    peak = np.asarray(params["peak_attempts_per_hour"], float)[:, None]
    enrol = np.asarray(params["enrol_share"], float)[:, None]
    retention = (np.asarray(params["daily_retention"], float)[:, None] if demand == "decaying"
                 else np.ones_like(peak))
    rate = peak * retention ** inputs["open_day_index"]
    load = rate * tau / 60.0
    blocking = np.stack([capacity.erlang_b(n, load[i]) for i, n in enumerate(servers)])
    attempts = rate * inputs["open_hours"]
    answered = attempts * share * (1.0 - blocking)
    return {"attempts": attempts, "answered": answered, "expected": answered * enrol,
            "blocking": blocking}


def realize_counts(expected: np.ndarray, exposure: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """True enrolments ``(..., channel, day)`` ~ Poisson(expected), and those before each claim.

    ``exposure`` is ``(claim, channel, day)``; a day partly before a claim contributes a binomial
    thinning of its count by the share of its open hours before the claim.
    """
    counts = rng.poisson(expected)
    thinned = rng.binomial(counts[..., None, :, :], np.broadcast_to(
        exposure, counts.shape[:-2] + exposure.shape))
    return counts, thinned.sum(axis=(-1, -2))


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
        Values of the sampled parameters (see :data:`truecount.spec.PARAMETERS`); per-channel
        parameters are arrays over the case's channels.
    """
    ds = case.to_dataset()
    inputs = model_inputs(ds, spec)
    structure = model_structure(ds, spec)
    if params is None:
        params = draw_parameters(spec, ds.sizes["channel"], rng)
    flows = channel_flows(inputs, structure["servers"], params, structure["demand"])
    counts, at_claim = realize_counts(flows["expected"], inputs["claim_exposure"], rng)
    funnel = np.stack([
        at_claim,
        (inputs["claim_exposure"] * flows["answered"][None]).sum(axis=(1, 2)),
        (inputs["claim_exposure"] * flows["attempts"][None]).sum(axis=(1, 2)),
    ], axis=-1)
    values, honest, counted = claims_from_funnel(
        funnel, inputs["claim_quantity"], np.asarray(structure["unclear"]),
        ds.claim_rounding.values, params, spec, structure["honest_claims"], rng)
    p_report = _reported_failure(flows, params)
    evidence = []
    for j, item in enumerate(case.evidence):
        n = int(inputs["evidence_reports"][j])
        channel = int(np.argmax(inputs["evidence_channel"][j]))
        failed = int(rng.binomial(n, p_report[channel]))
        evidence.append(dataclasses.replace(item, failed=failed, succeeded=n - failed,
                                            strength=None))
    claims = tuple(dataclasses.replace(c, value=int(v)) for c, v in zip(case.claims, values,
                                                                            strict=True))
    digest = hashlib.sha256(repr((case.sha256, values.tolist(), [e.failed for e in evidence]))
                            .encode()).hexdigest()
    simulated = dataclasses.replace(case, claims=claims, evidence=tuple(evidence), sha256=digest)
    truth = dict(params)
    truth.update(
        true_enrolments=counts, true_enrolments_total=int(counts.sum()), true_at_claim=at_claim,
        expected_enrolments=flows["expected"], blocking=flows["blocking"],
        failed_share=_failed_share(flows, params), honest=honest,
        counted=[QUANTITIES[i] for i in counted],
    )
    return Simulated(simulated, truth)


def claims_from_funnel(funnel: np.ndarray, quantity: np.ndarray, unclear: np.ndarray,
                       rounding: np.ndarray, params: dict[str, Any], spec: Spec,
                       honest_claims: bool, rng: np.random.Generator,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Published values of claims, given the funnel quantities ``(..., claim, quantity)`` at their dates.

    Draws what each claim counts (the stated quantity, or call attempts with probability
    ``counts_attempts_probability`` where unclear), whether it is honest (probability
    ``honest_probability``), its inflation (half-normal on the log scale) and imprecision, and rounds
    it to the claim's precision (at least one unit of it). Broadcasts over leading dimensions, so it
    also draws posterior predictive claims from arrays of draws.
    """
    shape = funnel.shape[:-1]
    primary = np.broadcast_to(np.argmax(quantity, axis=-1), shape)
    kappa = np.asarray(params.get("counts_attempts_probability", 0.0), float)[..., None]
    use_attempts = np.broadcast_to(unclear, shape) & (rng.random(shape) < kappa)
    counted = np.where(use_attempts, QUANTITIES.index("attempts"), primary)
    base = np.take_along_axis(funnel, counted[..., None], axis=-1)[..., 0]
    if honest_claims:
        honest = rng.random(shape) < np.asarray(params["honest_probability"], float)[..., None]
    else:
        honest = np.zeros(shape, dtype=bool)
    sigma_u = spec.priors["log_inflation"].params["sigma"]
    inflation = np.where(honest, 0.0, np.abs(rng.normal(0.0, sigma_u, shape)))
    noise = rng.normal(0.0, 1.0, shape) * np.asarray(params["claim_noise"], float)[..., None]
    raw = np.maximum(base, 0.5) * np.exp(inflation + noise)
    values = np.maximum(np.round(raw / rounding) * rounding, rounding)
    return values, honest, counted


def _failed_share(flows: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    share = np.asarray(params["attended_share"], float)[:, None]
    failed = (flows["attempts"] * (1.0 - share * (1.0 - flows["blocking"]))).sum(axis=1)
    return np.asarray(failed / np.maximum(flows["attempts"].sum(axis=1), 1e-12))


def _reported_failure(flows: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
    f = _failed_share(flows, params)
    bias = float(params.get("report_bias_odds", 1.0))
    return np.asarray(bias * f / (bias * f + 1.0 - f))


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
