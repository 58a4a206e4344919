# Two commands on a fresh machine (Python 3.11): `make quickstart` and `make test`.
# .venv is (re)built whenever it is missing or older than the requirements files.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: quickstart test test-slow venv benchmark-search benchmark-input benchmark-train benchmarks clean

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

# Two workers (one per core), tests balanced one by one; a module with a shared fixture runs on
# one worker (its `xdist_group`). `make test` leaves out the tests marked slow (long chains:
# the whole pipeline, the README's commands, the baseline, multi-worker and multi-replica runs,
# the heavier numerics); `make test-slow` runs exactly those. The 15 slowest are listed.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15
test: $(STAMP)
	$(PYTEST) -m "not slow" tests

test-slow: $(STAMP)
	$(PYTEST) -m slow tests

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
