"""Forward simulation of a campaign from known parameter values.

:func:`simulate` runs the model's generative story forwards in NumPy: demand, Erlang-B blocking,
answered calls, true enrolments (Poisson), published claims (what they count, honest or inflated,
imprecise, rounded) and reports of failed attempts (biased towards failure). It returns the case with
its claims and evidence replaced by simulated ones, and the truth, so that a fit can be checked
against it: parameter recovery, prior predictive checks, calibration.

The expected flows, the funnel at each claim and the failed share are the model's own equations
(:mod:`truecount.model.equations`) in NumPy; this module adds only what the model treats as random:
parameter draws (:func:`draw_parameters`), Poisson counts (:func:`realize_counts`), published claims
(:func:`claims_from_funnel`) and reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from truecount.inputs.case import Case
from truecount.inputs.spec import Spec
from truecount.model import equations
from truecount.model.data import arrays, model_inputs, model_structure
from truecount.quantities import CHANNEL_PARAMETERS, FUNNEL, PARAMETERS


@dataclass(frozen=True)
class InflationWorld:
    """How a simulator inflates claims when inflation is *not* drawn from the spec.

    A share ``honest_share`` of claims is honest; the others are inflated by a factor spread
    evenly on the log scale between 1 and ``max_factor`` (log-uniform). This is a world the
    model's prior does not describe (a half-normal on the log factor, an honest share drawn from
    its own prior), for checking that intervals hold when the prior is wrong
    (``truecount calibrate --inflation log-uniform:60:0.15``).
    """

    max_factor: float = 60.0
    honest_share: float = 0.15

    #: How the command line and a calibration job write it.
    PREFIX = "log-uniform"

    @classmethod
    def parse(cls, text: str) -> InflationWorld | None:
        """``"prior"`` gives ``None``; ``"log-uniform:MAX[:HONEST]"`` a world; else ValueError."""
        if text == "prior":
            return None
        kind, *numbers = text.split(":")
        try:
            values = [float(x) for x in numbers]
        except ValueError:
            values = []
        if kind != cls.PREFIX or not 1 <= len(values) <= 2:
            raise ValueError("'prior' or 'log-uniform:MAX[:HONEST]' (e.g. log-uniform:60:0.15)")
        world = cls(*values)
        if not (world.max_factor > 1.0 and 0.0 <= world.honest_share < 1.0):
            raise ValueError("a largest factor above 1 and an honest share in [0, 1)")
        return world

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
        """Whether each claim is honest, and its log inflation (0 where honest)."""
        honest = rng.random(shape) < self.honest_share
        log_factor = rng.uniform(0.0, np.log(self.max_factor), shape)
        return honest, np.where(honest, 0.0, log_factor)


@dataclass(frozen=True)
class Simulated:
    """A simulated campaign: the case as a fit would see it, and the truth behind it."""

    case: Case
    truth: dict[str, Any]


def simulate(case: Case, spec: Spec, rng: np.random.Generator,
             params: dict[str, Any] | None = None, *,
             inflation: InflationWorld | None = None) -> Simulated:
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
    inflation
        Inflate the claims as this world does instead of as the spec's prior says.
    """
    ds = case.to_dataset()
    inputs = arrays(model_inputs(ds, spec))
    structure = model_structure(ds, spec)
    if params is None:
        params = draw_parameters(spec, ds.sizes["channel"], rng, kinds=structure["kinds"])
    sigma_u = spec.priors["log_inflation"].params["sigma"]
    det = equations.numpy_deterministics(inputs, structure, params, sigma_u)
    counts, at_claim = realize_counts(det["expected_enrolments"], inputs["claim_exposure"], rng)
    # Rounded to two figures (a simulated campaign has no stated rounding).
    values, honest, counted = published_claims(det, inputs, structure, params, sigma_u, rng, None,
                                               inflation)
    units = significant_rounding(values)
    evidence = []
    if structure["has_evidence"]:
        p_report = equations.evidence_probability(equations.NUMPY, det["failed_share"], params,
                                                  inputs)
    for j, item in enumerate(case.evidence):
        n = int(inputs["evidence_reports"][j])
        failed = int(rng.binomial(n, p_report[j]))
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
        failed_share=det["failed_share"], honest=honest, counted=[FUNNEL[i] for i in counted],
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


def draw_parameters(spec: Spec, n_channels: int, rng: np.random.Generator,
                    size: tuple[int, ...] = (), *, kinds: Sequence[str]) -> dict[str, np.ndarray]:
    """Draws of every sampled parameter from the spec's priors, with leading shape ``size``.

    Per-channel parameters get a trailing ``channel`` axis; the log inflation, integrated out of
    the model, is not drawn, nor a per-channel parameter of kinds of channel the case does not
    have (``kinds``: its channels' kinds, as in ``model_structure(...)["kinds"]``), nor one tied
    to a structure switch the spec does not choose (``inflation_scale`` unless pooled).
    """
    params: dict[str, np.ndarray] = {}
    for name, prior in spec.priors.items():
        quantity = PARAMETERS[name]
        if not quantity.sampled:  # integrated out of the model
            continue
        if not any(k in kinds for k in quantity.kinds):
            continue
        if not quantity.switched_on(spec.structure):
            continue  # tied to a structure switch the spec does not choose
        shape = (*size, n_channels) if name in CHANNEL_PARAMETERS else size
        params[name] = np.asarray(prior.scipy().rvs(size=shape, random_state=rng), dtype=float)
    return params


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
                       rounding: np.ndarray | None, params: dict[str, Any], sigma_u: Any,
                       honest_claims: bool, rng: np.random.Generator,
                       world: InflationWorld | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Published values of claims, given the funnel quantities ``(..., claim, quantity)`` at their dates.

    Draws what each claim counts (the stated quantity, or call attempts with probability
    ``counts_attempts_probability`` where unclear), whether it is honest (probability
    ``honest_probability``), its inflation (half-normal on the log scale, scale ``sigma_u``: a
    number, or per draw with a trailing axis of 1, as :func:`equations.inflation_scale` gives it) and
    imprecision, and rounds it to the claim's precision (at least one unit of it). With
    ``rounding=None`` each value keeps two significant figures instead, as published figures do
    (23,000; 4,900; 370): the simulators use that, since a fixed unit of 1,000 would turn a
    campaign of 300 enrolments into a claim of 1,000 that the model's rounding term (Sheppard's
    variance, for units small against the value) does not describe. Call
    :func:`significant_rounding` on the values for the units. A ``world`` replaces the honesty
    and inflation draws (:class:`InflationWorld`).
    """
    shape = funnel.shape[:-1]
    primary = np.broadcast_to(np.argmax(quantity, axis=-1), shape)
    kappa = np.asarray(params.get("counts_attempts_probability", 0.0), float)[..., None]
    use_attempts = np.broadcast_to(unclear, shape) & (rng.random(shape) < kappa)
    counted = np.where(use_attempts, FUNNEL.index("attempts"), primary)
    base = np.take_along_axis(funnel, counted[..., None], axis=-1)[..., 0]
    if world is not None:
        honest, inflation = world.draw(shape, rng)
    else:
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


def published_claims(det: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                     structure: dict[str, Any], params: dict[str, Any], sigma_u: float,
                     rng: np.random.Generator, rounding: np.ndarray | None,
                     world: InflationWorld | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Published claims as the model assumes them, from its Deterministics ``det``.

    Each claim reports the *expected* funnel quantity at its date (``funnel_at_claim``: the model
    conditions the claims on it, and the Poisson count is drawn around it), through
    :func:`claims_from_funnel`. The simulator (``rounding=None``: two significant figures) and the
    fitter's prior and posterior predictive draws (the case's rounding) both call this.
    """
    return claims_from_funnel(det["funnel_at_claim"], inputs["claim_quantity"],
                              np.asarray(structure["unclear"], dtype=bool), rounding, params,
                              equations.inflation_scale(equations.NUMPY, params, structure,
                                                        sigma_u),
                              bool(structure["honest_claims"]), rng, world)
