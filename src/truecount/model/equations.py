r"""Every equation of the model, written once, over a backend: NumPy or PyTensor.

:func:`deterministics` computes, from parameter values and the model's inputs
(:func:`truecount.model.data.model_inputs`), every quantity the model defines: the channel's flows,
its capacity, what each claim could count, the claims' log likelihood and responsibilities, the
failed share; :func:`evidence_probability` gives each evidence item's probability of a failure
report. Written against a :class:`Backend`, the same code builds the PyMC model's graph
(:data:`truecount.model.build.PYTENSOR`: the parameters are random variables, the inputs data
containers) and computes the draws of a fit, the simulator's campaigns and the predictive draws
(:data:`NUMPY`: the parameters are arrays with leading sample dimensions). Nothing else in
truecount restates these formulas; tests check the two backends agree element by element for every
combination of the spec's switches.

Shapes: per-channel parameters are ``(..., channel)``, shared ones ``(...)``; the inputs carry no
sample dimensions; results add the case's ``channel``, ``day``, ``claim`` (and ``quantity``) axes
after the leading ``...`` (none for PyTensor).

Channel (per channel :math:`c` and calendar day :math:`d`)
    Demand is stated relative to the channel's size, so that one prior serves six lines and five
    hundred agents: on the first open day each of the :math:`S_c` lines is offered
    :math:`a_c` Erlangs (``peak_load_per_line``; 1 means just enough lines for every attempt if
    calls came evenly), so with mean handle time :math:`\tau_c` (minutes) the channel is offered
    :math:`\lambda_c = a_c S_c \cdot 60/\tau_c` call attempts an open hour
    (``peak_attempts_per_hour``, :func:`truecount.model.capacity.attempts_per_hour`). Demand decays
    from the first open day (``structure.demand``):
    :math:`\lambda_{cd} = \lambda_c\, \rho_c^{\,i_{cd}}`, with :math:`i_{cd}` the open-day index and
    :math:`\rho_c` the daily retention (1 for constant demand); the rate and the load are computed
    on the log scale, so a long campaign's fading demand never underflows to a zero whose
    logarithm would poison the gradient. The offered load is
    :math:`A_{cd} = \lambda_{cd}\tau_c/60 = a_c S_c \rho_c^{\,i_{cd}}` and the
    Erlang-B blocking probability :math:`B_{cd} = B(S_c, A_{cd})` (a caller
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

Call centres (a channel of kind ``call_centre``)
    :math:`S_c` agents and one queue: a caller who finds every agent busy holds, first come first
    served, and hangs up after an exponential patience of mean :math:`p_c` minutes
    (``patience``), Erlang-A's M/M/S+M. Demand, handle time and attendance are stated as for
    lines (a share :math:`s_c` of the open hours staffed, a thinning of the callers), and the
    share lost while staffed, :math:`B_{cd}`, is the Erlang-A share of callers who hang up:
    :math:`1 - P(\text{answered})` of :func:`erlang_a_answered`, from :math:`S_c`, the load
    :math:`A_{cd}` and :math:`p_c/\tau_c` (so answered calls, hang-ups and, through the evidence,
    the reports of not getting through follow from agents, handle time and demand). With no
    patience it is Erlang-B's loss; with much patience and demand below the agents' throughput
    nearly every caller is answered; in overload the agents answer :math:`S \cdot 60/\tau` an
    hour and the rest hang up. Agents answer no more than lines could, so the capacity is the
    same :math:`S\, H\, s\, q \cdot 60/\tau`.

Walk-in desks (a channel of kind ``walk_in``)
    :math:`S_c` desks (offices, stands in squares) where people queue in person: the same
    Erlang-A queue as a call centre's, with its own mean time before a person leaves the queue,
    :math:`p_c` = ``queue_patience`` (people who came in person wait longer than callers on
    hold). Where the sources give the number of desks only as a range
    :math:`[S^{\min}_c, S^{\max}_c]`, it is a parameter,
    :math:`S_c = S^{\min}_c (S^{\max}_c / S^{\min}_c)^{v_c}`, with :math:`v_c \in [0, 1]` the
    ``servers_position`` (a spec prior; uniform: log-uniform desks), recorded as ``desks``. Every
    formula above takes this :math:`S_c` (demand :math:`a_c S_c`, capacity
    :math:`S_c H s q \cdot 60/\tau`); Erlang-B, defined by its recursion at whole numbers, is
    interpolated on the log scale between them (:func:`log_erlang_b`), which keeps the
    likelihood continuous in :math:`v_c`. Capacity arithmetic (``truecount capacity``) is an
    upper bound and takes :math:`S^{\max}_c`.

Online forms (a channel of kind ``online_form``)
    An online form, website or messaging account has no lines, so demand cannot be stated
    against a size: it takes :math:`\lambda_c` submissions an open hour on its first open day
    (``peak_submissions_per_hour``), decaying as the lines' demand does,
    :math:`\lambda_{cd} = \lambda_c \rho_c^{\,i_{cd}}` (on the log scale). Nothing is lost:
    :math:`B_{cd} = 0` and every submission goes through,

    .. math::

        \text{attempts}_{cd} = \text{answered}_{cd} = \lambda_{cd} H_{cd}, \quad
        \mu_{cd} = q_c\, \lambda_{cd} H_{cd},

    with :math:`q_c` the share of submissions that are enrolments (duplicates, tests and spam
    are not). Its capacity is unbounded: ``capacity`` is :math:`+\infty`, and so is
    ``capacity_at_claim`` of every claim that counts any of its open hours (whose
    ``days_needed`` is then 0), so that such a claim is always "possible"; a claim about the
    lines alone keeps the lines' bound. A form's failed share is 0, and evidence of unreachable
    lines may not name it. The lines' parameters (:math:`\tau, s, a`) exist only if the case has
    lines, the form's :math:`\lambda_c` only if it has a form; in a case with both, each is
    sampled for every channel and used only on its own kind (``channel_is_form``), and tables
    and figures show only the elements that mean something.

Claims (per claim :math:`k` with published value :math:`y_k`)
    A claim reports a quantity :math:`Q_k` on the funnel, summed over the channels and days it
    covers with weights :math:`e_{kcd}`, the share of day :math:`d`'s open hours on channel
    :math:`c` that the claim counts: for a running total, those before its date; for a count for
    a period ("on the second day", "in the first three hours"), those between the period's start
    and the claim's date; zero on every channel but the one a claim about one channel names
    (:meth:`truecount.inputs.case.Case.to_dataset`):
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
    parametrization gave 80+ divergences on the KSS case). The scale :math:`\sigma_u` is the
    spec's (``log_inflation``), or with structure ``inflation = "pooled"`` a parameter
    ``inflation_scale`` that the campaign's inflated claims share (:func:`inflation_scale`): the
    formula is the same given :math:`\sigma_u`; a priori each :math:`u_k` is then a scale mixture
    of half-normals, heavier-tailed than one, and claims that capacity bounds tell the model how
    far this campaign inflates the claims nothing bounds. The claim's likelihood mixes honest
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
    :math:`\mu`; the Poisson draw is added afterwards (:meth:`truecount.inference.fitter.Fitter.fit`). Its
    relative spread, :math:`1/\sqrt{N}`, is under 3% above 1,000 enrolments, well inside the claims'
    imprecision, so conditioning on :math:`\mu` changes little and keeps the geometry smooth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import erfc, erfcx, gammaln, log_ndtr, logsumexp

from truecount.model import capacity
from truecount.quantities import FUNNEL, QUANTITIES


@dataclass(frozen=True)
class Backend:
    """The array operations the equations use, for one array library.

    Elementwise functions and reductions that NumPy and PyTensor spell alike (``+``, ``*``,
    ``.sum(axis=...)``, ``[..., None]``) are written directly; the rest is here.
    """

    name: str
    log: Callable[[Any], Any]
    exp: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    log1p: Callable[[Any], Any]
    maximum: Callable[[Any, Any], Any]
    where: Callable[[Any, Any, Any], Any]
    clip: Callable[[Any, float, float], Any]
    stack: Callable[[Sequence[Any]], Any]  # along a new first axis
    logsumexp: Callable[[Any], Any]  # over the first axis
    full_like: Callable[[Any, float], Any]
    zeros_like: Callable[[Any], Any]
    ones_like: Callable[[Any], Any]
    #: ``log B(servers, A)`` from ``(servers, log A)``, elementwise (Erlang-B, :mod:`capacity`).
    log_erlang_b: Callable[[Any, Any], Any]
    #: ``log Gamma(x)``, elementwise.
    gammaln: Callable[[Any], Any]
    #: Running sum along the first axis.
    cumsum: Callable[[Any], Any]
    abs: Callable[[Any], Any]
    sign: Callable[[Any], Any]
    erfc: Callable[[Any], Any]
    floor: Callable[[Any], Any]
    #: ``exp(z^2) erfc(z)``, the scaled complementary error function.
    erfcx: Callable[[Any], Any]
    #: Records a result under its name and returns it: PyTensor makes it a Deterministic of the
    #: model (later equations read the named variable, as the model's graph always has); NumPy
    #: returns it as it is.
    named: Callable[[str, Any], Any]
    #: A shared parameter against an array with a case axis last: ``x[..., None]`` for draws
    #: with sample dimensions; a PyTensor scalar broadcasts as it is.
    shared: Callable[[Any], Any]
    #: Log density of ``N(0, sd^2)`` at ``x``.
    normal_logpdf: Callable[[Any, Any], Any]
    #: ``log Phi(z)``, the log of the standard normal distribution function.
    log_normal_cdf: Callable[[Any], Any]
    #: ``sum_cd exposure[k, c, d] x[..., c, d]`` for each ``x`` of the list: ``(..., claim, len)``.
    at_claims: Callable[[Any, Sequence[Any]], Any]
    #: ``x[..., c]`` of the channel each evidence item is about, ``(..., evidence)``.
    per_evidence: Callable[[Any, Any], Any]


def _normal_logpdf(x: Any, sd: Any) -> Any:
    return np.asarray(-0.5 * (x / sd) ** 2 - np.log(sd) - 0.5 * np.log(2.0 * np.pi))


def _at_claims(exposure: Any, xs: Sequence[Any]) -> Any:
    return np.stack([np.einsum("kcd,...cd->...k", exposure, x) for x in xs], axis=-1)


#: The NumPy backend: parameters may carry any leading sample dimensions.
NUMPY = Backend(
    name="numpy", log=np.log, exp=np.exp, sqrt=np.sqrt, log1p=np.log1p, maximum=np.maximum,
    where=np.where, clip=np.clip, stack=lambda xs: np.stack(xs),
    logsumexp=lambda x: logsumexp(x, axis=0), full_like=np.full_like, zeros_like=np.zeros_like,
    ones_like=np.ones_like, log_erlang_b=capacity.log_blocking, gammaln=gammaln,
    cumsum=lambda x: np.cumsum(x, axis=0), abs=np.abs, sign=np.sign, erfc=erfc, erfcx=erfcx,
    floor=np.floor, named=lambda name, x: x, shared=lambda x: np.asarray(x)[..., None],
    normal_logpdf=_normal_logpdf,
    log_normal_cdf=log_ndtr, at_claims=_at_claims,
    per_evidence=lambda channel_of, x: np.einsum("ec,...c->...e", channel_of, x),
)

#: The model's Deterministics (:func:`deterministics` returns them, the model names them): the
#: registry's quantities of kind "deterministic".
DETERMINISTICS = tuple(q.name for q in QUANTITIES if q.kind == "deterministic")


def servers(b: Backend, inputs: Mapping[str, Any], params: Mapping[str, Any],
            structure: Mapping[str, Any]) -> Any:
    r"""Each channel's lines, agents or desks: the case's count, or walk-in desks in their range.

    ``(channel,)`` integers when every count is known; else ``(..., channel)``,
    :math:`S_c = S^{\min}_c (S^{\max}_c / S^{\min}_c)^{v_c}` with :math:`v_c` the
    ``servers_position`` (0 where the count is known).
    """
    if not structure.get("servers_range", False):
        return inputs["servers"]
    return inputs["servers"] * b.exp(params["servers_position"] * inputs["servers_log_span"])


def log_erlang_b(b: Backend, servers: Any, log_load: Any, structure: Mapping[str, Any]) -> Any:
    r"""Erlang-B's :math:`\log B(S, A)`, also for a number of desks that is not a whole number.

    Between whole numbers :math:`n \le S < n + 1` it is interpolated linearly on the log scale,
    :math:`(1 - f) \log B(n, A) + f \log B(n + 1, A)` with :math:`f = S - n`: continuous in
    :math:`S`, exact at whole numbers, and within a fraction of the step between neighbours
    (which is small for the hundreds of desks a range is stated for).
    """
    if not structure.get("servers_range", False):
        return b.log_erlang_b(servers, log_load)
    whole = b.floor(servers)
    low = b.log_erlang_b(whole, log_load)
    return low + (servers - whole) * (b.log_erlang_b(whole + 1.0, log_load) - low)


def channel_flows(b: Backend, inputs: Mapping[str, Any], params: Mapping[str, Any],
                  structure: Mapping[str, Any]) -> dict[str, Any]:
    """Attempts, answered calls, expected enrolments and blocking per channel and day.

    Lines and forms are each computed only if the case has them; a case with both computes the
    lines' arithmetic for every channel and takes the form's where ``channel_is_form`` is 1.
    Queues (call centres, walk-in desks) take Erlang-A's share where ``channel_is_queue`` is 1.
    """
    hours = inputs["open_hours"]
    kinds = structure["kinds"]
    decaying = structure["demand"] == "decaying"
    lines: dict[str, Any] = {}
    if any(k in kinds for k in ("phone_lines", "call_centre", "walk_in")):
        count = servers(b, inputs, params, structure)
        if "walk_in" in kinds:
            count = lines["desks"] = b.named("desks", count * 1.0)
        lines["peak"] = capacity.attempts_per_hour(params["peak_load_per_line"], count,
                                                   params["handle_time"])
        # Demand on the log scale: a long campaign's fading demand (0.5 ** 365) underflows to 0,
        # and log 0 would make the blocking's gradient NaN.
        log_load = b.log(params["peak_load_per_line"] * count)[..., None] * b.ones_like(hours)
        if decaying:
            log_load = (log_load
                        + inputs["open_day_index"] * b.log(params["daily_retention"])[..., None])
        lines["rate"] = b.exp(log_load) * (60.0 / params["handle_time"])[..., None]
        log_blocking = log_erlang_b(b, count[..., None], log_load, structure)
        lines["blocking"] = b.exp(log_blocking)
        if "call_centre" in kinds or "walk_in" in kinds:
            if "call_centre" not in kinds:
                patience = params["queue_patience"]
            elif "walk_in" not in kinds:
                patience = params["patience"]
            else:
                patience = b.where(inputs["channel_is_walk_in"] > 0.5, params["queue_patience"],
                                   params["patience"])
            ratio = (patience / params["handle_time"])[..., None]
            answered = erlang_a_answered(b, count[..., None] * b.ones_like(log_load), log_load,
                                         log_blocking, ratio)
            lost = 1.0 - answered
            if "phone_lines" in kinds:
                lost = b.where(inputs["channel_is_queue"][:, None] > 0.5, lost, lines["blocking"])
            lines["blocking"] = lost
        lines["through"] = params["attended_share"][..., None] * (1.0 - lines["blocking"])
    forms: dict[str, Any] = {}
    if "online_form" in kinds:
        forms["peak"] = params["peak_submissions_per_hour"]
        log_rate = b.log(forms["peak"])[..., None] * b.ones_like(hours)
        if decaying:
            log_rate = (log_rate
                        + inputs["open_day_index"] * b.log(params["daily_retention"])[..., None])
        forms["rate"] = b.exp(log_rate)
        forms["blocking"] = b.zeros_like(forms["rate"])
        forms["through"] = b.ones_like(forms["rate"])
    if lines and forms:
        is_form = inputs["channel_is_form"]
        flows = {key: b.where(is_form[:, None] > 0.5, forms[key], lines[key])
                 for key in ("rate", "blocking", "through")}
        flows["peak"] = b.where(is_form > 0.5, forms["peak"], lines["peak"])
    else:
        flows = lines or forms
    peak = b.named("peak_attempts_per_hour", flows["peak"])
    blocking = b.named("blocking", flows["blocking"])
    attempts = b.named("attempts", flows["rate"] * hours)
    if forms:
        answered = attempts * flows["through"]
    else:  # the lines' expression as it always was (same rounding, same numbers)
        answered = attempts * params["attended_share"][..., None] * (1.0 - blocking)
    expected = b.named("expected_enrolments", answered * params["enrol_share"][..., None])
    out = {"blocking": blocking, "attempts": attempts, "answered": answered,
           "through": flows["through"], "expected": expected, "peak_attempts_per_hour": peak}
    if "desks" in lines:
        out["desks"] = lines["desks"]
    return out


#: Terms of the series for :math:`T - 1` in :func:`erlang_a_answered` (a static length, so the
#: model's graph does not depend on the parameters); it is summed where :math:`x` is small.
ERLANG_A_TERMS = 64
#: Below this :math:`x` the series is summed (its first :data:`ERLANG_A_TERMS` terms hold all
#: but :math:`e^{-30}` of it there); above, Temme's expansion is used.
ERLANG_A_SERIES_BELOW = 20.0


def erlang_a_answered(b: Backend, servers: Any, log_load: Any, log_blocking: Any,
                      patience_ratio: Any) -> Any:
    r"""Share of callers a call centre answers (Erlang-A, M/M/S+M), elementwise.

    ``servers`` agents :math:`S`, the offered load's logarithm :math:`\log A`, Erlang-B's
    :math:`\log B(S, A)` and the mean patience over the mean handle time, :math:`r`, all
    broadcast alike. With :math:`a = S r` and :math:`x = A r`, the queue's states above
    :math:`S` add to Erlang-B's the factor
    :math:`T = \sum_{k \ge 0} x^k / ((a+1)\cdots(a+k)) = {}_1F_1(1; a+1; x)`, and

    .. math::

        P(\text{answered}) = (1 - B)(1 - w) + w\,\frac{S}{A}, \qquad
        w = \frac{B (T-1)}{1 + B (T-1)},

    every term positive (no cancellation): :math:`1 - B` when no caller waits (:math:`T = 1`),
    :math:`S/A` in overload (the agents' full throughput).

    :math:`T = \Gamma(a+1)\, x^{-a} e^x P(a, x)`, with :math:`P` the regularized lower incomplete
    gamma function. For :math:`x` below :data:`ERLANG_A_SERIES_BELOW` the series is summed
    (:data:`ERLANG_A_TERMS` terms, on the log scale); above, :math:`P` is Temme's uniform
    expansion to its first correction, :math:`P = \tfrac12 \operatorname{erfc}(-\eta\sqrt{a/2})
    - e^{-a\eta^2/2} c_0(\eta)/\sqrt{2\pi a}`, with :math:`\lambda = x/a`,
    :math:`\eta = \operatorname{sign}(\lambda - 1)\sqrt{2(\lambda - 1 - \log\lambda)}` and
    :math:`c_0 = 1/(\lambda - 1) - 1/\eta`. Below :math:`x = a` the factor
    :math:`e^{-a\eta^2/2}` cancels against :math:`x^{-a}e^x` exactly, so
    :math:`\log T = \log\Gamma(a+1) + a - a\log a + \log(\tfrac12\operatorname{erfcx}(-\eta
    \sqrt{a/2}) - c_0/\sqrt{2\pi a})`, with nothing to underflow however light the load.
    :func:`truecount.model.capacity.erlang_a_chain` sums the chain's states exactly; the tests
    hold the two together (about :math:`10^{-4}` of the answered share at most).
    """
    a = servers * patience_ratio
    log_x = log_load + b.log(patience_ratio)
    x = b.exp(log_x)
    use_series = x < ERLANG_A_SERIES_BELOW
    # Each branch sees a harmless value where it is not used (an unused infinity would make the
    # gradient NaN): the series a small x, Temme's expansion a lambda away from 1.
    ndim = getattr(x, "ndim", 0)
    k = np.arange(1.0, ERLANG_A_TERMS + 1.0).reshape((ERLANG_A_TERMS,) + (1,) * ndim)
    log_x_series = b.where(use_series, log_x, 0.0)
    series = b.logsumexp(b.cumsum(log_x_series - b.log(a + k)))
    lam = x / a
    near = b.abs(lam - 1.0) < 1e-4
    lam_safe = b.where(near, 2.0, lam)
    eta_safe = b.sign(lam_safe - 1.0) * b.sqrt(2.0 * (lam_safe - 1.0 - b.log(lam_safe)))
    eta = b.where(near, lam - 1.0, eta_safe)  # eta ~ lambda - 1 there
    c0 = b.where(near, -1.0 / 3.0 + (lam - 1.0) / 12.0, 1.0 / (lam_safe - 1.0) - 1.0 / eta_safe)
    q = -eta * b.sqrt(a / 2.0)
    below = lam < 1.0
    correction = c0 / b.sqrt(2.0 * np.pi * a)
    log_t_below = (b.gammaln(a + 1.0) + a - a * b.log(a)
                   + b.log(0.5 * b.erfcx(b.where(below, q, 0.0)) - correction))
    p_above = (0.5 * b.erfc(b.where(below, 0.0, q))
               - b.exp(-0.5 * a * b.where(below, 0.0, eta) ** 2) * correction)
    log_t_above = b.gammaln(a + 1.0) - a * log_x + x + b.log(p_above)
    log_t = b.where(below, log_t_below, log_t_above)
    temme = log_t + b.log1p(-b.exp(-b.maximum(log_t, 1e-12)))  # log(T - 1)
    log_t1 = b.where(use_series, series, temme)
    u = log_blocking + log_t1
    softplus = b.logsumexp(b.stack([b.zeros_like(u), u]))  # log(1 + B(T - 1))
    log_not_blocked = b.log1p(-b.exp(log_blocking))
    return (b.exp(log_not_blocked - softplus)
            + b.exp(u - softplus + b.log(servers) - log_load))


def channel_capacity(b: Backend, inputs: Mapping[str, Any], params: Mapping[str, Any],
                     structure: Mapping[str, Any]) -> tuple[Any, Any]:
    r"""Registrations an open hour each channel could take, and a mask of the unbounded ones.

    ``(per_hour, unbounded)``, each ``(..., channel)``: a line channel's :math:`S s \cdot 60/\tau`;
    an online form's is 0 in ``per_hour`` and 1 in ``unbounded`` (no line limits it), so that sums
    over channels stay finite and a result an online form takes part in is set to infinity after.
    """
    kinds = structure["kinds"]
    if kinds == ("online_form",):
        zero = b.zeros_like(params["enrol_share"])
        return zero, zero + 1.0
    per_hour = capacity.registrations_per_hour(servers(b, inputs, params, structure),
                                               params["handle_time"], params["attended_share"])
    if "online_form" not in kinds:
        return per_hour, None
    is_form = inputs["channel_is_form"]
    return per_hour * (1.0 - is_form), is_form + b.zeros_like(per_hour)


def inflation_scale(b: Backend, params: Mapping[str, Any], structure: Mapping[str, Any],
                    sigma_u: float) -> Any:
    """The scale of inflated claims' half-normal log factor.

    The spec's fixed ``sigma_u`` (the ``log_inflation`` prior's), or with structure
    ``inflation = "pooled"`` the sampled ``inflation_scale``, shared by the campaign's claims
    (per draw, shaped like the other shared parameters).
    """
    if structure.get("inflation") == "pooled":
        return b.shared(params["inflation_scale"])
    return sigma_u


def claim_terms(b: Backend, funnel: Any, inputs: Mapping[str, Any], structure: Mapping[str, Any],
                params: Mapping[str, Any], sigma_u: float) -> Any:
    """Log weights of (honest, inflated) x (stated quantity, call attempts): ``(4, ..., claim)``.

    ``funnel`` is ``(..., claim, quantity)``: what each claim could count at its date.
    """
    y = inputs["claim_value"]
    log_y = b.log(y)
    r_primary = log_y - (b.log(funnel) * inputs["claim_quantity"]).sum(axis=-1)
    r_attempts = log_y - b.log(funnel[..., FUNNEL.index("attempts")])
    noise = b.shared(params["claim_noise"])
    sd = b.sqrt(noise**2 + (inputs["claim_rounding"] / y) ** 2 / 12.0)
    honest_p = b.shared(params["honest_probability"]) if structure["honest_claims"] else None
    scale = inflation_scale(b, params, structure, sigma_u)

    def pair(r: Any) -> tuple[Any, Any]:
        """Log densities of r (honest, inflated), each with its prior weight."""
        omega = b.sqrt(scale**2 + sd**2)  # per call: the model's gradient sums in this order
        inflated = (np.log(2.0) + b.normal_logpdf(r, omega)
                    + b.log_normal_cdf((scale / sd) * r / omega))
        if honest_p is None:
            return b.full_like(r, -np.inf), inflated
        return b.log(honest_p) + b.normal_logpdf(r, sd), b.log1p(-honest_p) + inflated

    unclear = np.asarray(structure["unclear"], dtype=bool)
    if unclear.any():
        kappa = b.shared(params["counts_attempts_probability"])
        log_w_attempts = b.where(unclear, b.log(kappa), -np.inf)
        log_w_primary = b.where(unclear, b.log1p(-kappa), 0.0)
    else:
        log_w_attempts = b.full_like(r_primary, -np.inf)
        log_w_primary = b.zeros_like(r_primary)
    honest_primary, inflated_primary = pair(r_primary)
    honest_attempts, inflated_attempts = pair(r_attempts)
    return b.stack([honest_primary + log_w_primary, inflated_primary + log_w_primary,
                    honest_attempts + log_w_attempts, inflated_attempts + log_w_attempts])


def deterministics(b: Backend, inputs: Mapping[str, Any], structure: Mapping[str, Any],
                   params: Mapping[str, Any], sigma_u: float) -> dict[str, Any]:
    """Every Deterministic of the model (:data:`DETERMINISTICS`), from parameter values.

    Each is recorded with :attr:`Backend.named` as it is computed; the claims' log likelihood
    (``claim_loglik``, summed) is the model's potential.

    ``structure`` is :func:`truecount.model.data.model_structure`'s; ``sigma_u`` the inflation
    scale (the spec's ``log_inflation`` sigma).
    """
    flows = channel_flows(b, inputs, params, structure)
    hours = inputs["open_hours"]
    # What each claim counts: its period's share of each day's open hours, on the channels it is
    # about (the case's exposure is already zero elsewhere; the mask also sets days_needed).
    scope = inputs["claim_channels"]
    exposure = inputs["claim_exposure"] * scope[:, :, None]
    attempts, blocking = flows["attempts"], flows["blocking"]
    out = {"peak_attempts_per_hour": flows["peak_attempts_per_hour"],
           "blocking": blocking, "attempts": attempts,
           "expected_enrolments": flows["expected"],
           "unanswered_attempts": b.named("unanswered_attempts", attempts - flows["answered"])}
    if "desks" in flows:
        out["desks"] = flows["desks"]
    per_hour, unbounded = channel_capacity(b, inputs, params, structure)
    total_hours = hours.sum(axis=-1)
    at_claim = b.at_claims(exposure, [per_hour[..., None] * hours])[..., 0]
    open_days = b.maximum((hours > 0).sum(axis=-1), 1)
    per_day = ((per_hour * total_hours / open_days)[..., None, :] * scope).sum(axis=-1)
    days_needed = inputs["claim_value"] / per_day
    if unbounded is None:
        out["capacity"] = b.named("capacity", per_hour * total_hours)
    else:
        # An online form takes part in a claim if the claim counts any of its open hours; no line
        # bounds the claim then, and no number of days at full capacity is needed.
        unbounded_at_claim = b.at_claims(exposure, [unbounded[..., None] * hours])[..., 0] > 0
        out["capacity"] = b.named("capacity", b.where(unbounded > 0.5, np.inf,
                                                      per_hour * total_hours))
        at_claim = b.where(unbounded_at_claim, np.inf, at_claim)
        days_needed = b.where(unbounded_at_claim, 0.0, days_needed)
    out["capacity_at_claim"] = b.named("capacity_at_claim", at_claim)
    out["days_needed"] = b.named("days_needed", days_needed)
    funnel = b.maximum(b.at_claims(exposure, [flows["expected"], flows["answered"], attempts]),
                       0.5)
    out["funnel_at_claim"] = b.named("funnel_at_claim", funnel)
    terms = claim_terms(b, funnel, inputs, structure, params, sigma_u)
    total = b.logsumexp(terms)
    out["claim_loglik"] = b.named("claim_loglik", total)
    out["p_honest"] = b.named("p_honest", b.exp(b.logsumexp(terms[[0, 2]]) - total))
    out["p_counts_attempts"] = b.named("p_counts_attempts",
                                       b.exp(b.logsumexp(terms[[2, 3]]) - total))
    out["failed_share"] = b.named(
        "failed_share", (attempts * (1.0 - flows["through"])).sum(axis=-1)
        / b.maximum(attempts.sum(axis=-1), 1e-12))
    return out


def reported_failure(b: Backend, failed_share: Any, params: Mapping[str, Any]) -> Any:
    """Probability that a report about a channel describes a failure: ``psi f / (psi f + 1 - f)``."""
    bias = b.shared(params["report_bias_odds"])
    return bias * failed_share / (bias * failed_share + 1.0 - failed_share)


def evidence_probability(b: Backend, failed_share: Any, params: Mapping[str, Any],
                         inputs: Mapping[str, Any]) -> Any:
    """Per evidence item, the probability that one of its reports describes a failure.

    :func:`reported_failure` of the channel the item is about, kept inside ``[1e-12, 1 - 1e-12]``
    (the binomial's log density is finite there): ``(..., evidence)``.
    """
    reported = reported_failure(b, failed_share, params)
    return b.clip(b.per_evidence(inputs["evidence_channel"], reported), 1e-12, 1.0 - 1e-12)


def numpy_deterministics(inputs: Mapping[str, Any], structure: Mapping[str, Any],
                         params: Mapping[str, Any], sigma_u: float) -> dict[str, np.ndarray]:
    """:func:`deterministics` in NumPy for arrays of draws (``log 0`` of a Fixed 0 is ``-inf``)."""
    arrays = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    with np.errstate(divide="ignore"):
        return deterministics(NUMPY, inputs, structure, arrays, sigma_u)
