r"""Model specs: the assumptions of an analysis, kept apart from the facts of a case.

A spec file (TOML, see ``docs/formats.md``) holds

* ``[priors.NAME]``: one prior for each parameter the model needs (:data:`PARAMETERS`), as a
  distribution with its parameters, or *elicited* the way experts talk (``elicit = {lower = 2,
  upper = 10, mass = 0.9}``: "90% sure it is between 2 and 10"), with a one-line ``reason``;
* ``[structure]``: switches between model variants (:data:`STRUCTURE`);
* ``[evidence_strength]``: how a qualitative report ("many could not get through") becomes data;
* ``extends = "baseline"``: start from another spec and override only what differs.

Elicitation
-----------
``elicit = {lower = l, upper = u, mass = m}`` sets the parameters so that the distribution puts
``(1 - m) / 2`` of its probability below ``l`` and the same above ``u`` (equal tails; for Normal and
LogNormal this is also the maximum-entropy choice). Normal and LogNormal have closed forms
(:math:`\mu = (l+u)/2`, :math:`\sigma = (u-l)/(2 z_{(1+m)/2})`, on the log scale for LogNormal).
Beta and Gamma are solved numerically (two equations, two unknowns, on the log scale of their
parameters) and checked to reproduce both quantiles. HalfNormal and Exponential, with one
parameter, take only ``upper``: the parameter puts mass ``m`` below it.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from truecount.errors import InputError, show
from truecount.inputs._fields import Fields, read_toml
from truecount.inputs.case import EVIDENCE_STRENGTHS
from truecount.quantities import PARAMETERS as QUANTITY_PARAMETERS
from truecount.quantities import Quantity

SCHEMA_VERSION = 1
#: The shipped specs: package data (``models/`` in a checkout links to it), so an installed
#: truecount finds them too.
MODELS_DIR = Path(str(files("truecount").joinpath("specs")))


#: Every prior the model needs, with its unit, support and meaning (:mod:`truecount.quantities`).
PARAMETERS = QUANTITY_PARAMETERS


@dataclass(frozen=True)
class Switch:
    """A structural choice and its allowed values (the first is the default)."""

    choices: tuple[Any, ...]
    meaning: str


#: Structural switches of the model.
STRUCTURE: dict[str, Switch] = {
    "demand": Switch(("decaying", "constant"),
                     "call attempts per hour fall day by day after the first open day, or stay flat"),
    "honest_claims": Switch((True, False),
                            "whether a claim may be honest (no inflation), weighed by the posterior"),
    "inflation": Switch(("fixed", "pooled"),
                        "inflated claims' log factors half-normal with the log_inflation prior's "
                        "fixed scale, or with a scale the campaign's claims share and inform "
                        "(the inflation_scale prior)"),
    "unclear_claims": Switch(("mixture", "registrations"),
                             "a claim that counts something unclear: weigh 'registrations' against "
                             "'call attempts' in the posterior, or take it as registrations"),
}


# -- distributions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """A prior family: its parameter names, support, a SciPy equivalent and an elicitation rule."""

    params: tuple[str, ...]
    support: str
    scipy: Callable[..., Any]
    elicit: Callable[[float | None, float, float], dict[str, float]] | None


def _z(mass: float) -> float:
    return float(stats.norm.ppf((1.0 + mass) / 2.0))


def _elicit_normal(lower: float | None, upper: float, mass: float) -> dict[str, float]:
    assert lower is not None
    return {"mu": (lower + upper) / 2, "sigma": (upper - lower) / (2 * _z(mass))}


def _elicit_lognormal(lower: float | None, upper: float, mass: float) -> dict[str, float]:
    assert lower is not None
    lo, hi = math.log(lower), math.log(upper)
    return {"mu": (lo + hi) / 2, "sigma": (hi - lo) / (2 * _z(mass))}


def _elicit_two_tailed(
    make: Callable[[float, float], Any], names: tuple[str, str], start: tuple[float, float]
) -> Callable[[float | None, float, float], dict[str, float]]:
    def elicit(lower: float | None, upper: float, mass: float) -> dict[str, float]:
        assert lower is not None
        tail = (1.0 - mass) / 2.0

        def gap(log_params: Any) -> Any:
            d = make(*np.exp(log_params))
            return [math.log(d.ppf(tail) / lower), math.log(d.ppf(1 - tail) / upper)]

        solution = optimize.root(gap, np.log(start), method="hybr")
        values = np.exp(solution.x)
        if not solution.success or max(abs(g) for g in gap(solution.x)) > 1e-6:
            raise ValueError("no parameters put those quantiles at those bounds")
        return {names[0]: float(values[0]), names[1]: float(values[1])}

    return elicit


def _elicit_halfnormal(lower: float | None, upper: float, mass: float) -> dict[str, float]:
    return {"sigma": upper / _z(mass)}


def _elicit_exponential(lower: float | None, upper: float, mass: float) -> dict[str, float]:
    return {"lam": -math.log(1.0 - mass) / upper}


DISTRIBUTIONS: dict[str, Distribution] = {
    "Normal": Distribution(("mu", "sigma"), "real",
                           lambda mu, sigma: stats.norm(mu, sigma), _elicit_normal),
    "LogNormal": Distribution(("mu", "sigma"), "positive",
                              lambda mu, sigma: stats.lognorm(s=sigma, scale=math.exp(mu)),
                              _elicit_lognormal),
    "HalfNormal": Distribution(("sigma",), "positive",
                               lambda sigma: stats.halfnorm(scale=sigma), _elicit_halfnormal),
    "Exponential": Distribution(("lam",), "positive",
                                lambda lam: stats.expon(scale=1.0 / lam), _elicit_exponential),
    "Gamma": Distribution(("alpha", "beta"), "positive",
                          lambda alpha, beta: stats.gamma(alpha, scale=1.0 / beta),
                          _elicit_two_tailed(lambda a, b: stats.gamma(a, scale=1.0 / b),
                                             ("alpha", "beta"), (2.0, 1.0))),
    "Beta": Distribution(("alpha", "beta"), "unit",
                         lambda alpha, beta: stats.beta(alpha, beta),
                         _elicit_two_tailed(stats.beta, ("alpha", "beta"), (2.0, 2.0))),
    "Uniform": Distribution(("lower", "upper"), "bounded",
                            lambda lower, upper: stats.uniform(lower, upper - lower), None),
    "Fixed": Distribution(("value",), "point", lambda value: stats.uniform(value, 0.0), None),
}

#: Parameters of a distribution that must be > 0.
_POSITIVE_PARAMS = {"sigma", "alpha", "beta", "lam"}


@dataclass(frozen=True)
class Elicited:
    """What an expert said: ``mass`` of the probability between ``lower`` and ``upper``."""

    lower: float | None
    upper: float
    mass: float


@dataclass(frozen=True)
class Prior:
    """The prior of one model parameter."""

    name: str
    dist: str
    params: dict[str, float]
    reason: str
    elicited: Elicited | None = None

    @property
    def parameter(self) -> Quantity:
        """What the prior is about."""
        return PARAMETERS[self.name]

    def scipy(self) -> Any:
        """The equivalent frozen :mod:`scipy.stats` distribution (for checks and plots)."""
        return DISTRIBUTIONS[self.dist].scipy(**self.params)

    def describe(self) -> str:
        """``"LogNormal(mu=1.498, sigma=0.489): 90% between 2 and 10 minutes"``."""
        params = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())
        text = f"{self.dist}({params})"
        if self.elicited is not None:
            e = self.elicited
            if e.lower is None:
                text += f": {e.mass:.0%} below {e.upper:g} {self.parameter.unit}"
            else:
                text += f": {e.mass:.0%} between {e.lower:g} and {e.upper:g} {self.parameter.unit}"
        return text


@dataclass(frozen=True)
class StrengthMapping:
    """A qualitative strength read as ``failed`` failures out of ``reports`` reports."""

    failed: int
    reports: int


@dataclass(frozen=True)
class Spec:
    """A validated model spec. Build it with :func:`load_spec`."""

    path: Path
    sha256: str  # of this file and every file it extends, in order
    id: str
    title: str
    priors: dict[str, Prior]
    structure: dict[str, Any]
    evidence_strength: dict[str, StrengthMapping]
    evidence_strength_reason: str
    extends: tuple[Path, ...] = field(default_factory=tuple)


# -- loading --------------------------------------------------------------------------------------


def resolve_spec_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A spec given as a path, or as the name of a file in ``models/`` (``"baseline"``)."""
    candidate = Path(name)
    if relative_to is not None and not candidate.is_absolute():
        beside = relative_to.parent / candidate
        if _exists(beside) or (beside.name and _exists(beside.with_suffix(".toml"))):
            candidate = beside
    if not _exists(candidate) and candidate.suffix != ".toml" and candidate.name:
        for option in (candidate.with_suffix(".toml"), MODELS_DIR / f"{candidate.name}.toml"):
            if _exists(option):
                return option
    return candidate


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long for the file system: no such file either
        return False


def load_spec(path: str | Path = "baseline") -> Spec:
    """Read and validate a model spec (following ``extends``), converting elicited priors.

    Raises
    ------
    truecount.errors.InputError
        Naming the file, the field, what was found and what is allowed.

    """
    return _load(resolve_spec_path(path), chain=())


def _load(path: Path, chain: tuple[Path, ...]) -> Spec:
    if path.resolve() in chain:
        raise InputError(path, "extends", "a cycle of specs extending each other",
                         "a chain of extends that ends at a spec without extends")
    top = Fields(read_toml(path, "model spec"), path)
    version = top.req_integer("schema_version")
    if version != SCHEMA_VERSION:
        raise top.error("schema_version", str(version), str(SCHEMA_VERSION))

    parent: Spec | None = None
    extends = top.text("extends", required=False)
    if extends is not None:
        parent_path = resolve_spec_path(extends, relative_to=path)
        if not _exists(parent_path):
            raise top.error("extends", show(extends), "a spec file path, or the name of a file "
                            f"in {MODELS_DIR}", "Check the name.")
        try:
            parent = _load(parent_path, (*chain, path.resolve()))
        except InputError as exc:
            if exc.field or exc.where != str(parent_path):
                raise  # a field of a real spec: its own file and field say where to fix it
            # Not a spec at all (not TOML, unreadable): the mistake is this file's `extends`.
            raise top.error("extends", f"{show(extends)}, which is {exc.found}",
                            "a spec file path, or the name of a file in " + str(MODELS_DIR),
                            "Check the name.") from None

    priors = dict(parent.priors) if parent else {}
    for name, f in top.subtables("priors", required=parent is None).items():
        if name not in PARAMETERS:
            raise f.error("", "an unknown parameter", "one of " + ", ".join(PARAMETERS))
        priors[name] = _parse_prior(name, f)
    missing = [name for name in PARAMETERS if name not in priors]
    if missing:
        raise top.error(f"priors.{missing[0]}", "nothing", "a prior for every model parameter",
                        f"Add [priors.{missing[0]}] ({PARAMETERS[missing[0]].meaning}).")

    structure = dict(parent.structure) if parent else {k: s.choices[0] for k, s in STRUCTURE.items()}
    section = top.table("structure", required=False)
    if section is not None:
        for key in section.data:
            if key not in STRUCTURE:
                raise section.error(key, "an unknown switch", "one of " + ", ".join(STRUCTURE))
            choices = STRUCTURE[key].choices
            structure[key] = (
                section.flag(key) if isinstance(choices[0], bool)
                else section.req_text(key, choices=choices)
            )
        section.finish()

    strength = dict(parent.evidence_strength) if parent else {}
    strength_reason = parent.evidence_strength_reason if parent else ""
    section = top.table("evidence_strength", required=parent is None)
    if section is not None:
        strength_reason = section.req_text("reason")
        for level in EVIDENCE_STRENGTHS:
            sub = section.table(level, required=parent is None)
            if sub is None:
                continue
            reports = sub.req_integer("reports", min=1, max=100_000)
            failed = sub.req_integer("failed", min=0, max=reports)
            sub.finish()
            strength[level] = StrengthMapping(failed, reports)
        section.finish()

    own_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = Spec(
        path=path,
        sha256=hashlib.sha256(((parent.sha256 if parent else "") + own_hash).encode()).hexdigest(),
        id=top.req_text("id"),
        title=top.req_text("title"),
        priors=priors,
        structure=structure,
        evidence_strength=strength,
        evidence_strength_reason=strength_reason,
        extends=((parent.path, *parent.extends)) if parent else (),
    )
    top.finish()
    return spec


#: Where a prior's central 99.8% must lie, by the parameter's support. The model computes in
#: 64-bit floats on the parameters' own scales (minutes, attempts an hour, shares), multiplying
#: and exponentiating them: outside these bounds a prior stops being a belief about a drive and
#: becomes a number the arithmetic cannot carry (a log-normal with sigma 100 overflows, a share of
#: 1e-300 turns every count into 0 behind a passed gate). Every shipped prior is orders of magnitude
#: inside them.
USABLE_RANGE = {"positive": (1e-8, 1e8), "unit": (1e-8, 1.0 - 1e-8)}
#: A prior whose central 99.8% is narrower than this, relative to its size, is a point: the
#: sampler cannot move in it (a Uniform of width 1e-16). Such a belief is ``dist = "Fixed"``.
NARROWEST = 1e-6


def _check_usable(name: str, dist_name: str, params: dict[str, float], f: Fields,
                  elicit: str | None) -> None:
    """Refuse a prior the model cannot use, naming its field (see :data:`USABLE_RANGE`)."""
    parameter = PARAMETERS[name]
    low, high = USABLE_RANGE.get(parameter.support, (-math.inf, math.inf))
    key = elicit or DISTRIBUTIONS[dist_name].params[-1]
    shown = f"{dist_name}({', '.join(f'{k}={v:.4g}' for k, v in params.items())})"
    if dist_name == "Fixed":
        lo = hi = params["value"]
    else:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            lo, hi = (float(q) for q in DISTRIBUTIONS[dist_name].scipy(**params).ppf(
                [0.001, 0.999]))
    where = (f"{shown}, value {lo:.4g}" if dist_name == "Fixed"
             else f"{shown}, with 99.8% of its mass between {lo:.4g} and {hi:.4g}")
    if not (math.isfinite(lo) and math.isfinite(hi) and low <= lo and hi <= high):
        raise f.error(key, where, f"a prior of {name} within {low:.10g} to {high:.10g} {parameter.unit} "
                      "(the range the model's arithmetic can carry)",
                      "Choose parameters that describe a plausible range.")
    if dist_name != "Fixed" and not hi - lo > NARROWEST * max(abs(lo), abs(hi)):
        raise f.error(key, where, f"a prior wider than {NARROWEST:g} of its size (narrower, "
                      "the sampler cannot move)", 'For a known value use dist = "Fixed".')


def _parse_prior(name: str, f: Fields) -> Prior:
    dist_name = f.req_text("dist", choices=DISTRIBUTIONS)
    dist = DISTRIBUTIONS[dist_name]
    support = PARAMETERS[name].support
    compatible = {
        "positive": {"positive", "point"},
        "unit": {"unit", "point", "bounded"},
        "real": {"real", "positive", "point", "bounded"},
    }[support]
    if dist.support not in compatible:
        raise f.error("dist", show(dist_name), f"a distribution on the {support} scale of "
                      f"{name} ({PARAMETERS[name].unit}): " + ", ".join(
                          d for d, v in DISTRIBUTIONS.items() if v.support in compatible))
    reason = f.req_text("reason")

    elicited = None
    table = f.table("elicit", required=False)
    if table is not None:
        if any(f.has(p) for p in dist.params):
            raise f.error("elicit", "both elicit and distribution parameters",
                          "one or the other")
        if dist.elicit is None:
            raise f.error("elicit", f"elicit with {dist_name}", "distribution parameters "
                          f"({', '.join(dist.params)}) for {dist_name}")
        one_sided = dist.params == ("sigma",) or dist.params == ("lam",)
        mass = table.req_number("mass", gt=0.0, lt=1.0)
        upper = table.req_number("upper")
        lower = table.number("lower", required=not one_sided)
        if one_sided and lower is not None:
            raise table.error("lower", show(lower), f"no lower bound for {dist_name} (one "
                              "parameter: give upper and the mass below it)")
        table.finish()
        if lower is not None and not lower < upper:
            raise table.error("upper", show(upper), f"a number above lower ({lower:g})")
        lowest = {"positive": 0.0, "unit": 0.0}.get(dist.support)
        if lowest is not None and (lower if lower is not None else upper) <= lowest:
            raise table.error("lower" if lower is not None else "upper",
                              show(lower if lower is not None else upper),
                              f"a number > 0 for {dist_name}")
        if dist.support == "unit" and upper >= 1.0:
            raise table.error("upper", show(upper), f"a number < 1 for {dist_name}")
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # extreme bounds: the check below speaks instead
                params = dist.elicit(lower, upper, mass)
            if not all(math.isfinite(v) and (v > 0 or k not in _POSITIVE_PARAMS)
                       for k, v in params.items()):
                raise ValueError("parameters out of range")
        except (ValueError, ArithmeticError):
            raise table.error("", f"lower={lower}, upper={upper}, mass={mass}",
                              f"bounds that a {dist_name} can match",
                              "Widen the interval or choose another distribution.") from None
        elicited = Elicited(lower, upper, mass)
    else:
        params = {p: f.req_number(p) for p in dist.params}
        for p, value in params.items():
            if p in _POSITIVE_PARAMS and value <= 0:
                raise f.error(p, show(value), "a number > 0")
        if dist_name == "Uniform" and not params["lower"] < params["upper"]:
            raise f.error("upper", show(params["upper"]), "a number above lower")
        if dist_name in ("Uniform", "Fixed"):
            low = params.get("lower", params.get("value", 0.0))
            high = params.get("upper", params.get("value", 0.0))
            if (support in ("positive", "unit") and low <= 0) or (support == "unit" and high >= 1):
                raise f.error(dist.params[0], show(low), f"values inside the support of {name} "
                              f"({support})")
    _check_usable(name, dist_name, params, f, "elicit" if elicited is not None else None)
    unit = f.text("unit", required=False)  # optional, for the reader; must agree with the model's
    if unit is not None and unit != PARAMETERS[name].unit:
        raise f.error("unit", show(unit), repr(PARAMETERS[name].unit), "The unit is fixed by the "
                      "model; convert the numbers to it or drop the field.")
    f.finish()
    return Prior(name, dist_name, params, reason, elicited)
