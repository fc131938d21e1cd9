"""Inference: sample a built model and assemble one :class:`xarray.DataTree` of everything.

:func:`fit` samples with nutpie (PyMC's own NUTS where nutpie is missing), then draws the prior, the
prior predictive and the posterior predictive, adds the derived quantities analysts quote
(:func:`add_derived`), and records in the tree's attributes the versions, the seed and the hashes of
the case and spec, so that a saved posterior says where it came from.

Groups of the returned tree: ``posterior``, ``sample_stats``, ``prior``, ``prior_predictive``,
``posterior_predictive``, ``observed_data``, ``constant_data``.
"""

from __future__ import annotations

import os
import time
import warnings
from importlib.metadata import version
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from truecount.errors import TruecountError
from truecount.model import model_info
from truecount.simulate import claims_from_funnel, realize_counts

#: Samplers :func:`fit` knows, preferred first.
SAMPLERS = ("nutpie", "pymc")


class SamplingError(TruecountError):
    """The sampler could not run (initialisation failed, a numerical error, too few draws)."""


def fit(model: pm.Model, *, draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 0,
        cores: int | None = None, sampler: str = "nutpie", target_accept: float = 0.95,
        progress: bool = False) -> xr.DataTree:
    """Sample ``model`` and return prior, predictive and posterior draws in one DataTree.

    Parameters
    ----------
    model
        From :func:`truecount.model.build_model`.
    draws, tune, chains
        Kept draws and tuning steps per chain, and the number of chains (passed to the sampler
        explicitly: nutpie's own defaults differ).
    seed
        Seeds the sampler, the prior and predictive draws and the derived counts: the same model,
        seed and environment give the same numbers.
    cores
        Chains run in parallel on this many cores (default: all, at most ``chains``).
    sampler
        ``"nutpie"`` (default) or ``"pymc"``; nutpie falls back to PyMC's NUTS if not installed.
    target_accept
        NUTS target acceptance; 0.95 because the claims' mixture has a narrow honest component.
    progress
        Show the sampler's progress bar.
    """
    if draws < 4 or chains < 1 or tune < 0:
        raise SamplingError(f"draws must be >= 4 and chains >= 1 (got draws={draws}, "
                            f"chains={chains}, tune={tune})")
    cores = min(chains, cores or os.cpu_count() or 1)
    if sampler == "nutpie":
        try:
            import nutpie
        except ImportError:  # pragma: no cover - nutpie is a dependency
            sampler = "pymc"
    start = time.perf_counter()
    try:
        if sampler == "nutpie":
            compiled = nutpie.compile_pymc_model(model)
            compiled_at = time.perf_counter()
            idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                                  seed=seed, progress_bar=progress, target_accept=target_accept,
                                  save_warmup=False)
        else:
            compiled_at = start
            with model:
                idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                                  random_seed=seed, nuts_sampler="pymc", progressbar=progress,
                                  target_accept=target_accept, compute_convergence_checks=False)
        sampled_at = time.perf_counter()
        with model, warnings.catch_warnings():
            # The claims enter as a Potential, which predictive sampling skips by design: their
            # replicates are drawn by the simulator in add_derived.
            warnings.filterwarnings("ignore", message="The effect of Potentials")
            prior = pm.sample_prior_predictive(draws=draws, random_seed=seed + 1)
            predictive = pm.sample_posterior_predictive(idata, random_seed=seed + 2,
                                                        progressbar=False)
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        raise SamplingError(f"sampling failed: {exc}") from exc
    tree = xr.DataTree()
    for name in ("posterior", "sample_stats"):
        tree[name] = idata[name]
    for name in ("prior", "prior_predictive"):
        tree[name] = prior[name]
    for name in ("posterior_predictive", "observed_data", "constant_data"):
        if name in predictive.children:
            tree[name] = predictive[name]
    rng = np.random.default_rng([seed, 3])
    constant = _constants(model)
    for group, predictive_group in (("posterior", "posterior_predictive"),
                                    ("prior", "prior_predictive")):
        derived, claims = add_derived(tree[group].to_dataset(), constant, model, rng)
        tree[group] = xr.DataTree(derived)
        tree[predictive_group] = xr.DataTree(
            tree[predictive_group].to_dataset().assign(claim_value=claims))
    attrs: dict[str, Any] = dict(model_info(model).attrs)
    attrs.update(
        truecount_version=_version("truecount"), pymc_version=_version("pymc"),
        pytensor_version=_version("pytensor"), arviz_version=_version("arviz"),
        arviz_stats_version=_version("arviz-stats"), nutpie_version=_version("nutpie"),
        numpy_version=np.__version__, sampler=sampler, seed=seed, draws=draws, tune=tune,
        chains=chains, target_accept=target_accept,
        compile_seconds=round(compiled_at - start, 3),
        sample_seconds=round(sampled_at - compiled_at, 3),
        total_seconds=round(time.perf_counter() - start, 3),
    )
    tree.attrs.update(attrs)
    return tree


def add_derived(draws: xr.Dataset, constant: dict[str, np.ndarray], model: pm.Model,
                rng: np.random.Generator) -> tuple[xr.Dataset, xr.DataArray]:
    """Add the quantities analysts quote to a group of draws, and draw replicated claims.

    Added: ``true_enrolments(channel, day)`` ~ Poisson(``expected_enrolments``),
    ``true_enrolments_total``, ``true_at_claim(claim)`` (days partly before a claim thinned
    binomially), ``inflation_factor(claim)`` = claim / true count at its date (at least one
    enrolment), and ``claim_possible(claim)``: whether the claim fits the channel's capacity before
    its date (every attended line busy, every answered call an enrolment). Returns the extended
    draws and replicated claim values (posterior or prior predictive), drawn by the simulator.
    """
    sample_dims = ("chain", "draw")
    expected = draws["expected_enrolments"].transpose(*sample_dims, "channel", "day")
    counts, at_claim = realize_counts(expected.values, constant["claim_exposure"], rng)
    y = constant["claim_value"]
    dims_cd = (*sample_dims, "channel", "day")
    out = draws.assign(
        true_enrolments=(dims_cd, counts),
        true_enrolments_total=(sample_dims, counts.sum(axis=(-1, -2))),
        true_at_claim=((*sample_dims, "claim"), at_claim),
        inflation_factor=((*sample_dims, "claim"), y / np.maximum(at_claim, 1)),
        claim_possible=((*sample_dims, "claim"),
                        y <= draws["capacity_at_claim"].transpose(*sample_dims, "claim").values),
    )
    funnel = draws["funnel_at_claim"].transpose(*sample_dims, "claim", "quantity").values.copy()
    funnel[..., 0] = at_claim
    info = model_info(model)
    params = {name: draws[name].values for name in ("honest_probability",
                                                    "counts_attempts_probability", "claim_noise")
              if name in draws}
    values, _, _ = claims_from_funnel(
        funnel, constant["claim_quantity"], np.asarray(info.structure["unclear"]),
        constant["claim_rounding"], params, info.spec, info.structure["honest_claims"], rng)
    claims = xr.DataArray(values, dims=(*sample_dims, "claim"),
                          coords={"claim": draws["claim"].values})
    return out, claims


def _constants(model: pm.Model) -> dict[str, np.ndarray]:
    return {name: np.asarray(model[name].get_value()) for name in
            ("claim_exposure", "claim_value", "claim_quantity", "claim_rounding")}


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:  # pragma: no cover - only for packages missing from the environment
        return "not installed"
