"""Trustworthy under failure: reproducible reruns, atomic and interruptible writes, clear failures.

Fast tests exercise the run folder and the failure paths with the sampler replaced; the slow ones
fit for real: two fits with one seed, ``truecount rerun``, and SIGINT/SIGTERM sent to a running
``truecount fit``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from truecount import load_case, load_spec
from truecount.cli import main
from truecount.errors import InputError
from truecount.inference.fitter import Fitter, SamplingError
from truecount.outputs.runs import POSTERIOR, RUN, compare, load_run, write_run


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _fake_run(kss_path: Path, baseline_path: Path) -> tuple:
    """The smallest arguments write_run accepts, with real inputs so load_run can read them."""
    case, spec = load_case(kss_path), load_spec(baseline_path)
    tree = xr.DataTree(xr.Dataset({"x": (("chain", "draw"), np.arange(6.0).reshape(2, 3))}))
    summary = SimpleNamespace(stamp=None, to_dict=lambda: {"median": 1.5})
    verdict = SimpleNamespace(passed=True, text="ok", table=pd.DataFrame({"r_hat": [1.0]}))
    info = {"case_file": str(case.path.resolve()), "case_sha256": case.sha256, "readings": [],
            "spec_file": str(spec.path.resolve()), "spec_files": [str(spec.path.resolve())],
            "spec_sha256": spec.sha256, "seed": 0, "draws": 3, "tune": 3, "chains": 2}
    return tree, summary, verdict, info


def _old_folder(parent: Path) -> Path:
    out = parent / "run"
    out.mkdir()
    (out / "marker.txt").write_text("old", encoding="utf-8")
    (out / RUN).write_text("{}", encoding="utf-8")  # a run folder: --force may replace it
    return out


# -- atomic writes and interruptions inside write_run ---------------------------------------------


def test_write_run_replaces_with_force_and_records_the_posterior_hash(tmp_path, kss_path,
                                                                       baseline_path):
    out = _old_folder(tmp_path)
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)
    write_run(out, tree, summary, verdict, info, force=True)
    assert not (out / "marker.txt").exists()
    recorded = json.loads((out / RUN).read_text(encoding="utf-8"))
    import hashlib

    assert recorded["posterior_sha256"] == hashlib.sha256(
        (out / POSTERIOR).read_bytes()).hexdigest()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_while_writing_leaves_the_folder_as_it_was(tmp_path, kss_path, baseline_path,
                                                               interrupt, existing):
    out = _old_folder(tmp_path) if existing else tmp_path / "run"
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)

    def report(folder: Path) -> None:
        (folder / "report.md").write_text("half", encoding="utf-8")
        raise interrupt

    with pytest.raises(interrupt):
        write_run(out, tree, summary, verdict, info, force=True, extra=report)
    assert _leftovers(tmp_path) == []
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["marker.txt", RUN]
    else:
        assert not out.exists()


def test_interrupted_between_the_two_renames_restores_the_old_folder(tmp_path, kss_path,
                                                                     baseline_path, monkeypatch):
    out = _old_folder(tmp_path)
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if ".partial-" in self.name:  # the new folder is about to take the old one's place
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write_run(out, tree, summary, verdict, info, force=True)
    assert (out / "marker.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in out.iterdir()) == ["marker.txt", RUN]
    assert _leftovers(tmp_path) == []


# -- a saved posterior is checked when it is loaded ------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "change"])
def test_load_run_refuses_a_changed_or_truncated_posterior(tmp_path, kss_path, baseline_path,
                                                           damage, capsys):
    out = tmp_path / "run"
    tree, summary, verdict, info = _fake_run(kss_path, baseline_path)
    write_run(out, tree, summary, verdict, info)
    loaded, *_ = load_run(out)  # intact: loads
    loaded.close()
    data = (out / POSTERIOR).read_bytes()
    if damage == "truncate":
        (out / POSTERIOR).write_bytes(data[: len(data) // 2])
    else:
        (out / POSTERIOR).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(InputError, match="sha256 differs"):
        load_run(out)
    code, _, err = run(capsys, "report", str(out))
    assert code == 2 and err.count("\n") == 1 and "changed or truncated" in err
    code, _, err = run(capsys, "rerun", str(out))
    assert code == 2 and err.count("\n") == 1 and "changed or truncated" in err


def test_compare_lists_every_differing_number_and_draw():
    draws = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"a": (("chain", "draw"), np.arange(6.0).reshape(2, 3)),
         "b": (("chain", "draw"), np.ones((2, 3)))})})
    same = {"true_enrolments": {"median": 3400, "lower": 2100.0}, "claims": [{"p": 0.01}],
            "gate_passed": True, "nan": float("nan")}
    assert compare(same, json.loads(json.dumps(same)), draws, draws.copy(deep=True),
                   ("a", "b")) == []
    other = json.loads(json.dumps(same))
    other["true_enrolments"]["median"] = 3401
    other["claims"][0]["p"] = 0.02
    moved = draws.copy(deep=True)
    moved["posterior"]["a"].values[1, 2] += 1e-12  # the last digit of one draw
    diffs = compare(same, other, draws, moved, ("a", "b"))
    assert diffs == ["summary claims[0].p: 0.01 then, 0.02 now",
                     "summary true_enrolments.median: 3400 then, 3401 now",
                     "posterior a: 1 of 6 draws differ (largest difference 1.00009e-12)"]


# -- failures of inference: one line, non-zero exit, nothing written ------------------------------


def test_too_few_draws_are_refused_before_anything_else(capsys, tmp_path, kss_path):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "fit", str(kss_path), "--draws", "5", "--out", str(out))
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("truecount: error: --draws: found 5")
    assert "at least 100" in err
    assert not out.exists()


def _fail_sampler(monkeypatch, error: BaseException | None = None, trace=None) -> None:
    monkeypatch.setattr(Fitter, "compile", lambda self: None)

    def sample(self, *args, **kwargs):
        if error is not None:
            raise error
        return trace

    monkeypatch.setattr(Fitter, "_sample", sample)


def test_a_sampler_exception_is_one_line_exit_1_and_writes_nothing(capsys, tmp_path, kss_path,
                                                                   monkeypatch):
    _fail_sampler(monkeypatch, RuntimeError("Chain 1 failed: numerical trouble\n\nStack "
                                            "backtrace:\n   0: <unknown>"))
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "fit", str(kss_path), "--out", str(out))
    assert code == 1 and "Diagnostics" not in stdout and "True enrolments" not in stdout
    lines = [line for line in err.splitlines() if not line.startswith("truecount: fitting")]
    assert lines == ["truecount: error: sampling failed (jax: Chain 1 failed: numerical "
                     "trouble); check the case and spec, or retry with another --seed"]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_short_trace_is_refused(capsys, tmp_path, kss_path, monkeypatch):
    # What nutpie returns when interrupted in blocking mode: fewer draws than asked for.
    short = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"handle_time": (("chain", "draw", "channel"), np.ones((4, 37, 1)))})})
    _fail_sampler(monkeypatch, trace=short)
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "fit", str(kss_path), "--out", str(out))
    assert code == 1 and stdout == ""
    assert "4 chains x 37 draws, not the 4 x 2000 asked for (stopped early)" in err
    assert not out.exists()


def test_an_initialisation_failure_names_what_to_check(capsys, tmp_path, kss_path, monkeypatch):
    _fail_sampler(monkeypatch, RuntimeError("All initialization points failed\n\nCaused by:\n"
                                            "    Logp function returned error: ErrorCode(3)"))
    monkeypatch.setattr(Fitter, "_nonfinite_terms", lambda self, inputs: ["claims_loglik (nan)"])
    code, stdout, err = run(capsys, "fit", str(kss_path), "--out", str(tmp_path / "run"))
    assert code == 1 and stdout == ""
    (line,) = [line for line in err.splitlines() if line.startswith("truecount: error:")]
    assert "could not be initialised (log density not finite at the initial point in " \
           "claims_loglik (nan)" in line
    assert "check the case's claims and evidence against the spec's priors" in line


@pytest.mark.slow
def test_a_model_with_a_bad_initial_point_is_diagnosed(kss_path, baseline_path, monkeypatch):
    # Negative claims: the claims' log likelihood is nan wherever the sampler starts.
    fitter = Fitter.for_case(load_case(kss_path), load_spec(baseline_path))
    inputs = fitter.inputs_for(None)
    bad = {**inputs, "claim_value": -inputs["claim_value"]}
    monkeypatch.setattr(fitter, "inputs_for", lambda case: bad)
    with pytest.raises(SamplingError) as info:
        fitter.fit(draws=100, tune=100, chains=2, seed=0)
    message = str(info.value)
    assert "could not be initialised" in message and "claims_loglik" in message
    assert "\n" not in message
    # The diagnosis put the model's own data back.
    np.testing.assert_array_equal(fitter.model["claim_value"].get_value(), inputs["claim_value"])


# -- reproducibility (slow: real fits) -------------------------------------------------------------

SMALL = ["--draws", "200", "--tune", "200", "--chains", "2", "--allow-unconverged", "--no-report"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["jax", "nutpie"])
def test_empty_and_warm_compile_caches_give_the_same_draws(tmp_path, kss_path, sampler):
    # The first fit on a machine (every compile cache empty) once gave other draws than every
    # later fit with the same seed: numba's fast-math compiled the log density differently from
    # scratch than from its cache. Two new processes share one set of empty cache folders; the
    # second finds every program in them (for jax: exported programs and XLA executables).
    caches = tmp_path / "caches"
    env = {**os.environ, "XDG_CACHE_HOME": str(caches / "xdg"),
           "PYTENSOR_FLAGS": f"base_compiledir={caches / 'pytensor'}",
           "NUMBA_CACHE_DIR": str(caches / "numba")}
    runs = {}
    for name in ("cold", "warm"):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "truecount.cli", "fit", str(kss_path),
                               "--out", str(out), "--seed", "3", "--no-retry",
                               "--sampler", sampler, *SMALL],
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode in (0, 3), done.stderr
        runs[name] = out
        if name == "cold" and sampler == "jax":
            programs = sorted((caches / "xdg" / "truecount" / "jax-programs").iterdir())
            assert {p.suffix for p in programs} == {".jaxexport", ".xla"}
    if sampler == "jax":  # the warm process found them all, and added none
        assert sorted((caches / "xdg" / "truecount" / "jax-programs").iterdir()) == programs
    else:
        assert (caches / "pytensor").is_dir()
    cold = json.loads((runs["cold"] / "summary.json").read_text(encoding="utf-8"))
    warm = json.loads((runs["warm"] / "summary.json").read_text(encoding="utf-8"))
    assert cold == warm
    with xr.open_datatree(runs["cold"] / POSTERIOR, engine="h5netcdf") as a, \
            xr.open_datatree(runs["warm"] / POSTERIOR, engine="h5netcdf") as b:
        for group in ("posterior", "sample_stats", "posterior_predictive"):
            xr.testing.assert_equal(a[group].to_dataset(), b[group].to_dataset())


@pytest.mark.slow
def test_same_seed_same_numbers_and_rerun_says_so(capsys, tmp_path, kss_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        code, _, err = run(capsys, "fit", str(kss_path), "--out", str(out), "--seed", "5", *SMALL)
        assert code in (0, 3), err
    summary_a = json.loads((a / "summary.json").read_text(encoding="utf-8"))
    summary_b = json.loads((b / "summary.json").read_text(encoding="utf-8"))
    assert summary_a == summary_b
    with xr.open_datatree(a / POSTERIOR, engine="h5netcdf") as ta, \
            xr.open_datatree(b / POSTERIOR, engine="h5netcdf") as tb:
        names = tuple(ta["posterior"].data_vars)
        assert len(names) > 20
        assert compare(summary_a, summary_b, ta, tb, names) == []
        for group in ("posterior", "sample_stats", "posterior_predictive", "prior"):
            # Values, dims and coords; the attrs differ by their created_at time stamps.
            xr.testing.assert_equal(ta[group].to_dataset(), tb[group].to_dataset())

    recorded = json.loads((a / RUN).read_text(encoding="utf-8"))
    assert recorded["options"]["mass"] == 0.9 and recorded["command"][1] == "fit"
    assert recorded["environment"]["packages"]["nutpie"] == recorded["nutpie_version"]
    code, stdout, err = run(capsys, "rerun", str(a), "--out", str(tmp_path / "c"))
    assert code == 0, stdout + err
    assert "numbers match to the last digit" in stdout
    assert "environment differs" not in err
    rerun = json.loads((tmp_path / "c" / RUN).read_text(encoding="utf-8"))
    assert rerun["rerun_of"] == str(a.resolve()) and rerun["seed"] == 5

    # A case file edited since the fit: the rerun still refits the copy, and says so.
    edited = tmp_path / "case.toml"
    edited.write_text(kss_path.read_text(encoding="utf-8"), encoding="utf-8")
    info = json.loads((a / RUN).read_text(encoding="utf-8"))
    info["case_file"] = str(edited)
    (a / RUN).write_text(json.dumps(info), encoding="utf-8")
    (a / "inputs" / "case.toml").write_bytes((a / "inputs" / kss_path.name).read_bytes())
    edited.write_text(edited.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    summary_a["true_enrolments"]["median"] += 1  # and a number that no longer matches
    (a / "summary.json").write_text(json.dumps(summary_a), encoding="utf-8")
    code, stdout, err = run(capsys, "rerun", str(a))
    assert code == 4
    assert f"the case file {edited} changed since the fit" in err
    assert "numbers DIFFER (1 difference)" in stdout
    assert "summary true_enrolments.median" in stdout


# -- interruption of a running fit (slow: a real subprocess) ---------------------------------------


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="watches /proc to see sampling start")
@pytest.mark.parametrize(("signum", "code", "existing"), [
    (signal.SIGTERM, 143, False), (signal.SIGINT, 130, True),
    (signal.SIGTERM, 143, True), (signal.SIGINT, 130, False)])
def test_a_fit_killed_while_sampling_leaves_the_folder_as_it_was(tmp_path, kss_path, signum,
                                                                 code, existing):
    out = _old_folder(tmp_path) if existing else tmp_path / "run"
    command = [sys.executable, "-m", "truecount.cli", "fit", str(kss_path), "--out", str(out),
               "--draws", "200000", "--tune", "500", "--chains", "2", "--no-report",
               *(["--force"] if existing else [])]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "fitting" in first
        # Compiling runs on one thread; nutpie starts its chain threads when sampling begins.
        before = _threads(proc.pid)
        deadline = time.monotonic() + 180
        while _threads(proc.pid) < before + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the fit ended before it was interrupted"
        time.sleep(2)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"truecount: interrupted; nothing written ({out} left as it was)")
    assert stdout == ""
    assert _leftovers(tmp_path) == []
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["marker.txt", RUN]
        assert (out / "marker.txt").read_text(encoding="utf-8") == "old"
    else:
        assert not out.exists()


def test_compare_ignores_an_empty_field_that_a_newer_truecount_added():
    # A run written before summary.json had `conflicts` is reproduced when there are none now;
    # a field that appeared with content, or one that vanished, is still a difference.
    draws = xr.DataTree.from_dict({"posterior": xr.Dataset({"a": (("chain", "draw"),
                                                                  np.zeros((1, 2)))})})
    old = {"median": 1}
    assert compare(old, {"median": 1, "conflicts": []}, draws, draws, ("a",)) == []
    assert compare(old, {"median": 1, "conflicts": ["x"]}, draws, draws, ("a",)) == [
        "summary conflicts: None then, ['x'] now"]
    assert compare({"median": 1, "gone": 2}, {"median": 1}, draws, draws, ("a",)) == [
        "summary gone: 2 then, None now"]
