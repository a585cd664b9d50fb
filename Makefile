# `make demo`: install everything and run the full recipe on the embedded corpus.
# `make test`: install everything and run the fast test suite (what CI runs).
PYTHON ?= python3
VENV   ?= .venv
# The CPU build of PyTorch; GPU users: `make install TORCH=torch` (setup.py accepts torch>=2.1).
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mlkd-installed

.PHONY: install demo test test-slow test-all clean-demo

$(STAMP): setup.py
	bash local/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in the same resolution as lhotse, which depends on it; otherwise
	# pip would pull the newest (CUDA) build.
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash local/run.sh

PYTEST := $(BIN)/python -m pytest -c tests/pytest.ini -q

# Test workers: one per core (pytest-xdist), a module's tests in one of them (tests/conftest.py).
test: install
	$(PYTEST) -m "not slow" -n auto --dist loadgroup --durations=15

test-slow: install
	$(PYTEST) -m slow --timeout 1800

test-all: install
	$(PYTEST) --timeout 1800

clean-demo:
	rm -rf data exp
