"""A case as the model reads it: its inputs (one dataset) and the structure that fixes the graph.

:func:`model_inputs` turns a case dataset (:meth:`truecount.inputs.case.Case.to_dataset`) into the
numeric arrays the model reads, each with its dimensions: the PyMC model makes one data container
of each (:func:`truecount.model.build.build_model`), so a compiled model can be refitted to another
case of the same structure by passing new values; NumPy evaluates the same equations on them.
:func:`model_structure` is what a refit cannot change: which claims are unclear, whether there is
evidence, the spec's switches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from truecount.inputs.spec import Spec
from truecount.quantities import CHANNEL_KINDS, FUNNEL, PARAMETERS

#: Kinds of channel whose callers queue (Erlang-A) rather than being lost at once.
QUEUE_KINDS = ("call_centre", "walk_in")
#: Where each "counts" / "presented_as" value of a claim sits on the funnel.
_FUNNEL_OF = {"registrations": 0, "turned_up": 0, "answered": 1, "attempts": 2}


def model_structure(ds: xr.Dataset, spec: Spec) -> dict[str, Any]:
    """What fixes the model's graph: unclear claims, evidence, the spec's switches.

    Not the line counts: the model reads them as data (:func:`truecount.model.build.log_erlang_b`).
    """
    mixture = spec.structure["unclear_claims"] == "mixture"
    present = {str(k) for k in ds.channel_kind.values}
    return {
        "kinds": tuple(k for k in CHANNEL_KINDS if k in present),
        "unclear": tuple(bool(mixture and c == "unclear") for c in ds.claim_counts.values),
        "demand": spec.structure["demand"],
        "honest_claims": bool(spec.structure["honest_claims"]),
        "inflation": spec.structure["inflation"],
        "has_evidence": ds.sizes["evidence"] > 0,
        # Walk-in desks whose number is a range: the count is a parameter of the model.
        "servers_range": bool(("servers_upper" in ds)
                              and (ds.servers_upper.values > ds.servers.values).any()),
    }


def needs_parameter(name: str, structure: dict[str, Any]) -> bool:
    """Whether the model of ``structure`` has the sampled parameter ``name``.

    A per-channel parameter exists only if the case has a channel of a kind it describes
    (:attr:`truecount.quantities.Quantity.kinds`), and one tied to a structure switch only with
    its choice (:attr:`truecount.quantities.Quantity.when`).
    """
    needs: dict[str, bool] = {
        "daily_retention": structure["demand"] == "decaying",
        "honest_probability": bool(structure["honest_claims"]),
        "counts_attempts_probability": any(structure["unclear"]),
        "report_bias_odds": bool(structure["has_evidence"]),
        "servers_position": bool(structure.get("servers_range", False)),
    }
    quantity = PARAMETERS.get(name)
    kinds = quantity.kinds if quantity else CHANNEL_KINDS
    switched = quantity is None or quantity.switched_on(structure)
    return needs.get(name, True) and switched and any(k in structure["kinds"] for k in kinds)


def model_inputs(ds: xr.Dataset, spec: Spec) -> xr.Dataset:
    """The arrays the model of ``ds`` under ``spec`` reads, with their dimensions.

    Only what the structure uses: ``open_day_index`` (each day's index among its channel's open
    days) with decaying demand, the ``evidence_*`` arrays with evidence, ``channel_is_form`` (1
    for an online form) when the case mixes forms with other kinds, ``channel_is_queue`` (1 for a
    call centre or walk-in desks) when it mixes queues and phone lines, ``channel_is_walk_in``
    when it mixes walk-in desks and call centres, ``servers_log_span`` (the log of the most desks
    over the fewest; 0 where the count is known) when a walk-in channel's count is a range. An
    online form's ``servers`` is 1,
    a placeholder the equations never use, so that the Erlang-B arithmetic of the lines, computed
    for every channel and then masked, stays finite (its gradient too). Evidence given as a
    strength ("many") takes its counts from the spec's ``[evidence_strength]`` mapping.
    """
    structure = model_structure(ds, spec)
    open_hours = ds.open_hours.values.astype(float)
    quantity = np.zeros((ds.sizes["claim"], len(FUNNEL)))
    for k, (counts, presented) in enumerate(zip(ds.claim_counts.values, ds.claim_presented_as.values,
                                                strict=True)):
        quantity[k, _FUNNEL_OF[presented if counts == "unclear" else counts]] = 1.0
    cd = ("channel", "day")
    data: dict[str, Any] = {
        "servers": ("channel", np.maximum(ds.servers.values, 1).astype(np.int64)),
        "open_hours": (cd, open_hours),
    }
    kinds = structure["kinds"]
    if len(kinds) > 1 and "online_form" in kinds:
        data["channel_is_form"] = ("channel", (ds.channel_kind.values == "online_form")
                                   .astype(float))
    kind_of = ds.channel_kind.values
    if "phone_lines" in kinds and ("call_centre" in kinds or "walk_in" in kinds):
        data["channel_is_queue"] = ("channel", np.isin(kind_of, QUEUE_KINDS).astype(float))
    if "call_centre" in kinds and "walk_in" in kinds:
        data["channel_is_walk_in"] = ("channel", (kind_of == "walk_in").astype(float))
    if structure["servers_range"]:
        span = np.log(ds.servers_upper.values / np.maximum(ds.servers.values, 1))
        data["servers_log_span"] = ("channel", np.where(kind_of == "walk_in", span, 0.0))
    if structure["demand"] == "decaying":
        is_open = open_hours > 0
        data["open_day_index"] = (cd, np.where(is_open, np.cumsum(is_open, axis=1) - 1, 0)
                                  .astype(float))
    channels = [str(c) for c in ds.channel.values]
    about = [str(c) for c in ds.claim_channel.values]  # "" for a claim about every channel
    claim_channels = np.array([[1.0 if a in ("", c) else 0.0 for c in channels] for a in about])
    data.update(
        claim_exposure=(("claim", *cd), ds.claim_exposure.values.astype(float)),
        claim_channels=(("claim", "channel"), claim_channels),
        claim_value=("claim", ds.claim_value.values.astype(float)),
        claim_rounding=("claim", ds.claim_rounding.values.astype(float)),
        claim_quantity=(("claim", "quantity"), quantity),
    )
    if structure["has_evidence"]:
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
            channel_of[j, channels.index(ch)] = 1.0
        data.update(
            evidence_failed=("evidence", np.asarray(failed, dtype=np.int64)),
            evidence_reports=("evidence", np.asarray(reports, dtype=np.int64)),
            evidence_channel=(("evidence", "channel"), channel_of),
        )
    coords = {name: ds[name].values for name in ("channel", "claim", "evidence")}
    coords["day"] = np.array([str(d)[:10] for d in ds.day.values])
    coords["quantity"] = np.array(FUNNEL)
    return xr.Dataset(data, coords=coords, attrs=dict(ds.attrs))


def channel_kinds(inputs: xr.Dataset | dict[str, Any], structure: dict[str, Any]) -> list[str]:
    """Each channel's kind, from the model's inputs and structure (what the equations see)."""
    kinds = structure["kinds"]
    served = [k for k in kinds if k != "online_form"]
    flags = {name: np.asarray(inputs[name]) > 0.5
             for name in ("channel_is_form", "channel_is_queue", "channel_is_walk_in")
             if name in inputs}
    out = []
    for i in range(len(np.asarray(inputs["servers"]))):
        if not served or ("channel_is_form" in flags and flags["channel_is_form"][i]):
            out.append("online_form")
            continue
        candidates = served
        if "channel_is_queue" in flags:
            candidates = [k for k in candidates if (k in QUEUE_KINDS) == flags["channel_is_queue"][i]]
        if "channel_is_walk_in" in flags:
            candidates = [k for k in candidates if (k == "walk_in")
                          == flags["channel_is_walk_in"][i]]
        out.append(candidates[0])
    return out


def arrays(inputs: xr.Dataset) -> dict[str, np.ndarray]:
    """The inputs as plain arrays by name (what the NumPy equations read)."""
    return {str(name): array.values for name, array in inputs.data_vars.items()}
