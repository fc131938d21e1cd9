"""Nothing a user wrote or computed is lost: output folders, concurrent runs, full disks, run.json.

Each test reproduces a failure found by probing the command line (issue 12) and failed before the
fix: ``--force`` on a folder of the user's own files, two runs writing one folder, a folder that
cannot be written, a full disk, what killed runs leave behind, and damaged run folders given to
``report`` and ``rerun``. Everything here is refused before any fitting, so no test samples.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from test_reproducibility import _fake_run, _leftovers
from truecount.cli import main
from truecount.errors import InputError
from truecount.outputs.runs import POSTERIOR, RUN, SUMMARY, claimed, write_run


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("truecount: error: "), err
    return lines[0]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- --force replaces only truecount's own folders ------------------------------------------------


def test_force_never_deletes_a_folder_that_is_not_a_run_folder(capsys, tmp_path, kss_path):
    folder = tmp_path / "work"
    folder.mkdir()
    case = folder / "case.toml"
    shutil.copy(kss_path, case)
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    code, out, err = run(capsys, "fit", case, "--out", folder, "--force")
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert "no run.json in it" in line and "writes into only its own folders" in line
    assert sorted(p.name for p in folder.iterdir()) == ["case.toml", "notes.txt"]


def test_force_never_deletes_a_folder_that_is_not_a_sensitivity_folder(capsys, tmp_path, kss_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    code, _, err = run(capsys, "sensitivity", kss_path, "--out", folder, "--force")
    assert code == 2 and "no sensitivity.json in it" in _one_error_line(err)
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"


# -- two runs never write one folder at once -------------------------------------------------------


HOLD = """
import sys, time
from pathlib import Path
from truecount.outputs.runs import claimed
with claimed(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_writes(capsys, tmp_path,
                                                                           kss_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for force in ([], ["--force"]):
            code, out_text, err = run(capsys, "fit", kss_path, "--out", out, *force)
            assert code == 2 and out_text == ""
            line = _one_error_line(err)
            assert f"being written by another truecount, pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # The kernel releases a dead holder's lock: the folder can be claimed at once.
    with claimed(out) as claim:
        assert claim.tmp.is_dir()
    assert _leftovers(tmp_path) == []


def test_the_final_rename_refuses_a_folder_that_appeared_during_the_fit(tmp_path, kss_path,
                                                                        baseline_path):
    out = tmp_path / "run"
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)

    def someone_else_writes(folder: Path) -> None:
        out.mkdir()
        (out / "theirs.txt").write_text("theirs", encoding="utf-8")

    with pytest.raises(InputError, match="not empty"):
        write_run(out, tree, summary, verdict, info, extra=someone_else_writes)
    assert sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert _leftovers(tmp_path) == []


# -- a folder that cannot be written is refused before fitting -------------------------------------


def test_out_under_a_regular_file_is_refused_before_fitting(capsys, tmp_path, kss_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    code, _, err = run(capsys, "fit", kss_path, "--out", blocker / "run")
    assert code == 2
    line = _one_error_line(err)
    assert "cannot be written" in line and "Choose another --out" in line


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_out_under_proc_is_refused_before_fitting(capsys, kss_path):
    code, _, err = run(capsys, "fit", kss_path, "--out", "/proc/truecount-test/run")
    assert code == 2 and "cannot be written" in _one_error_line(err)


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "small"
    _mount_tmpfs(where, "size=1m")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    where = tmp_path / "ro"
    _mount_tmpfs(where, "ro,size=1m")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_out_on_a_read_only_mount_is_refused_before_fitting(capsys, read_only_disk, kss_path):
    code, _, err = run(capsys, "fit", kss_path, "--out", read_only_disk / "run")
    assert code == 2 and "Read-only file system" in _one_error_line(err)


def test_too_little_free_space_is_refused_before_fitting(capsys, small_disk, kss_path):
    code, _, err = run(capsys, "fit", kss_path, "--out", small_disk / "run")
    assert code == 2
    line = _one_error_line(err)
    assert "MB free" in line and "Free some space or choose another --out" in line
    assert list(small_disk.iterdir()) == []


def test_a_disk_that_fills_while_writing_leaves_the_old_folder_and_no_partial(
        small_disk, kss_path, baseline_path):
    out = small_disk / "run"
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)
    write_run(out, tree, summary, verdict, info)  # a small run that fits
    before = sorted(p.name for p in out.iterdir())
    big = xr.DataTree(xr.Dataset({"x": (("chain", "draw"), np.random.default_rng(0).random(
        (4, 100_000)))}))  # 3.2 MB of incompressible numbers on a 1 MB disk
    with pytest.raises(OSError) as caught:
        write_run(out, big, summary, verdict, info, force=True)
    assert caught.value.errno == 28  # ENOSPC, raised in Python: no crash inside HDF5
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in small_disk.iterdir()] == ["run"]


def test_a_full_disk_is_one_line_and_exit_1(capsys, tmp_path, kss_path, monkeypatch):
    import truecount.cli as cli

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "run"))

    monkeypatch.setattr(cli, "_fit_into", full)
    code, _, err = run(capsys, "fit", kss_path, "--out", tmp_path / "run")
    assert code == 1
    assert _one_error_line(err) == (f"truecount: error: No space left on device: "
                                    f"{tmp_path / 'run'}")
    assert _leftovers(tmp_path) == []


# -- what killed runs left behind is cleaned by the next -------------------------------------------


def test_partial_folders_of_dead_runs_are_removed_and_named(tmp_path):
    out = tmp_path / "run"
    dead = _dead_pid()
    partial = tmp_path / f".run.partial-{dead}"
    partial.mkdir()
    (partial / POSTERIOR).write_bytes(b"half a posterior")
    notes: list[str] = []
    with claimed(out, say=notes.append):
        pass
    assert not partial.exists() and _leftovers(tmp_path) == []
    assert notes == [f"removed {partial}, left by a run (pid {dead}) that was stopped while "
                     "writing"]


def test_a_partial_folder_of_a_live_run_is_left_alone(tmp_path):
    live = tmp_path / f".run.partial-{os.getppid()}"
    live.mkdir()
    with claimed(tmp_path / "run"):
        pass
    assert live.is_dir()


def test_an_old_folder_whose_replacement_never_arrived_is_put_back(tmp_path):
    out = tmp_path / "run"
    dead = _dead_pid()
    old = tmp_path / f".run.old-{dead}"
    old.mkdir()
    (old / RUN).write_text("{}", encoding="utf-8")
    notes: list[str] = []
    with pytest.raises(InputError, match="not empty"):
        with claimed(out, say=notes.append):
            pass
    assert (out / RUN).is_file() and not old.exists()


# -- every field a command reads from a run folder is validated ------------------------------------


@pytest.fixture
def fake_run(tmp_path, kss_path, baseline_path):
    out = tmp_path / "run"
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)
    write_run(out, tree, summary, verdict, info)
    return out


@pytest.mark.parametrize(("content", "words"), [
    (b"{not json", "run.json: found invalid JSON (Expecting property name"),
    (b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe", "run.json: found a file that is not UTF-8 text"),
    (b"[1, 2]", "run.json: found a JSON list; expected a JSON object"),
])
@pytest.mark.parametrize("command", ["report", "rerun"])
def test_a_run_json_that_is_not_a_json_object_is_one_line(capsys, fake_run, content, words,
                                                          command):
    (fake_run / RUN).write_bytes(content)
    code, _, err = run(capsys, command, fake_run)
    assert code == 2 and words in _one_error_line(err)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("case_file", None, "case_file: found None; expected a non-empty string"),
    ("seed", "<missing>", "seed: found nothing (the field is missing)"),
    ("draws", "lots", "draws: found 'lots'; expected an integer"),
    ("chains", 0, "chains: found 0; expected an integer >= 1"),
    ("readings", "x", "readings: found 'x'; expected an array of non-empty strings"),
    ("options", [], "options: found an array; expected a table"),
    ("target_accept", 2, "target_accept: found 2; expected a number < 1.0"),
])
@pytest.mark.parametrize("command", ["report", "rerun"])
def test_each_field_of_run_json_is_checked(capsys, fake_run, field, value, words, command):
    info = json.loads((fake_run / RUN).read_text(encoding="utf-8"))
    if value == "<missing>":
        del info[field]
    else:
        info[field] = value
    (fake_run / RUN).write_text(json.dumps(info), encoding="utf-8")
    code, _, err = run(capsys, command, fake_run)
    line = _one_error_line(err)
    assert code == 2 and f"run.json: {words}" in line


@pytest.mark.parametrize("command", ["report", "rerun"])
def test_an_edited_reading_is_blamed_on_run_json_not_an_option(capsys, fake_run, command):
    info = json.loads((fake_run / RUN).read_text(encoding="utf-8"))
    info["readings"] = ["nowhere"]
    (fake_run / RUN).write_text(json.dumps(info), encoding="utf-8")
    code, _, err = run(capsys, command, fake_run)
    line = _one_error_line(err)
    assert code == 2 and "run.json: readings: found 'nowhere'" in line and "--reading" not in line


@pytest.mark.parametrize("command", ["report", "rerun"])
def test_a_truncated_posterior_of_an_older_run_without_its_hash_is_one_line(capsys, fake_run,
                                                                          command):
    info = json.loads((fake_run / RUN).read_text(encoding="utf-8"))
    del info["posterior_sha256"]  # as runs written before the hash was recorded
    (fake_run / RUN).write_text(json.dumps(info), encoding="utf-8")
    data = (fake_run / POSTERIOR).read_bytes()
    (fake_run / POSTERIOR).write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, command, fake_run)
    line = _one_error_line(err)
    assert code == 2 and "cannot be read as NetCDF" in line
    assert "Refit with `truecount fit`" in line


def test_rerun_of_a_damaged_posterior_does_not_advise_rerun(capsys, fake_run):
    (fake_run / POSTERIOR).write_bytes((fake_run / POSTERIOR).read_bytes()[:-10])
    code, _, err = run(capsys, "rerun", fake_run)
    line = _one_error_line(err)
    assert code == 2 and "Refit with `truecount fit`" in line
    assert "or rerun it" not in line


@pytest.mark.parametrize("damage", ["missing", "binary", "list"])
def test_rerun_checks_summary_json_before_refitting(capsys, fake_run, damage, monkeypatch):
    import truecount.cli as cli

    monkeypatch.setattr(cli, "_fit_case", lambda *a, **k: pytest.fail("refitted"))
    path = fake_run / SUMMARY
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\xff\xfe" if damage == "binary" else b"[]")
    code, _, err = run(capsys, "rerun", fake_run)
    assert code == 2 and "summary.json" in _one_error_line(err)


# -- calibrate resumes in place, but only in its own folder ----------------------------------------


def test_calibrate_never_writes_into_a_folder_of_other_files(capsys, tmp_path, kss_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "summary.json").write_text('{"mine": true}', encoding="utf-8")
    code, _, err = run(capsys, "calibrate", kss_path, "--sims", "1", "--workers", "1",
                       "--out", folder)
    assert code == 2 and "no job.json in it" in _one_error_line(err)
    assert sorted(p.name for p in folder.iterdir()) == ["summary.json"]
    assert (folder / "summary.json").read_text(encoding="utf-8") == '{"mine": true}'


@pytest.mark.parametrize(("content", "words"), [
    (b"{oops", "job.json: found a file that is not UTF-8 JSON"),
    (b"\xff\xfe\x00", "job.json: found a file that is not UTF-8 JSON"),
    (b"[1]", "job.json: found other fields than a calibration job's"),
    (b'{"case": "x"}', "job.json: found other fields than a calibration job's"),
])
def test_a_damaged_job_json_is_one_line(capsys, tmp_path, kss_path, content, words):
    folder = tmp_path / "cal"
    folder.mkdir()
    (folder / "job.json").write_bytes(content)
    code, _, err = run(capsys, "calibrate", kss_path, "--sims", "1", "--workers", "1",
                       "--out", folder)
    assert code == 2 and words in _one_error_line(err)


def test_damaged_lines_of_results_jsonl_are_rerun_not_a_traceback(tmp_path):
    from truecount.workflows.calibration import _read

    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"index": 0, "x": 1}\n\xff\xfe\n[1, 2]\n{"index": "one"}\n{"index": 1')
    assert _read(path) == [{"index": 0, "x": 1}]


def test_two_calibrations_never_append_to_one_folder(capsys, tmp_path, kss_path):
    out = tmp_path / "cal"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = run(capsys, "calibrate", kss_path, "--sims", "1", "--workers", "1",
                           "--out", out)
        assert code == 2 and "being written by another truecount" in _one_error_line(err)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_leftover_old_folder_under_our_own_pid_is_put_back_not_deleted(tmp_path):
    # A killed run's pid can come back as ours; its old folder may be the only copy.
    out = tmp_path / "run"
    old = tmp_path / f".run.old-{os.getpid()}"
    old.mkdir()
    (old / RUN).write_text("{}", encoding="utf-8")
    with claimed(out, force=True):
        pass
    assert (out / RUN).is_file() and not old.exists()


@pytest.mark.parametrize("target", ["missing", "userdir", "run"])
def test_a_link_as_out_is_refused_before_fitting(capsys, tmp_path, kss_path, target):
    # A dangling link made the fit fail only at the final rename; a link to a folder would have
    # been replaced by the new folder, its target left behind.
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "notes.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / RUN).write_text("{}", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / target)
    code, _, err = run(capsys, "fit", kss_path, "--out", link, "--force")
    assert code == 2 and "a folder path, not a link" in _one_error_line(err)
    assert link.is_symlink() and (tmp_path / "userdir" / "notes.txt").exists()


def test_an_out_name_too_long_is_bad_input_not_a_crash(capsys, tmp_path, kss_path):
    code, _, err = run(capsys, "fit", kss_path, "--out", tmp_path / ("x" * 300))
    assert code == 2 and "File name too long" in _one_error_line(err)


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_the_current_folder_as_out_is_refused_in_its_own_words(capsys, tmp_path, kss_path,
                                                               monkeypatch, out):
    here = tmp_path / "here"
    (here / "sub").mkdir(parents=True)
    monkeypatch.chdir(here)
    code, _, err = run(capsys, "fit", kss_path, "--out", out, "--force")
    assert code == 2 and "the current folder, or one that holds it" in _one_error_line(err)
    assert sorted(p.name for p in here.iterdir()) == ["sub"]


def test_a_case_file_path_in_run_json_that_is_a_folder_is_one_line(capsys, fake_run, tmp_path):
    info = json.loads((fake_run / RUN).read_text(encoding="utf-8"))
    info["case_file"] = str(tmp_path)
    (fake_run / RUN).write_text(json.dumps(info), encoding="utf-8")
    code, _, err = run(capsys, "report", fake_run)
    assert code == 2 and "run.json: case_file" in _one_error_line(err)


def test_sensitivity_checks_free_space_before_fitting(capsys, small_disk, kss_path):
    (small_disk / "fill").write_bytes(b"\0" * 900_000)
    code, _, err = run(capsys, "sensitivity", kss_path, "--out", small_disk / "sens")
    assert code == 2 and "MB free" in _one_error_line(err)
