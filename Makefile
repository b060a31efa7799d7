# Two commands do all set-up on a fresh machine with Python 3:
#   make demo   # install, build a noisy demo dataset, fit on CPU, print detection quality
#   make test   # install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test bench-selection clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml scripts/fix_mongod.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[fiftyone,test]'
	$(BIN)/python scripts/fix_mongod.py
	touch $@

demo: $(INSTALLED)
	$(BIN)/python -m crust_clean.demo --out demo --config configs/cpu-quick.yaml

test: $(INSTALLED)
	$(BIN)/python -m pytest

bench-selection: $(INSTALLED)
	$(BIN)/python benchmarks/selection.py

clean:
	rm -rf $(VENV) demo .pytest_cache
