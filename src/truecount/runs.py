"""Run folders: where a fit's outputs are written, whole or not at all.

A run folder holds ``posterior.nc`` (the DataTree as NetCDF-4), ``summary.json`` (the headline and
the gate's verdict), ``diagnostics.csv`` (the gate's table), ``run.json`` (what was run: inputs with
their paths and hashes, options, versions), ``inputs/`` (copies of the case and spec files) and the
report. It is written in a temporary folder beside the target and renamed into place, so an
interrupted write leaves the old folder (or none), never half of one. An existing, non-empty folder
is replaced only with ``force``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from truecount.case import Case, load_case
from truecount.diagnostics import GateResult
from truecount.errors import InputError
from truecount.results import Summary
from truecount.spec import Spec, load_spec

POSTERIOR = "posterior.nc"
SUMMARY = "summary.json"
DIAGNOSTICS = "diagnostics.csv"
RUN = "run.json"
INPUTS = "inputs"


def check_writable(out: Path, force: bool) -> None:
    """Refuse, before any expensive work, to overwrite a non-empty folder without ``force``."""
    if out.exists() and not out.is_dir():
        raise InputError("--out", "", f"{str(out)!r} (a file)", "a folder to write the run into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError("--out", "", f"{str(out)!r} (a folder that is not empty)",
                         "a new or empty folder", "Add --force to replace it, or choose another "
                         "--out.")


def run_info(case: Case, spec: Spec, tree: xr.DataTree, command: list[str]) -> dict[str, Any]:
    """What ``run.json`` records: enough to rerun the fit and to check its inputs later."""
    a = tree.attrs
    return {
        "command": command,
        "case_file": str(case.path.resolve()),
        "case_sha256": case.sha256,
        "readings": list(case.applied_readings),
        "spec_file": str(spec.path.resolve()),
        "spec_files": [str(p.resolve()) for p in (spec.path, *spec.extends)],
        "spec_sha256": spec.sha256,
        **{k: a.get(k) for k in ("seed", "draws", "tune", "chains", "target_accept", "sampler",
                                 "truecount_version", "pymc_version", "pytensor_version",
                                 "nutpie_version", "arviz_version", "numpy_version")},
    }


def write_run(out: Path, tree: xr.DataTree, summary: Summary, gate_result: GateResult,
              info: dict[str, Any], force: bool = False,
              extra: Callable[[Path], Any] | None = None) -> Path:
    """Write the run folder atomically (``extra(folder)`` adds files, e.g. the report)."""
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
        (tmp / RUN).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        (tmp / INPUTS).mkdir()
        for name in [info["case_file"], *info["spec_files"]]:
            source = Path(name)
            target = tmp / INPUTS / source.name
            if not target.exists():
                shutil.copy2(source, target)
        if extra is not None:
            extra(tmp)
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


def load_run(folder: Path) -> tuple[xr.DataTree, Case, Spec, dict[str, Any]]:
    """The posterior, case and spec of a run folder, refusing inputs that changed since the fit."""
    run_file = folder / RUN
    if not (folder / POSTERIOR).exists() or not run_file.exists():
        raise InputError(folder, "", "no posterior.nc and run.json",
                         "a run folder written by `truecount fit`")
    info = json.loads(run_file.read_text(encoding="utf-8"))
    case_file, spec_file = Path(info["case_file"]), Path(info["spec_file"])
    if not case_file.exists():
        raise InputError(run_file, "case_file", f"{str(case_file)!r} (missing)",
                         "the case file of the fit", f"Restore it; a copy is in {folder / INPUTS}.")
    if hashlib.sha256(case_file.read_bytes()).hexdigest() != info["case_sha256"]:
        raise InputError(run_file, "case_file", f"{str(case_file)!r} changed since the fit",
                         "the case file as it was", f"Refit, or restore it from {folder / INPUTS}.")
    case = load_case(case_file, info["readings"])
    spec = load_spec(spec_file)
    if spec.sha256 != info["spec_sha256"]:
        raise InputError(run_file, "spec_file", f"{str(spec_file)!r} (or a spec it extends) "
                         "changed since the fit", "the spec as it was",
                         f"Refit, or restore it from {folder / INPUTS}.")
    tree = xr.open_datatree(folder / POSTERIOR, engine="h5netcdf")
    return tree, case, spec, info
