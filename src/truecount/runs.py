"""Run folders: where a fit's outputs are written, whole or not at all.

A run folder holds ``posterior.nc`` (the DataTree as NetCDF-4), ``summary.json`` (the headline and
the gate's verdict), ``diagnostics.csv`` (the gate's table), ``run.json`` (what was run: inputs with
their paths and hashes, options, versions), ``inputs/`` (copies of the case and spec files) and the
report. It is written in a temporary folder beside the target and renamed into place, so an
interrupted write leaves the old folder (or none), never half of one. An existing, non-empty folder
is replaced only with ``force``.

``run.json`` also records what a rerun needs (options, Python, platform, the hash of
``requirements.lock`` and every installed package's version) and the sha256 of ``posterior.nc``,
which :func:`load_run` checks. :func:`rerun_inputs` reads the case and spec back from ``inputs/``
(the exact files fitted) and :func:`compare` lists every number of two runs that differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
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
LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements.lock"


def check_writable(out: Path, force: bool) -> None:
    """Refuse, before any expensive work, to overwrite a non-empty folder without ``force``."""
    if out.exists() and not out.is_dir():
        raise InputError("--out", "", f"{str(out)!r} (a file)", "a folder to write the run into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError("--out", "", f"{str(out)!r} (a folder that is not empty)",
                         "a new or empty folder", "Add --force to replace it, or choose another "
                         "--out.")


def run_info(case: Case, spec: Spec, tree: xr.DataTree, command: list[str],
             options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``run.json`` records: enough to rerun the fit and to check its inputs later.

    ``options`` are the command's other settings that shape the outputs (interval mass and kind,
    thresholds, ``allow_unconverged``, ``no_report``); :func:`write_run` adds the posterior's hash.
    """
    a = tree.attrs
    return {
        "command": command,
        "options": dict(options or {}),
        "case_file": str(case.path.resolve()),
        "case_sha256": case.sha256,
        "readings": list(case.applied_readings),
        "spec_file": str(spec.path.resolve()),
        "spec_files": [str(p.resolve()) for p in (spec.path, *spec.extends)],
        "spec_sha256": spec.sha256,
        **{k: a.get(k) for k in ("seed", "draws", "tune", "chains", "target_accept", "sampler",
                                 "truecount_version", "pymc_version", "pytensor_version",
                                 "nutpie_version", "arviz_version", "numpy_version")},
        "environment": environment(),
    }


def environment() -> dict[str, Any]:
    """Python, platform, the lock file's hash and every installed distribution's version."""
    # Only the environment's own site-packages, as `pip freeze` lists them: once some libraries
    # import setuptools, its vendored packages join sys.path and would change the list.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    packages = {}
    for dist in metadata.distributions(path=site):
        name = dist.metadata["Name"]
        if name:
            packages[name.lower().replace("_", "-")] = dist.version
    frozen = "\n".join(f"{k}=={v}" for k, v in sorted(packages.items()))
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "requirements_lock_sha256": _sha256(LOCK_FILE) if LOCK_FILE.is_file() else None,
        "packages_sha256": hashlib.sha256(frozen.encode()).hexdigest(),
        "packages": dict(sorted(packages.items())),
    }


def environment_differences(recorded: dict[str, Any] | None) -> list[str]:
    """How the installed environment differs from one recorded in ``run.json`` (empty: same)."""
    if not recorded:
        return ["run.json records no environment (a run from an older truecount)"]
    now = environment()
    out = [f"{key}: {recorded.get(key)} at the fit, {now[key]} now"
           for key in ("python", "platform", "requirements_lock_sha256")
           if recorded.get(key) != now[key]]
    old, new = recorded.get("packages", {}), now["packages"]
    for name in sorted({*old, *new}):
        if old.get(name) != new.get(name):
            out.append(f"{name}: {old.get(name, 'not installed')} at the fit, "
                       f"{new.get(name, 'not installed')} now")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_run(out: Path, tree: xr.DataTree, summary: Summary, gate_result: GateResult,
              info: dict[str, Any], force: bool = False,
              extra: Callable[[Path], Any] | None = None) -> Path:
    """Write the run folder atomically (``extra(folder)`` adds files, e.g. the report)."""
    check_writable(out, force)
    with written_whole(out) as tmp:
        tree.attrs.update(gate_passed=int(gate_result.passed), gate_text=gate_result.text,
                          stamp=summary.stamp or "")
        tree.to_netcdf(tmp / POSTERIOR, engine="h5netcdf")
        info = {**info, "posterior_sha256": _sha256(tmp / POSTERIOR)}
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
    return out


@contextmanager
def written_whole(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write into, renamed to ``out`` when the block ends.

    An existing ``out`` is untouched until the block has finished without error, then replaced.
    Whatever stops us (an error, Ctrl-C, the CLI's SIGTERM exception): until the new folder is
    renamed in, the old one goes back; after, the old one is removed. No temporary folder is left.
    The caller checks ``--force`` first (:func:`check_writable`).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    finally:
        if tmp.exists():
            if old.exists() and not out.exists():
                old.rename(out)
            shutil.rmtree(tmp)
        if old.exists():
            shutil.rmtree(old)


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
    check_posterior(folder, info)
    tree = xr.open_datatree(folder / POSTERIOR, engine="h5netcdf")
    return tree, case, spec, info


def check_posterior(folder: Path, info: dict[str, Any]) -> None:
    """Refuse a ``posterior.nc`` whose sha256 is not the one recorded at the fit."""
    expected = info.get("posterior_sha256")
    if expected is None:  # runs written before the hash was recorded
        return
    if _sha256(folder / POSTERIOR) != expected:
        raise InputError(folder / POSTERIOR, "", "a file whose sha256 differs from run.json's "
                         "(changed or truncated since the fit)", "the posterior as written",
                         "Refit, or rerun it with `truecount rerun`.")


def rerun_inputs(folder: Path) -> tuple[Case, Spec, dict[str, Any], list[str]]:
    """The case and spec a run was fitted with, from its ``inputs/`` copies, and notes.

    The copies are the exact files fitted (their hashes are checked against ``run.json``); the
    notes say whether the original files have changed or gone since.
    """
    run_file = folder / RUN
    if not run_file.exists() or not (folder / POSTERIOR).exists():
        raise InputError(folder, "", "no posterior.nc and run.json",
                         "a run folder written by `truecount fit`")
    info = json.loads(run_file.read_text(encoding="utf-8"))
    check_posterior(folder, info)
    case_copy = folder / INPUTS / Path(info["case_file"]).name
    spec_copy = folder / INPUTS / Path(info["spec_file"]).name
    if not case_copy.exists() or _sha256(case_copy) != info["case_sha256"]:
        raise InputError(case_copy, "", "missing or changed since the fit",
                         "the copy of the case file written by `truecount fit`")
    case = load_case(case_copy, info["readings"])
    spec = load_spec(spec_copy)
    if spec.sha256 != info["spec_sha256"]:
        raise InputError(spec_copy, "", "a spec (or a spec it extends) that differs from the "
                         "fitted one", "the copies written by `truecount fit`")
    notes = []
    original = Path(info["case_file"])
    if not original.exists():
        notes.append(f"the case file {original} is gone; refitting the copy in {folder / INPUTS}")
    elif _sha256(original) != info["case_sha256"]:
        notes.append(f"the case file {original} changed since the fit; refitting the copy in "
                     f"{folder / INPUTS}")
    try:
        spec_changed = load_spec(info["spec_file"]).sha256 != info["spec_sha256"]
    except InputError:
        spec_changed = True
    if spec_changed:
        notes.append(f"the spec {info['spec_file']} (or a spec it extends) changed or is gone "
                     f"since the fit; refitting the copies in {folder / INPUTS}")
    return case, spec, info, notes


def compare(old_summary: dict[str, Any], new_summary: dict[str, Any], old: xr.DataTree,
            new: xr.DataTree, names: tuple[str, ...]) -> list[str]:
    """Every difference between two runs: summary numbers, then posterior draws of ``names``.

    Empty when every number of the summary and every draw of every quantity is identical.
    """
    diffs = [f"summary {key}: {a!r} then, {b!r} now"
             for key, a, b in _flat_differences(old_summary, new_summary, "")]
    post_old, post_new = old["posterior"].to_dataset(), new["posterior"].to_dataset()
    for name in names:
        if name not in post_old and name not in post_new:
            continue
        if name not in post_old or name not in post_new:
            diffs.append(f"posterior {name}: in only one of the runs")
            continue
        a, b = post_old[name].values, post_new[name].values
        if a.shape != b.shape:
            diffs.append(f"posterior {name}: shape {a.shape} then, {b.shape} now")
        elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            changed = int(np.sum(a != b))
            gap = float(np.nanmax(np.abs(a.astype(float) - b.astype(float))))
            diffs.append(f"posterior {name}: {changed} of {a.size} draws differ (largest "
                         f"difference {gap:.6g})")
    return diffs


def _flat_differences(a: Any, b: Any, key: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted({*a, *b}, key=str)
                for d in _flat_differences(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _flat_differences(x, y, f"{key}[{i}]")]
    both_nan = isinstance(a, float) and isinstance(b, float) and a != a and b != b
    return [] if (a == b and type(a) is type(b)) or both_nan else [(key, a, b)]
