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

import fcntl
import glob
import hashlib
import json
import os
import platform
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from truecount.errors import InputError, show
from truecount.inference.diagnostics import GateResult
from truecount.inference.results import Summary
from truecount.inputs._fields import Fields
from truecount.inputs.case import Case, load_case
from truecount.inputs.spec import Spec, load_spec

POSTERIOR = "posterior.nc"
SUMMARY = "summary.json"
DIAGNOSTICS = "diagnostics.csv"
RUN = "run.json"
INPUTS = "inputs"
def _checkout_lock() -> Path | None:
    """The pinned versions of the checkout this package runs from (None when installed)."""
    package = Path(__file__).resolve().parents[1]  # src/truecount in a checkout
    root = package.parents[1]
    if package.parent.name == "src" and (root / "pyproject.toml").is_file():
        return root / "requirements.lock"
    return None


#: The pinned versions of a checkout (an installed wheel has none; run.json then records null).
LOCK_FILE = _checkout_lock()


def check_writable(out: Path, force: bool, marker: str = RUN) -> None:
    """Refuse, before any expensive work, a folder this command may not replace.

    ``out`` may be missing or empty; a non-empty folder is replaced only with ``force`` and only if
    it is one this command writes (it holds ``marker``: ``run.json`` for a run folder), so that
    ``--force`` never deletes a folder of the user's own files.
    """
    absolute, here = Path(os.path.abspath(out)), Path.cwd()
    if absolute == here or absolute in here.parents:  # it would be renamed away under our feet
        raise InputError("--out", "", f"{str(out)!r} (the current folder, or one that holds it)",
                         "a folder of its own", "Give a new folder's name, e.g. --out "
                         "results/NAME.")
    try:
        if out.is_symlink():  # renaming a folder onto a link replaces the link, not its target
            raise InputError("--out", "", f"{str(out)!r} (a link to {os.readlink(out)!r})",
                             "a folder path, not a link", "Give the folder's own path.")
        if out.exists() and not out.is_dir():
            raise InputError("--out", "", f"{str(out)!r} (a file)",
                             "a folder to write the run into")
        if not out.is_dir() or not any(out.iterdir()):
            return
    except OSError as exc:  # a name too long, a folder we may not list
        raise _unwritable(out, exc) from None
    if not force:
        raise InputError("--out", "", f"{str(out)!r} (a folder that is not empty)",
                         "a new or empty folder", "Add --force to replace it, or choose another "
                         "--out.")
    if not (out / marker).is_file():
        raise InputError("--out", "", f"{str(out)!r} (a folder of other files: no {marker} in it)",
                         f"a new or empty folder, or one written by truecount (with {marker})",
                         "truecount replaces or writes into only its own folders; choose another "
                         "--out.")


class Claim:
    """An output folder claimed by this process, from the check before fitting to the final rename.

    Made by :func:`claimed`. On creation it checks ``out`` (:func:`check_writable`), takes a lock
    that another truecount process writing the same folder would hold (``.NAME.lock`` beside it,
    an advisory ``flock`` that the kernel releases when a process dies, so a killed run never
    leaves a lock behind), removes what stopped runs left beside it (``.NAME.partial-PID`` and
    ``.NAME.old-PID`` of processes that no longer exist; an old folder whose replacement never
    arrived is put back), and proves the folder can be written: it creates this run's temporary
    folder and writes a probe file there, and checks the free space against ``need_bytes``.
    """

    def __init__(self, out: Path, force: bool, marker: str, need_bytes: int = 0) -> None:
        self.out, self.force, self.marker = out, force, marker
        self.notes: list[str] = []
        check_writable(out, force, marker)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(out, exc) from None
        self.tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
        self._lock: int | None = self._take_lock()
        try:
            self._clean_leftovers()
            check_writable(out, force, marker)  # a restored folder is checked like any other
            self._probe(need_bytes)
        except BaseException:
            self.release()
            raise

    def _take_lock(self) -> int:
        path = self.out.parent / f".{self.out.name}.lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _unwritable(self.out, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 100, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise InputError("--out", "", f"{str(self.out)!r} (being written by another "
                                 f"truecount, pid {holder})", "a folder no other run is writing",
                                 "Wait for that run to finish, or choose another --out.") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file that its last holder removed while we waited for it
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                return fd
            os.close(fd)

    def _clean_leftovers(self) -> None:
        """Remove what runs killed while writing this folder left beside it (we hold the lock)."""
        parent, name = self.out.parent, self.out.name
        for kind in ("old", "partial"):  # an old folder first: it may be the only copy
            for path in sorted(parent.glob(f".{glob.escape(name)}.{kind}-*")):
                pid = path.name.rsplit("-", 1)[-1]
                # Our own pid on a leftover is an earlier process's, reused: it is not running.
                if not pid.isdigit() or (int(pid) != os.getpid() and _alive(int(pid))):
                    continue
                if kind == "old" and not self.out.exists():
                    path.rename(self.out)
                    self.notes.append(f"restored {self.out} from {path.name}, left by a run "
                                      f"(pid {pid}) stopped while replacing it")
                    continue
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                self.notes.append(f"removed {path}, left by a run (pid {pid}) that was stopped "
                                  "while writing")

    def _probe(self, need_bytes: int) -> None:
        try:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir()
            (self.tmp / ".probe").write_bytes(b"truecount")
            (self.tmp / ".probe").unlink()
            free = shutil.disk_usage(self.tmp).free
        except OSError as exc:
            raise _unwritable(self.out, exc) from None
        if free < need_bytes:
            raise InputError("--out", "", f"{free / 1e6:,.1f} MB free where {str(self.out)!r} "
                             "would be written", f"at least {need_bytes / 1e6:,.1f} MB for the "
                             "outputs of this fit", "Free some space or choose another --out.")

    @contextmanager
    def written_whole(self) -> Iterator[Path]:
        """The temporary folder of this run, renamed to ``out`` when the block ends without error.

        An existing ``out`` is untouched until the block has finished, then replaced (checked
        again first: it may have changed while we fitted). Whatever stops us (an error, a full
        disk, Ctrl-C, the CLI's SIGTERM exception): until the new folder is renamed in, the old
        one stays or goes back; after, the old one is removed. No temporary folder is left.
        """
        out, tmp = self.out, self.tmp
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if not tmp.is_dir():
            tmp.mkdir()
        try:
            yield tmp
            check_writable(out, self.force, self.marker)
            if out.exists():
                out.rename(old)
            tmp.rename(out)
        finally:
            if tmp.exists():
                if old.exists() and not out.exists():
                    old.rename(out)
                shutil.rmtree(tmp, ignore_errors=True)
            if old.exists():
                shutil.rmtree(old, ignore_errors=True)

    def release(self) -> None:
        """Remove the temporary folder if unused and give up the lock (removing its file)."""
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self._lock is not None:
            path = self.out.parent / f".{self.out.name}.lock"
            with suppress(OSError):
                path.unlink()  # before unlocking: a waiting process then sees another inode
            os.close(self._lock)
            self._lock = None


_HELD: dict[Path, Claim] = {}


@contextmanager
def claimed(out: Path, force: bool = False, marker: str = RUN, need_bytes: int = 0,
            say: Callable[[str], Any] | None = None) -> Iterator[Claim]:
    """Claim ``out`` for this process for the duration of the block (see :class:`Claim`).

    Nested claims of the same folder in one process share the outer one (the CLI claims a folder
    before fitting; :func:`write_run` claims it again to write). ``say`` receives the notes
    (leftovers removed or restored).
    """
    key = Path(os.path.abspath(out))
    if key in _HELD:
        yield _HELD[key]
        return
    claim = Claim(out, force, marker, need_bytes)
    for note in claim.notes:
        if say is not None:
            say(note)
    _HELD[key] = claim
    try:
        yield claim
    finally:
        del _HELD[key]
        claim.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _unwritable(out: Path, exc: OSError) -> InputError:
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    return InputError("--out", "", f"{str(out)!r}, which cannot be written: {reason}{where}",
                      "a folder this user can create and write", "Choose another --out.")


def expected_bytes(ds: xr.Dataset, chains: int, draws: int) -> int:
    """A generous estimate of a run folder's size, to check the free space before fitting.

    Per draw the posterior holds about 6 numbers per channel and day (flows, blocking, counts),
    16 per claim, 2 per evidence item and 40 others; the prior group adds one chain's worth. Twice
    that, in 8-byte floats, plus 20 MB for the report and its figures. (KSS, 4 x 2,000 draws:
    7.6 MB written, 37 MB asked for.)
    """
    sizes = ds.sizes
    per_draw = (6 * sizes["channel"] * sizes["day"] + 16 * sizes["claim"]
                + 2 * sizes["evidence"] + 40)
    return int(2 * 8 * per_draw * (chains + 1) * draws + 20e6)


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
                                 "nutpie_version", "jax_version", "blackjax_version",
                                 "arviz_version", "numpy_version")},
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
        "requirements_lock_sha256": (_sha256(LOCK_FILE) if LOCK_FILE is not None
                                     and LOCK_FILE.is_file() else None),
        "packages_sha256": hashlib.sha256(frozen.encode()).hexdigest(),
        "packages": dict(sorted(packages.items())),
    }


def environment_differences(recorded: dict[str, Any] | None) -> list[str]:
    """How the installed environment differs from one recorded in ``run.json`` (empty: same)."""
    if not isinstance(recorded, dict) or not recorded:
        return ["run.json records no environment (a run from an older truecount)"]
    now = environment()
    out = [f"{key}: {recorded.get(key)} at the fit, {now[key]} now"
           for key in ("python", "platform", "requirements_lock_sha256")
           if recorded.get(key) != now[key]]
    old, new = recorded.get("packages"), now["packages"]
    if not isinstance(old, dict):
        return [*out, "run.json records no package versions"]
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
    """Write the run folder whole (``extra(folder)`` adds files, e.g. the report).

    The posterior is serialised in memory and written with ordinary file writes, so a full disk
    is an ``OSError`` (and the temporary folder is removed), not a crash inside the HDF5 library.
    """
    with claimed(out, force, RUN) as claim, claim.written_whole() as tmp:
        tree.attrs.update(gate_passed=int(gate_result.passed), gate_text=gate_result.text,
                          stamp=summary.stamp or "")
        (tmp / POSTERIOR).write_bytes(bytes(tree.to_netcdf(None, engine="h5netcdf")))
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


def read_info(folder: Path) -> dict[str, Any]:
    """``run.json`` of a run folder, with every field a command reads checked like a case file's.

    A folder without ``posterior.nc`` and ``run.json``, a file that is not UTF-8 JSON or not an
    object, and a missing or mistyped field each give one :class:`InputError` naming the file and
    the field. Fields only recorded for people (environment, versions, command) are not checked.
    """
    run_file = folder / RUN
    if not (folder / POSTERIOR).is_file() or not run_file.is_file():
        raise InputError(folder, "", "no posterior.nc and run.json",
                         "a run folder written by `truecount fit`")
    refit = "Refit the case with `truecount fit`."
    try:
        info = json.loads(run_file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(run_file, "", "a file that is not UTF-8 text", "run.json as `truecount "
                         "fit` wrote it", refit) from None
    except json.JSONDecodeError as exc:
        raise InputError(run_file, "", f"invalid JSON ({exc.msg}, line {exc.lineno})",
                         "run.json as `truecount fit` wrote it", refit) from None
    if not isinstance(info, dict):
        raise InputError(run_file, "", f"a JSON {type(info).__name__}", "a JSON object, as "
                         "`truecount fit` wrote it", refit)
    f = Fields(info, run_file)
    for key in ("case_file", "case_sha256", "spec_file", "spec_sha256"):
        f.req_text(key)
    f.str_list("readings")
    f.str_list("spec_files", required=False)
    f.req_integer("seed")
    f.req_integer("draws", min=1)
    f.req_integer("tune", min=0)
    f.req_integer("chains", min=1)
    f.number("target_accept", required=False, gt=0.0, lt=1.0)
    f.text("posterior_sha256", required=False)
    options = f.table("options", required=False)
    if options is not None:
        options.number("mass", required=False, gt=0.0, lt=1.0)
        options.text("interval", required=False, choices=("eti", "hdi"))
        thresholds = options.data.get("thresholds", [])
        if not isinstance(thresholds, list) or not all(
                isinstance(t, int | float) and not isinstance(t, bool) for t in thresholds):
            raise options.error("thresholds", show(thresholds), "an array of numbers")
        options.flag("no_report", required=False)
    return info


def read_summary(folder: Path) -> dict[str, Any]:
    """``summary.json`` of a run folder (what ``rerun`` compares), or one line saying why not."""
    path = folder / SUMMARY
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(path, "", exc.strerror or "unreadable", "the summary `truecount fit` "
                         "wrote", _REFIT.format(folder=folder)) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(path, "", "a file that is not UTF-8 JSON", "the summary `truecount fit` "
                         "wrote", _REFIT.format(folder=folder)) from None
    if not isinstance(data, dict):
        raise InputError(path, "", f"a JSON {type(data).__name__}", "a JSON object",
                         _REFIT.format(folder=folder))
    return data


def open_posterior(folder: Path) -> xr.DataTree:
    """``posterior.nc`` of a run folder, or one line saying it cannot be read."""
    try:
        return xr.open_datatree(folder / POSTERIOR, engine="h5netcdf")
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(folder / POSTERIOR, "", f"a file that cannot be read as NetCDF "
                         f"({type(exc).__name__}: truncated or damaged?)", "the posterior as "
                         "`truecount fit` wrote it", _REFIT.format(folder=folder)) from None


#: What to do about a run folder whose posterior is damaged: rerun cannot help (it compares).
_REFIT = ("Refit with `truecount fit` (the case and spec fitted are copied in {folder}/inputs); "
          "`truecount rerun` needs the original posterior to compare with.")


def load_run(folder: Path) -> tuple[xr.DataTree, Case, Spec, dict[str, Any]]:
    """The posterior, case and spec of a run folder, refusing inputs that changed since the fit."""
    info = read_info(folder)
    run_file = folder / RUN
    case_file, spec_file = Path(info["case_file"]), Path(info["spec_file"])
    if not case_file.is_file():
        raise InputError(run_file, "case_file", f"{str(case_file)!r} (missing)",
                         "the case file of the fit", f"Restore it; a copy is in {folder / INPUTS}.")
    if _sha256(case_file) != info["case_sha256"]:
        raise InputError(run_file, "case_file", f"{str(case_file)!r} changed since the fit",
                         "the case file as it was", f"Refit, or restore it from {folder / INPUTS}.")
    case = _recorded_case(case_file, info, run_file)
    spec = load_spec(spec_file)
    if spec.sha256 != info["spec_sha256"]:
        raise InputError(run_file, "spec_file", f"{str(spec_file)!r} (or a spec it extends) "
                         "changed since the fit", "the spec as it was",
                         f"Refit, or restore it from {folder / INPUTS}.")
    check_posterior(folder, info)
    return open_posterior(folder), case, spec, info


def _recorded_case(path: Path, info: dict[str, Any], run_file: Path) -> Case:
    """The case with the readings ``run.json`` records; a reading it lacks is run.json's fault."""
    try:
        return load_case(path, info["readings"])
    except InputError as exc:
        if exc.where != "--reading":
            raise
        raise InputError(run_file, "readings", exc.found, exc.expected,
                         "run.json records the readings fitted; restore them, or refit.") from None


def check_posterior(folder: Path, info: dict[str, Any]) -> None:
    """Refuse a ``posterior.nc`` whose sha256 is not the one recorded at the fit.

    Runs written before the hash was recorded are opened instead, so a truncated file is still
    one line (:func:`open_posterior`), never a traceback.
    """
    expected = info.get("posterior_sha256")
    if expected is None:
        open_posterior(folder).close()
        return
    if _sha256(folder / POSTERIOR) != expected:
        raise InputError(folder / POSTERIOR, "", "a file whose sha256 differs from run.json's "
                         "(changed or truncated since the fit)", "the posterior as written",
                         _REFIT.format(folder=folder))


def rerun_inputs(folder: Path) -> tuple[Case, Spec, dict[str, Any], list[str]]:
    """The case and spec a run was fitted with, from its ``inputs/`` copies, and notes.

    The copies are the exact files fitted (their hashes are checked against ``run.json``); the
    notes say whether the original files have changed or gone since.
    """
    info = read_info(folder)
    run_file = folder / RUN
    check_posterior(folder, info)
    case_copy = folder / INPUTS / Path(info["case_file"]).name
    spec_copy = folder / INPUTS / Path(info["spec_file"]).name
    if not case_copy.is_file() or _sha256(case_copy) != info["case_sha256"]:
        raise InputError(case_copy, "", "missing or changed since the fit",
                         "the copy of the case file written by `truecount fit`")
    case = _recorded_case(case_copy, info, run_file)
    spec = load_spec(spec_copy)
    if spec.sha256 != info["spec_sha256"]:
        raise InputError(spec_copy, "", "a spec (or a spec it extends) that differs from the "
                         "fitted one", "the copies written by `truecount fit`")
    notes = []
    original = Path(info["case_file"])
    if not original.is_file():
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
    # A field that a newer truecount added to the summary, empty now, is not a changed number.
    added = {k for k, v in new_summary.items() if k not in old_summary and not v}
    diffs = [f"summary {key}: {a!r} then, {b!r} now"
             for key, a, b in _flat_differences(old_summary, {k: v for k, v in new_summary.items()
                                                              if k not in added}, "")]
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
