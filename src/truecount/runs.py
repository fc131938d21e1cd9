"""Run folders: where a fit's outputs are written, whole or not at all.

A run folder holds ``posterior.nc`` (the DataTree as NetCDF-4), ``summary.json`` (the headline
results and the gate's verdict) and ``diagnostics.csv`` (the gate's table). It is written in a
temporary folder beside the target and renamed into place, so an interrupted write leaves the old
folder (or none), never half of one. An existing, non-empty folder is replaced only with ``force``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import xarray as xr

from truecount.diagnostics import GateResult
from truecount.errors import InputError
from truecount.results import Summary

POSTERIOR = "posterior.nc"
SUMMARY = "summary.json"
DIAGNOSTICS = "diagnostics.csv"


def check_writable(out: Path, force: bool) -> None:
    """Refuse, before any expensive work, to overwrite a non-empty folder without ``force``."""
    if out.exists() and not out.is_dir():
        raise InputError("--out", "", f"{str(out)!r} (a file)", "a folder to write the run into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError("--out", "", f"{str(out)!r} (a folder that is not empty)",
                         "a new or empty folder", "Add --force to replace it, or choose another "
                         "--out.")


def write_run(out: Path, tree: xr.DataTree, summary: Summary, gate_result: GateResult,
              force: bool = False) -> Path:
    """Write the run folder atomically; return its path."""
    check_writable(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        tree.attrs.update(gate_passed=int(gate_result.passed), gate_text=gate_result.text,
                          stamp=summary.stamp or "")
        tree.to_netcdf(tmp / POSTERIOR, engine="h5netcdf")
        (tmp / SUMMARY).write_text(json.dumps(summary.to_dict(), indent=2) + "\n",
                                   encoding="utf-8")
        gate_result.table.to_csv(tmp / DIAGNOSTICS, index_label="quantity")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
