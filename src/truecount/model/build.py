r"""The probabilistic model: from a case and a spec to a :class:`pymc.Model`.

The mathematics is :mod:`truecount.model.equations`' (its docstring states it), evaluated here over
PyTensor (:data:`PYTENSOR`): the spec's priors become random variables, the case's inputs
(:func:`truecount.model.data.model_inputs`) data containers, each equation's result a named
Deterministic with the dimensions :mod:`truecount.quantities` gives it. The claims enter as a
Potential (their mixture likelihood, inflation integrated out), the evidence as a Binomial.
This module adds what only PyTensor needs: the Erlang-B recursion as one compiled scalar
operation (:class:`LogErlangB`) and a normal log CDF whose gradient is finite in both tails.
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

from truecount.errors import InputError
from truecount.inputs.case import Case
from truecount.inputs.spec import Prior, Spec
from truecount.model import equations
from truecount.model.capacity import log_blocking_scalar, log_blocking_slope
from truecount.model.data import model_inputs, model_structure, needs_parameter
from truecount.quantities import PARAMETERS, QUANTITY, SAMPLED


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


def _normal_logpdf(x: Any, sd: Any) -> Any:
    return pm.logp(pm.Normal.dist(0.0, sd), x)


#: The PyTensor backend of :mod:`truecount.model.equations`: the model's graph.
PYTENSOR = equations.Backend(
    name="pytensor", log=pt.log, exp=pt.exp, sqrt=pt.sqrt, log1p=pt.log1p, maximum=pt.maximum,
    where=pt.switch, clip=pt.clip, stack=lambda xs: pt.stack(list(xs)),
    logsumexp=lambda x: pt.logsumexp(x, axis=0), full_like=pt.full_like,
    zeros_like=pt.zeros_like, ones_like=pt.ones_like, log_erlang_b=log_erlang_b, gammaln=pt.gammaln,
    cumsum=lambda x: pt.cumsum(x, axis=0), abs=pt.abs, sign=pt.sign, erfc=pt.erfc, erfcx=pt.erfcx,
    floor=pt.floor,
    named=lambda name, x: pm.Deterministic(name, x, dims=QUANTITY[name].dims),
    shared=lambda x: x,
    normal_logpdf=_normal_logpdf, log_normal_cdf=log_normal_cdf,
    at_claims=lambda exposure, xs: pt.tensordot(exposure, pt.stack(list(xs)),
                                                axes=[[1, 2], [1, 2]]),
    per_evidence=pt.dot,
)


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
    coords = {name: inputs[name].values for name in ("channel", "day", "claim", "evidence",
                                                      "quantity")}
    with pm.Model(coords=coords) as model:
        data = {str(name): pm.Data(str(name), array.values, dims=array.dims)
                for name, array in inputs.data_vars.items()}
        params = {name: _prior(spec.priors[name], PARAMETERS[name].dims or None)
                  for name in SAMPLED if needs_parameter(name, structure)}
        sigma_u = _inflation_scale(spec.priors["log_inflation"])
        named = equations.deterministics(PYTENSOR, data, structure, params, sigma_u)
        pm.Potential("claims_loglik", named["claim_loglik"].sum())
        if structure["has_evidence"]:
            p = equations.evidence_probability(PYTENSOR, named["failed_share"], params, data)
            pm.Binomial("evidence_reports_failed", n=data["evidence_reports"], p=p,
                        observed=data["evidence_failed"], dims="evidence")
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
    prior = spec.priors["log_inflation"]
    if prior.dist != "HalfNormal":
        raise InputError(spec.path, "priors.log_inflation.dist", repr(prior.dist), "'HalfNormal'",
                         "The model integrates the inflation out in closed form, which needs a "
                         "half-normal prior.")


def _inflation_scale(prior: Prior) -> float:
    return float(prior.params["sigma"])


def _prior(prior: Prior, dims: tuple[str, ...] | None) -> Any:
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
            shape = tuple(len(model.coords[d]) for d in dims or ())
            return pm.Deterministic(name, pt.fill(pt.zeros(shape), p["value"]), dims=dims)
    raise AssertionError(prior.dist)  # pragma: no cover - the spec loader allows only the above
