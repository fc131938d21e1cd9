"""truecount installs like a library: the wheel alone, in a fresh environment, outside the checkout.

The wheel is built from this checkout, installed without its dependencies into a new virtual
environment (which borrows the locked environment's third-party packages through a path file, so
the test needs no network and no second copy of JAX), and its ``truecount`` command is run from a
folder outside the checkout: ``truecount capacity`` on a copy of the KSS case and a short ``fit``
under the shipped baseline spec, which it must find as package data. A file the package reads from
the source tree instead of from itself fails here, and so does a module or data file the wheel
leaves out.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import KSS, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(out), str(ROOT)], check=True, cwd=out)
    (built,) = out.glob("truecount-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; its ``bin`` folder."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    bin_dir = env / "bin"
    purelib = subprocess.run([str(bin_dir / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies, not truecount itself: a path line does not run that folder's own .pth
    # files, so the checkout's editable install stays out.
    (Path(purelib) / "locked-dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install",
                    "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)
    return bin_dir


def test_the_wheel_holds_the_package_and_its_data_only(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert "truecount/specs/baseline.toml" in names
    assert "truecount/model/equations.py" in names and "truecount/quantities.py" in names
    assert not [n for n in names if n.startswith(("tests/", "data/", "benchmarks/"))]
    sources = {p.relative_to(ROOT / "src").as_posix()
               for p in (ROOT / "src" / "truecount").rglob("*") if p.is_file()
               and "__pycache__" not in p.parts}
    assert sources <= set(names)


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cache = cwd / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", XDG_CACHE_HOME=str(cache),
               PYTENSOR_FLAGS=f"base_compiledir={cache / 'pytensor'}",
               NUMBA_CACHE_DIR=str(cache / "numba"), MPLCONFIGDIR=str(cache / "mpl"))
    return subprocess.run([str(bin_dir / "truecount"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_installed_command_runs_outside_the_checkout(installed: Path, tmp_path: Path):
    shutil.copy(KSS, tmp_path / "kss.toml")
    where = subprocess.run([str(installed / "python"), "-c",
                            "import truecount; print(truecount.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and "site-packages" in where  # the wheel, not the checkout

    capacity = _run(installed, ["capacity", "kss.toml"], tmp_path)
    assert capacity.returncode == 0, capacity.stderr
    assert "kss_phones" in capacity.stdout

    fit = _run(installed, ["fit", "kss.toml", "--draws", "100", "--tune", "100", "--chains", "2",
                           "--out", "run", "--no-report", "--allow-unconverged", "--json",
                           "--quiet"], tmp_path)
    assert fit.returncode in (0, 3), fit.stderr  # 2 x 100 draws may fail the gate: then stamped
    summary = json.loads(fit.stdout)
    assert summary["spec_id"] == "baseline" and summary["case_id"] == "kss_2021"
    assert (tmp_path / "run" / "posterior.nc").is_file()
    info = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    assert info["environment"]["requirements_lock_sha256"] is None  # no checkout, no lock file
    assert not (ROOT / "run").exists()
