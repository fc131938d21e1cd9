# Set-up and everyday commands. Each target creates the environment first if it is missing or
# older than the lock file, so `make kss` and `make test` are all a fresh machine needs.

PYTHON ?= python3.12
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: kss test test-all lint lock clean-env

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.12 (pyenv install 3.12) or run make PYTHON=/path/to/python3.12"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

## the main job on the KSS case: capacity table, the Bayesian fit into results/kss, the refits
## under the shipped alternatives into results/kss-sensitivity, and the report with both (replaced).
## An alternative that fails the gate (exit 3) does not stop the report: its row is marked there.
kss: $(STAMP)
	$(VENV)/bin/truecount capacity data/kss_2021.toml
	$(VENV)/bin/truecount fit data/kss_2021.toml --spec kss --out results/kss --force --no-report
	-$(VENV)/bin/truecount sensitivity data/kss_2021.toml --spec kss --out results/kss-sensitivity --force
	$(VENV)/bin/truecount report results/kss --sensitivity results/kss-sensitivity

## tests: fast ones locally; with CI=true (as in .ci/run) the slow ones as well
test: $(STAMP)
	$(PY) -m pytest $(if $(filter true,$(CI)),--runslow,) $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest --runslow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

## regenerate the lock file from pyproject.toml (needs network access to PyPI)
lock:
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.12 --no-header --annotation-style line -o requirements.lock

clean-env:
	rm -rf $(VENV)
