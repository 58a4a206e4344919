# Two commands on a fresh machine (Python 3.11): `make quickstart` and `make test`.
# .venv is (re)built whenever it is missing or older than the requirements files.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: quickstart test test-fast venv benchmark-search benchmark-input benchmark-train benchmarks clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

quickstart: $(STAMP)
	$(PY) -m tools.pipeline --workdir=runs/quickstart

# Two workers (one per core; whole files per worker), the 15 slowest tests listed at the end.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# The same without the tests marked slow (end-to-end chains, multi-replica runs): for iterating.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

benchmark-search: $(STAMP)
	$(PY) benchmarks/search_step.py --num_layers=12 --filter_multiplier=8 --crop_size=65 --batch_size=2

benchmark-input: $(STAMP)
	$(PY) benchmarks/input_pipeline.py --consumers

benchmark-train: $(STAMP)
	$(PY) benchmarks/train_step.py --model_size=S --crop_size=513 --batch_size=2 --steps=3

# Every benchmark, the PyTorch yardstick beside it: writes benchmarks/results.json.
benchmarks: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
