# Two commands matter: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRA ?= cpu

.PHONY: setup test demo lint proto clean

setup: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the local CPU build; the project's range then installs nothing more.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ./client
	# suites: Meta-World, BabyAI, POPGym, Atari adapters (~300 MB, ~20 s; tests skip without it)
	$(BIN)/pip install -q -e ".[$(EXTRA),test,suites]"
	touch $(STAMP)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_proto.py --check
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/polyskill demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_proto.py --check

proto: setup
	$(BIN)/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) build *.egg-info
