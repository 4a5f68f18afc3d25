# The README's two Quickstart commands: `make demo` and `make test`.
# Each creates .venv (if missing), installs shoulders with pinned versions, then runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: demo test install clean quick-demo bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull the multi-GB CUDA build.
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/shoulders demo $(DEMO_ARGS)

quick-demo: $(STAMP)
	$(BIN)/shoulders demo --quick $(DEMO_ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/shoulders bench all

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
