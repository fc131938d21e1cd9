"""The model's story run forwards in NumPy, vectorised over draws.

Given parameter values (a prior draw, a posterior draw, or arrays of many draws with leading sample
dimensions) this module computes what :mod:`truecount.model.build` defines as Deterministics (blocking,
attempts, expected enrolments, capacity, what each claim could count, the claims' honest/attempts
responsibilities, the failed share) and draws what the model treats as random (true counts, claims,
evidence reports). The mathematics is the model module's; tests check the two agree element by
element. Inference uses it so that neither the derived quantities nor the predictive draws need a
compiled PyTensor function of their own.

Shapes: per-channel parameters are ``(..., channel)``, shared ones ``(...)``; results add the case's
``channel``, ``day`` and ``claim`` axes after the leading ``...``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy.special import log_ndtr, logsumexp

from truecount.model import capacity
from truecount.inputs.spec import Spec

#: Order of the funnel quantities a claim can report (index into the one-hot ``claim_quantity``).
QUANTITIES = ("registrations", "answered", "attempts")
#: Where each "counts" / "presented_as" value sits on the funnel.
_QUANTITY_OF = {"registrations": 0, "turned_up": 0, "answered": 1, "attempts": 2}
#: Parameters that take one value per channel; the others are shared by the whole case.
CHANNEL_PARAMETERS = ("handle_time", "attended_share", "peak_attempts_per_hour", "daily_retention",
                      "enrol_share")
#: Parameters integrated out of the model, whose spec value is a fixed scale.
FIXED_SCALES = ("log_inflation",)


def model_inputs(ds: xr.Dataset, spec: Spec) -> dict[str, np.ndarray]:
    """The numeric arrays the model reads from a case dataset, as data containers.

    Everything a refit of the same model structure may change (claim values, evidence counts, hours)
    is here; what fixes the structure (the number of lines, which claims are unclear) is read by
    :func:`model_structure`.
    """
    open_hours = ds.open_hours.values.astype(float)
    is_open = open_hours > 0
    open_index = np.where(is_open, np.cumsum(is_open, axis=1) - 1, 0).astype(float)
    values = ds.claim_value.values.astype(float)
    quantity = np.zeros((ds.sizes["claim"], len(QUANTITIES)))
    for k, (counts, presented) in enumerate(zip(ds.claim_counts.values, ds.claim_presented_as.values,
                                                strict=True)):
        quantity[k, _QUANTITY_OF[presented if counts == "unclear" else counts]] = 1.0
    failed, reports = [], []
    for j in range(ds.sizes["evidence"]):
        strength = str(ds.evidence_strength.values[j])
        if strength:
            mapping = spec.evidence_strength[strength]
            failed.append(mapping.failed)
            reports.append(mapping.reports)
        else:
            failed.append(int(ds.evidence_failed.values[j]))
            reports.append(int(ds.evidence_failed.values[j] + ds.evidence_succeeded.values[j]))
    channel_of = np.zeros((ds.sizes["evidence"], ds.sizes["channel"]))
    for j, ch in enumerate(ds.evidence_channel.values):
        channel_of[j, list(ds.channel.values).index(ch)] = 1.0
    return {
        "servers": ds.servers.values.astype(np.int64),
        "open_hours": open_hours,
        "open_day_index": open_index,
        "claim_exposure": ds.claim_exposure.values.astype(float),
        "claim_value": values,
        "claim_rounding": ds.claim_rounding.values.astype(float),
        "claim_quantity": quantity,
        "evidence_failed": np.asarray(failed, dtype=np.int64),
        "evidence_reports": np.asarray(reports, dtype=np.int64),
        "evidence_channel": channel_of,
    }


def model_structure(ds: xr.Dataset, spec: Spec) -> dict[str, Any]:
    """What fixes the model's graph: unclear claims, evidence, the spec's switches.

    Not the line counts: the model reads them as data (:func:`truecount.model.build.log_erlang_b`).
    """
    mixture = spec.structure["unclear_claims"] == "mixture"
    return {
        "unclear": tuple(bool(mixture and c == "unclear") for c in ds.claim_counts.values),
        "demand": spec.structure["demand"],
        "honest_claims": bool(spec.structure["honest_claims"]),
        "has_evidence": ds.sizes["evidence"] > 0,
    }


def draw_parameters(spec: Spec, n_channels: int, rng: np.random.Generator,
                    size: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """Draws of every sampled parameter from the spec's priors, with leading shape ``size``.

    Per-channel parameters get a trailing ``channel`` axis; the inflation scale, integrated out of
    the model, is not drawn.
    """
    params: dict[str, np.ndarray] = {}
    for name, prior in spec.priors.items():
        if name in FIXED_SCALES:
            continue
        shape = (*size, n_channels) if name in CHANNEL_PARAMETERS else size
        params[name] = np.asarray(prior.scipy().rvs(size=shape, random_state=rng), dtype=float)
    return params




def channel_flows(inputs: dict[str, np.ndarray], params: dict[str, Any],
                  demand: str) -> dict[str, np.ndarray]:
    """Attempts, answered calls, expected enrolments and blocking, ``(..., channel, day)``."""
    tau = np.asarray(params["handle_time"], float)[..., None]
    share = np.asarray(params["attended_share"], float)[..., None]
    peak = np.asarray(params["peak_attempts_per_hour"], float)[..., None]
    enrol = np.asarray(params["enrol_share"], float)[..., None]
    log_rate = np.log(peak) * np.ones_like(inputs["open_hours"])
    if demand == "decaying":
        retention = np.asarray(params["daily_retention"], float)[..., None]
        log_rate = log_rate + inputs["open_day_index"] * np.log(retention)
    rate = np.exp(log_rate)
    log_load = log_rate + np.log(tau) - np.log(60.0)
    blocking = np.exp(capacity.log_blocking(inputs["servers"][:, None], log_load))
    attempts = rate * inputs["open_hours"]
    answered = attempts * share * (1.0 - blocking)
    return {"attempts": attempts, "answered": answered, "expected": answered * enrol,
            "blocking": blocking}


def deterministics(inputs: dict[str, np.ndarray], structure: dict[str, Any],
                   params: dict[str, Any], sigma_u: float) -> dict[str, np.ndarray]:
    """Every Deterministic of :func:`truecount.model.build.build_model`, from parameter values."""
    flows = channel_flows(inputs, params, structure["demand"])
    hours = inputs["open_hours"]
    exposure = inputs["claim_exposure"]
    servers = np.asarray(inputs["servers"], dtype=float)
    tau = np.asarray(params["handle_time"], float)
    share = np.asarray(params["attended_share"], float)
    per_hour = servers * share * 60.0 / tau  # (..., channel)
    capacity_ = per_hour * hours.sum(axis=-1)
    capacity_at_claim = np.einsum("kcd,...cd->...k", exposure, per_hour[..., None] * hours)
    open_days = np.maximum((hours > 0).sum(axis=-1), 1)
    per_day = (per_hour * hours.sum(axis=-1) / open_days).sum(axis=-1)
    y = inputs["claim_value"]
    funnel = np.stack([np.einsum("kcd,...cd->...k", exposure, flows[q])
                       for q in ("expected", "answered", "attempts")], axis=-1)
    funnel = np.maximum(funnel, 0.5)
    terms = claim_terms(funnel, inputs, structure, params, sigma_u)
    total = logsumexp(terms, axis=0)
    attempts_all = flows["attempts"].sum(axis=-1)
    failed = (flows["attempts"] * (1.0 - share[..., None] * (1.0 - flows["blocking"]))).sum(-1)
    return {
        "blocking": flows["blocking"],
        "attempts": flows["attempts"],
        "expected_enrolments": flows["expected"],
        "unanswered_attempts": flows["attempts"] - flows["answered"],
        "capacity": capacity_,
        "capacity_at_claim": capacity_at_claim,
        "days_needed": y / per_day[..., None],
        "funnel_at_claim": funnel,
        "claim_loglik": total,
        "p_honest": np.exp(logsumexp(terms[[0, 2]], axis=0) - total),
        "p_counts_attempts": np.exp(logsumexp(terms[[2, 3]], axis=0) - total),
        "failed_share": failed / np.maximum(attempts_all, 1e-12),
    }


def claim_terms(funnel: np.ndarray, inputs: dict[str, np.ndarray], structure: dict[str, Any],
                params: dict[str, Any], sigma_u: float) -> np.ndarray:
    """Log weights of (honest, inflated) x (stated quantity, call attempts), ``(4, ..., claim)``."""
    y = inputs["claim_value"]
    log_y = np.log(y)
    r_primary = log_y - (np.log(funnel) * inputs["claim_quantity"]).sum(axis=-1)
    r_attempts = log_y - np.log(funnel[..., 2])
    noise = np.asarray(params["claim_noise"], float)[..., None]
    sd = np.sqrt(noise**2 + (inputs["claim_rounding"] / y) ** 2 / 12.0)
    omega = np.sqrt(sigma_u**2 + sd**2)
    honest_p = (np.asarray(params["honest_probability"], float)[..., None]
                if structure["honest_claims"] else None)

    def pair(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inflated = (np.log(2.0) + _normal_logpdf(r, omega) + log_ndtr((sigma_u / sd) * r / omega))
        if honest_p is None:
            return np.full_like(r, -np.inf), inflated
        return np.log(honest_p) + _normal_logpdf(r, sd), np.log1p(-honest_p) + inflated

    unclear = np.asarray(structure["unclear"], dtype=bool)
    with np.errstate(divide="ignore"):
        if unclear.any():
            kappa = np.asarray(params["counts_attempts_probability"], float)[..., None]
            log_w_attempts = np.where(unclear, np.log(kappa), -np.inf)
            log_w_primary = np.where(unclear, np.log1p(-kappa), 0.0)
        else:
            log_w_attempts = np.full_like(r_primary, -np.inf)
            log_w_primary = np.zeros_like(r_primary)
        hp, ip = pair(r_primary)
        ha, ia = pair(r_attempts)
    return np.stack([hp + log_w_primary, ip + log_w_primary, ha + log_w_attempts,
                     ia + log_w_attempts])


def _normal_logpdf(x: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.asarray(-0.5 * (x / sd) ** 2 - np.log(sd) - 0.5 * np.log(2.0 * np.pi))


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


def significant_rounding(raw: np.ndarray, digits: int = 2) -> np.ndarray:
    """The rounding unit that leaves ``digits`` significant figures (23,456 -> 1,000 for 2)."""
    raw = np.maximum(np.asarray(raw, dtype=float), 1.0)
    return np.asarray(10.0 ** np.maximum(np.floor(np.log10(raw)) - (digits - 1), 0.0))


def claims_from_funnel(funnel: np.ndarray, quantity: np.ndarray, unclear: np.ndarray,
                       rounding: np.ndarray | None, params: dict[str, Any], sigma_u: float,
                       honest_claims: bool, rng: np.random.Generator,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Published values of claims, given the funnel quantities ``(..., claim, quantity)`` at their dates.

    Draws what each claim counts (the stated quantity, or call attempts with probability
    ``counts_attempts_probability`` where unclear), whether it is honest (probability
    ``honest_probability``), its inflation (half-normal on the log scale, scale ``sigma_u``) and
    imprecision, and rounds it to the claim's precision (at least one unit of it). With
    ``rounding=None`` each value keeps two significant figures instead, as published figures do
    (23,000; 4,900; 370): the simulators use that, since a fixed unit of 1,000 would turn a
    campaign of 300 enrolments into a claim of 1,000 that the model's rounding term (Sheppard's
    variance, for units small against the value) does not describe. Call
    :func:`significant_rounding` on the values for the units.
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
    inflation = np.where(honest, 0.0, np.abs(rng.normal(0.0, sigma_u, shape)))
    noise = rng.normal(0.0, 1.0, shape) * np.asarray(params["claim_noise"], float)[..., None]
    raw = np.maximum(base, 0.5) * np.exp(inflation + noise)
    unit = significant_rounding(raw) if rounding is None else rounding
    values = np.maximum(np.round(raw / unit) * unit, unit)
    return values, honest, counted


def reported_failure(failed_share: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Probability that a report describes a failure: ``psi f / (psi f + 1 - f)``."""
    bias = np.asarray(params.get("report_bias_odds", 1.0), float)[..., None]
    return np.asarray(bias * failed_share / (bias * failed_share + 1.0 - failed_share))


def evidence_failure(failed_share: np.ndarray, params: dict[str, Any],
                     evidence_channel: np.ndarray) -> np.ndarray:
    """Per evidence item, the probability that one of its reports describes a failure.

    ``(..., evidence)``: :func:`reported_failure` of the channel the item is about (the model's
    ``dot(evidence_channel, reported)``), unclipped.
    """
    return np.asarray(np.einsum("ec,...c->...e", evidence_channel,
                                reported_failure(failed_share, params)))
