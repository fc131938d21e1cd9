"""Shared fixtures; the ``slow`` marker runs with ``--runslow`` or when ``CI=true``.

Hypothesis (``tests/test_fuzz.py``) runs under the ``ci`` profile when ``CI=true``: derandomized, so
every CI run tries the same examples, and without an example database. Locally the ``dev``
profile draws new examples each run and remembers failures in ``.hypothesis/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
KSS = ROOT / "data" / "kss_2021.toml"
BASELINE = ROOT / "models" / "baseline.toml"

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (always run in CI)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def kss_path() -> Path:
    return KSS


@pytest.fixture
def baseline_path() -> Path:
    return BASELINE
