r"""The probabilistic model: from a case and a spec to a :class:`pymc.Model`.

All of truecount's mathematics is in this file (the capacity formulas it rests on are in
:mod:`truecount.model.capacity`, the meaning of every prior in the spec files).

Channel (per channel :math:`c` and calendar day :math:`d`)
    Offered call attempts per hour decay from the first open day (``structure.demand``):
    :math:`\lambda_{cd} = \lambda_c\, \rho_c^{\,i_{cd}}`, with :math:`i_{cd}` the open-day index and
    :math:`\rho_c` the daily retention (1 for constant demand); the rate and the load are computed
    on the log scale, so a long campaign's fading demand never underflows to a zero whose
    logarithm would poison the gradient. With mean handle time
    :math:`\tau_c` (minutes) the offered load is :math:`A_{cd} = \lambda_{cd}\tau_c/60` and the
    Erlang-B blocking probability :math:`B_{cd} = B(S_c, A_{cd})` for :math:`S_c` lines (a caller
    who finds every line busy gets no answer). A line is attended a share :math:`s_c` of its open
    hours :math:`H_{cd}`, so

    .. math::

        \text{attempts}_{cd} = \lambda_{cd} H_{cd}, \quad
        \text{answered}_{cd} = \lambda_{cd} H_{cd}\, s_c (1 - B_{cd}), \quad
        \mu_{cd} = q_c\, \text{answered}_{cd},

    with :math:`q_c` the share of answered calls that become enrolments and :math:`\mu_{cd}` the
    expected enrolments. True enrolments are counts, :math:`N_{cd} \sim \text{Poisson}(\mu_{cd})`.
    Since :math:`\lambda (1 - B) \le S \cdot 60/\tau`, expected enrolments never exceed the channel's
    capacity :math:`S\, H\, s\, q \cdot 60/\tau`.

Claims (per claim :math:`k` with published value :math:`y_k`)
    A claim reports a quantity :math:`Q_k` on the funnel at its date, summed over the days before
    it with weights :math:`e_{kcd}` (the share of the day's open hours before the claim):
    registrations :math:`\sum e\,\mu`, answered calls :math:`\sum e\,\text{answered}` or call
    attempts :math:`\sum e\,\text{attempts}`. On the log scale
    :math:`r_k = \log y_k - \log Q_k = u_k + \varepsilon_k`, with inflation :math:`u_k \ge 0` and
    imprecision :math:`\varepsilon_k \sim N(0, \sigma_k^2)`,
    :math:`\sigma_k^2 = \sigma^2 + (R_k / y_k)^2 / 12` (the spec's ``claim_noise`` plus the
    variance of rounding to :math:`R_k`, Sheppard's correction on the log scale).

    *Honest* claims have :math:`u_k = 0`; *inflated* ones :math:`u_k \sim \text{HalfNormal}(\sigma_u)`.
    The inflation is integrated out analytically: the sum of a half-normal and a normal is
    skew-normal,

    .. math::

        p(r \mid \text{inflated}) = \frac{2}{\omega}\,\phi\!\left(\frac{r}{\omega}\right)
        \Phi\!\left(\frac{\sigma_u}{\sigma_k}\frac{r}{\omega}\right),
        \qquad \omega^2 = \sigma_u^2 + \sigma_k^2,

    which removes the ridge "true count x inflation" that a latent :math:`u_k` creates (a naive
    parametrization gave 80+ divergences on the KSS case). The claim's likelihood mixes honest
    (prior probability :math:`\pi`) and inflated. A claim whose ``counts`` is "unclear" further mixes
    :math:`Q_k` = the quantity it was presented as against call attempts (prior probability of
    attempts :math:`\kappa`). The posterior probabilities of "honest" and "counts attempts" are the
    mixture responsibilities, averaged over draws.

Evidence of unreachable lines (per evidence item :math:`j` about channel :math:`c`)
    The share of attempts that fail is
    :math:`f_c = \sum_d \text{attempts}_{cd}(1 - s_c(1 - B_{cd})) / \sum_d \text{attempts}_{cd}`.
    Callers who failed are more likely to post (odds ratio :math:`\psi`), so a report describes a
    failure with probability :math:`p_c = \psi f_c / (\psi f_c + 1 - f_c)`, and
    :math:`\text{failed}_j \sim \text{Binomial}(n_j, p_c)`; counts enter as they are, a stated
    strength ("many") through the spec's ``[evidence_strength]`` mapping.

Why the count is not a latent variable
    NUTS cannot sample discrete :math:`N_{cd}`. The claims are conditioned on the expected count
    :math:`\mu`; the Poisson draw is added afterwards (:func:`truecount.inference.fitter.add_derived`). Its
    relative spread, :math:`1/\sqrt{N}`, is under 3% above 1,000 enrolments, well inside the claims'
    imprecision, so conditioning on :math:`\mu` changes little and keeps the geometry smooth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.scalar as ps
import pytensor.tensor as pt
import xarray as xr
from pytensor.gradient import DisconnectedType
from pytensor.link.numba.dispatch.scalar import register_scalar_funcify
from pytensor.tensor.elemwise import Elemwise

from truecount.model.capacity import log_blocking_scalar, log_blocking_slope
from truecount.inputs.case import Case
from truecount.errors import InputError
from truecount.model.forward import QUANTITIES, model_inputs, model_structure
from truecount.inputs.spec import Prior, Spec


class LogErlangB(ps.ScalarOp):  # type: ignore[misc]
    r"""``log B(servers, A)`` from ``(servers, log A)``: the recursion as one scalar operation.

    It runs :func:`truecount.model.capacity.log_blocking_scalar` (the one definition of the recursion)
    as compiled code, so the graph, and the time to compile it, are the same for 6 lines or
    5,000, and the line count is data that a compiled model can change. Its gradient is the exact
    :math:`\partial \log B / \partial \log A = c - A(1 - B)`
    (:func:`truecount.model.capacity.log_blocking_slope`), not a derivative through ``c`` steps; the line
    count is not differentiable (disconnected).
    """

    nin = 2
    nout = 1

    def output_types(self, types: Any) -> list[Any]:
        """Always float64."""
        return [ps.float64]

    def impl(self, servers: Any, log_load: Any) -> float:
        """Python (and PyTensor's C backend, which falls back to it) call the compiled function."""
        return float(log_blocking_scalar(int(servers), float(log_load)))

    def connection_pattern(self, node: Any) -> list[list[bool]]:
        """The output depends differentiably on ``log A`` only."""
        return [[False], [True]]

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        """The exact slope times the output gradient; nothing for the line count."""
        servers, log_load = inputs
        (log_b,), (g,) = outputs, grads
        slope = log_blocking_slope(servers, ps.exp(log_load), ps.exp(log_b))
        return [DisconnectedType()(), g * slope]

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


@register_scalar_funcify(LogErlangB)  # type: ignore[untyped-decorator]
def _numba_log_erlang_b(op: Any, node: Any, **kwargs: Any) -> tuple[Any, str]:
    # The compiled function itself; the key names its version for PyTensor's numba cache.
    return log_blocking_scalar, "truecount.model.capacity.log_blocking_scalar-3"


_LOG_ERLANG_B = Elemwise(LogErlangB(name="log_erlang_b"))


def log_erlang_b(servers: Any, log_load: Any) -> Any:
    """``log B(servers, A)`` for PyTensor tensors (elementwise, broadcast), from ``log A``."""
    return _LOG_ERLANG_B(pt.cast(servers, "int64"), log_load)


def erlang_b_pt(servers: Any, load: Any) -> Any:
    """Erlang-B blocking for PyTensor tensors: :func:`log_erlang_b` of ``log(load)``."""
    return pt.exp(log_erlang_b(servers, pt.log(load)))


def log_normal_cdf(z: Any) -> Any:
    r"""``log Phi(z)``, PyMC's ``normal_lcdf`` with each branch evaluated only where it is used.

    Below :math:`z = -1` it is :math:`\log(\mathrm{erfcx}(-z/\sqrt2)/2) - z^2/2`, above it
    :math:`\log1p(-\mathrm{erfc}(z/\sqrt2)/2)`. PyMC evaluates both branches at every ``z``;
    far in either tail the unused one overflows (``erfcx`` to ``inf``, ``log1p(-1)``), and a
    backward pass that multiplies its zero cotangent by an infinite derivative gives NaN
    gradients (JAX's does: NUTS diverged on 10% of KSS transitions). Here each branch sees a
    harmless value where it is not used, so the value and the gradient are the same everywhere
    else and finite everywhere.
    """
    low = z < -1.0
    z_low = pt.switch(low, z, -1.0)
    z_high = pt.switch(low, -1.0, z)
    return pt.switch(low, pt.log(pt.erfcx(-z_low / np.sqrt(2.0)) / 2.0) - pt.sqr(z_low) / 2.0,
                     pt.log1p(-pt.erfc(z_high / np.sqrt(2.0)) / 2.0))


def build_model(case: Case | xr.Dataset, spec: Spec) -> pm.Model:
    """The PyMC model of ``case`` under ``spec`` (see the module docstring for the mathematics).

    Parameters
    ----------
    case
        A loaded case, or its dataset (:meth:`truecount.inputs.case.Case.to_dataset`).
    spec
        A loaded model spec.

    Returns
    -------
    pymc.Model
        With dimensions ``channel``, ``day``, ``claim``, ``evidence``; the case's numbers are data
        containers, so a compiled model can be refitted to other data of the same structure.
    """
    ds = case.to_dataset() if isinstance(case, Case) else case
    _check_supported(ds, spec)
    inputs = model_inputs(ds, spec)
    structure = model_structure(ds, spec)
    coords = {name: ds[name].values for name in ("channel", "day", "claim", "evidence")}
    coords["quantity"] = np.array(QUANTITIES)
    coords["day"] = np.array([str(d)[:10] for d in ds.day.values])

    with pm.Model(coords=coords) as model:
        hours = pm.Data("open_hours", inputs["open_hours"], dims=("channel", "day"))
        exposure = pm.Data("claim_exposure", inputs["claim_exposure"],
                           dims=("claim", "channel", "day"))
        y = pm.Data("claim_value", inputs["claim_value"], dims="claim")
        rounding = pm.Data("claim_rounding", inputs["claim_rounding"], dims="claim")
        quantity = pm.Data("claim_quantity", inputs["claim_quantity"], dims=("claim", "quantity"))

        tau = _prior(spec.priors["handle_time"], dims="channel")
        share = _prior(spec.priors["attended_share"], dims="channel")
        peak = _prior(spec.priors["peak_attempts_per_hour"], dims="channel")
        enrol = _prior(spec.priors["enrol_share"], dims="channel")
        # Demand on the log scale: a long campaign's fading demand (0.5 ** 365) underflows to 0,
        # and log 0 would make the blocking's gradient NaN.
        log_rate = pt.log(peak)[:, None] * pt.ones_like(hours)
        if structure["demand"] == "decaying":
            # Only a graph that reads a data container may have one: nutpie refuses new data for
            # a container its compiled graph does not know (constant demand has no day index).
            day_index = pm.Data("open_day_index", inputs["open_day_index"],
                                dims=("channel", "day"))
            retention = _prior(spec.priors["daily_retention"], dims="channel")
            log_rate = log_rate + day_index * pt.log(retention)[:, None]
        rate = pt.exp(log_rate)

        # -- the channel: Erlang-B per channel and day, the line count as data --------------------
        servers = pm.Data("servers", inputs["servers"], dims="channel")
        log_load = log_rate + pt.log(tau)[:, None] - np.log(60.0)
        blocking = pm.Deterministic("blocking", pt.exp(log_erlang_b(servers[:, None], log_load)),
                                    dims=("channel", "day"))
        attempts = pm.Deterministic("attempts", rate * hours, dims=("channel", "day"))
        answered = attempts * share[:, None] * (1.0 - blocking)
        expected = pm.Deterministic("expected_enrolments", answered * enrol[:, None],
                                    dims=("channel", "day"))
        pm.Deterministic("unanswered_attempts", attempts - answered, dims=("channel", "day"))
        per_hour = servers * share * 60.0 / tau  # most registrations an open hour, per channel
        pm.Deterministic("capacity", per_hour * hours.sum(axis=1), dims="channel")
        pm.Deterministic(
            "capacity_at_claim", (exposure * (per_hour[:, None] * hours)[None]).sum(axis=(1, 2)),
            dims="claim")
        open_days = pt.maximum((hours > 0).sum(axis=1), 1)
        per_day = (per_hour * hours.sum(axis=1) / open_days).sum()
        pm.Deterministic("days_needed", y / per_day, dims="claim")

        # -- claims: integrated inflation, honest/inflated and (if unclear) what they count ---------
        funnel = pt.stack([expected, answered, attempts])  # (quantity, channel, day)
        at_claim = pt.maximum(pt.tensordot(exposure, funnel, axes=[[1, 2], [1, 2]]), 0.5)
        pm.Deterministic("funnel_at_claim", at_claim, dims=("claim", "quantity"))
        log_y = pt.log(y)
        r_primary = log_y - (pt.log(at_claim) * quantity).sum(axis=1)
        r_attempts = log_y - pt.log(at_claim[:, 2])
        noise = _prior(spec.priors["claim_noise"])
        sd = pt.sqrt(noise**2 + (rounding / y) ** 2 / 12.0)
        sigma_u = _inflation_scale(spec.priors["log_inflation"])
        honest_p = (_prior(spec.priors["honest_probability"]) if structure["honest_claims"]
                    else None)

        def claim_terms(r: Any) -> tuple[Any, Any]:
            """Log densities of r (honest, inflated), each with its prior weight."""
            omega = pt.sqrt(sigma_u**2 + sd**2)
            inflated = (np.log(2.0) + pm.logp(pm.Normal.dist(0.0, omega), r)
                        + log_normal_cdf((sigma_u / sd) * r / omega))
            if honest_p is None:
                return pt.full_like(r, -np.inf), inflated
            honest = pm.logp(pm.Normal.dist(0.0, sd), r)
            return pt.log(honest_p) + honest, pt.log1p(-honest_p) + inflated

        unclear = np.asarray(structure["unclear"], dtype=bool)
        if unclear.any():
            kappa = _prior(spec.priors["counts_attempts_probability"])
            log_w_attempts = pt.switch(unclear, pt.log(kappa), -np.inf)
            log_w_primary = pt.switch(unclear, pt.log1p(-kappa), 0.0)
        else:
            log_w_attempts = pt.full_like(y, -np.inf)
            log_w_primary = pt.zeros_like(y)
        honest_primary, inflated_primary = claim_terms(r_primary)
        honest_attempts, inflated_attempts = claim_terms(r_attempts)
        terms = pt.stack([honest_primary + log_w_primary, inflated_primary + log_w_primary,
                          honest_attempts + log_w_attempts, inflated_attempts + log_w_attempts])
        total = pt.logsumexp(terms, axis=0)
        pm.Potential("claims_loglik", total.sum())
        pm.Deterministic("claim_loglik", total, dims="claim")
        pm.Deterministic("p_honest", pt.exp(pt.logsumexp(terms[[0, 2]], axis=0) - total),
                         dims="claim")
        pm.Deterministic("p_counts_attempts",
                         pt.exp(pt.logsumexp(terms[[2, 3]], axis=0) - total), dims="claim")

        # -- evidence: failed share seen through reporting bias -----------------------------------
        failed_share = ((attempts * (1.0 - share[:, None] * (1.0 - blocking))).sum(axis=1)
                        / pt.maximum(attempts.sum(axis=1), 1e-12))
        pm.Deterministic("failed_share", failed_share, dims="channel")
        if structure["has_evidence"]:
            bias = _prior(spec.priors["report_bias_odds"])
            reported = bias * failed_share / (bias * failed_share + 1.0 - failed_share)
            channel_of = pm.Data("evidence_channel", inputs["evidence_channel"],
                                 dims=("evidence", "channel"))
            n_reports = pm.Data("evidence_reports", inputs["evidence_reports"], dims="evidence")
            failed = pm.Data("evidence_failed", inputs["evidence_failed"], dims="evidence")
            p = pt.clip(pt.dot(channel_of, reported), 1e-12, 1.0 - 1e-12)
            pm.Binomial("evidence_reports_failed", n=n_reports, p=p, observed=failed,
                        dims="evidence")
    # What inference needs besides the graph: provenance, structure and spec (for predictive claims).
    model.truecount = ModelInfo(
        attrs={
            "case_id": ds.attrs.get("case_id", ""),
            "case_sha256": ds.attrs.get("case_sha256", ""),
            "case_readings": ds.attrs.get("readings", ""),
            "spec_id": spec.id,
            "spec_sha256": spec.sha256,
        },
        structure=structure,
        spec=spec,
    )
    return model


@dataclass(frozen=True)
class ModelInfo:
    """What a built model carries for inference: provenance attributes, structure and spec."""

    attrs: dict[str, str]
    structure: dict[str, Any]
    spec: Spec


def model_info(model: pm.Model) -> ModelInfo:
    """The :class:`ModelInfo` of a model made by :func:`build_model`."""
    info = getattr(model, "truecount", None)
    if not isinstance(info, ModelInfo):
        raise TypeError("not a model made by truecount.model.build.build_model")
    return info


def _check_supported(ds: xr.Dataset, spec: Spec) -> None:
    for k, cumulative in enumerate(ds.claim_cumulative.values):
        if not cumulative:
            raise InputError(ds.attrs.get("case_file", "case"), f"claims[{k}].cumulative", "false",
                             "true: only cumulative claims are modelled so far",
                             "State the claim as a running total, or leave it out.")
    prior = spec.priors["log_inflation"]
    if prior.dist != "HalfNormal":
        raise InputError(spec.path, "priors.log_inflation.dist", repr(prior.dist), "'HalfNormal'",
                         "The model integrates the inflation out in closed form, which needs a "
                         "half-normal prior.")


def _inflation_scale(prior: Prior) -> float:
    return float(prior.params["sigma"])


def _prior(prior: Prior, dims: str | None = None) -> Any:
    """The PyMC random variable of a spec prior (a Fixed prior becomes a constant Deterministic)."""
    p = prior.params
    name = prior.name
    match prior.dist:
        case "Normal":
            return pm.Normal(name, mu=p["mu"], sigma=p["sigma"], dims=dims)
        case "LogNormal":
            return pm.LogNormal(name, mu=p["mu"], sigma=p["sigma"], dims=dims)
        case "HalfNormal":
            return pm.HalfNormal(name, sigma=p["sigma"], dims=dims)
        case "Exponential":
            return pm.Exponential(name, lam=p["lam"], dims=dims)
        case "Gamma":
            return pm.Gamma(name, alpha=p["alpha"], beta=p["beta"], dims=dims)
        case "Beta":
            return pm.Beta(name, alpha=p["alpha"], beta=p["beta"], dims=dims)
        case "Uniform":
            return pm.Uniform(name, lower=p["lower"], upper=p["upper"], dims=dims)
        case "Fixed":
            model = pm.modelcontext(None)
            shape = () if dims is None else (len(model.coords[dims]),)
            return pm.Deterministic(name, pt.fill(pt.zeros(shape), p["value"]), dims=dims)
    raise AssertionError(prior.dist)  # pragma: no cover - the spec loader allows only the above
