# Set-up and the two everyday jobs. Each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The demo's table scores with PESQ, STOI and DNSMOS: the package with its eval extra.
$(VENV)/.installed-demo: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[eval]"
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test,torch,eval]"
	touch $@ $(VENV)/.installed-demo

# Copy synthesis of examples/ with the shipped model into demo_output/ (docs/demo.md);
# e.g. make demo DEMO_ARGS="--input_dir=my_wavs --output_dir=out".
demo: $(VENV)/.installed-demo
	$(BIN)/python -m tfwaveglow.demo $(DEMO_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest
