"""Detection benchmark: how well each method ranks known label noise, and how accurate the trained model is.

    .venv/bin/python benchmarks/detect.py --dataset mnist-sym50 --subset 2000 --epochs 20 --seeds 0 1 2
    make bench-quick      # three datasets at --subset 2000, 20 epochs, one seed (about 30 minutes on 2 CPU cores)

Writes benchmarks/results/detect-<dataset>.json, rebuilds benchmarks/RESULTS.md from every such file, and draws
benchmarks/results/detect-<dataset>-pr.png (precision-recall curves of all methods, first seed) and
detect-<dataset>-coreset.png (coreset label accuracy per epoch, our version of the paper's Fig. 1a).

Data (from ../shared/data, read only, written as image folders to a temporary directory; never copied
into the repository): a stratified ``--subset`` of the training images (by true label) and ``--test`` clean
test images.
  mnist-symP / fashion-mnist-symP  symmetric noise: P % of the labels replaced by a uniformly drawn *other* class
  mnist-asym40 / fashion-mnist-asym40  asymmetric: 40 % of each class c relabeled c + 1 (mod 10)
  cifar10n-random1 / -worse / -aggre   CIFAR-10 with CIFAR-10N human labels (truth: the clean label)
  cifar10-symP            CIFAR-10's own labels with symmetric noise (the paper's setting; a GPU job at full size)

Methods (one timm backbone, image size and epoch budget from configs/cpu-quick.yaml for all that train):
  crust <selector>/<split>/<proxy>  crust-clean's score (mean over epochs of 1 - p(given)); rule: score > 0.5
  ce: mean 1-p(given)     the same score on a plain cross-entropy run (crust-clean --selector none)
  ce: final loss          loss of the last epoch of that run (loss ranking)
  ce: AUM                 minus the area under the margin of that run (Pleiss et al. 2020), from eval passes
  ce: fiftyone mistakenness   FiftyOne Brain compute_mistakenness from the CE model's logits; rule: > 0.5
  cleanlab                find_label_issues on out-of-sample probabilities from 5-fold cross-validation
                          (5 more CE trainings on 4/5 of the data); ranking: 1 - label quality score
Everything is scored on the training split of the crust-clean runs (the 10 % validation split, which carries
the noisy labels, picks each run's saved model, as it would for a user). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
QUICK_DATASETS = ["mnist-sym50", "fashion-mnist-asym40", "cifar10n-random1"]
#: config options every training of the benchmark gets (``--set key=value``)
OVERRIDES: dict = {}
CRUST_GRID_QUICK = ["centrality/given/last-layer", "facility-location/given/last-layer"]
CRUST_GRID_FULL = [f"{s}/{c}/{p}" for s in ("centrality", "facility-location") for c in ("given", "predicted")
                   for p in ("last-layer", "logits")]


# ----------------------------------------------------------------------------------------------- data
def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices with every class in proportion (sorted)."""
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(rng.choice(members, size=int(round(n * len(members) / len(labels))), replace=False))
    return np.sort(np.concatenate(picked))


def prepare(name: str, data_root: Path, subset: int, test: int, seed: int, work: Path) -> dict:
    """Write work/train/<given label>/*, work/truth.csv and work/test/<true label>/*; describe the noise."""
    from PIL import Image

    from crust_clean.method.noise import NEXT_CLASS, asymmetric_noise, symmetric_noise

    rng = np.random.default_rng(seed)
    if name.startswith("cifar10"):
        index = pd.read_csv(data_root / "cifar10" / "index.csv")
        train = index[index["split"] == "train"].sort_values("index").reset_index(drop=True)
        if name.startswith("cifar10n-"):
            noisy_column = {"random1": "random_label1", "worse": "worse_label",
                            "aggre": "aggre_label"}[name.split("-")[1]]
            human = pd.read_csv(data_root / "cifar10n" / "labels.csv")
            true, given = human["clean_label"].to_numpy(), human[noisy_column].to_numpy()
            rows = _stratified(true, subset, rng)
            noise = f"CIFAR-10N human labels `{noisy_column}`"
        else:  # cifar10-symP: the paper's synthetic setting on the original labels
            share = int(name.split("-")[1][3:]) / 100
            true = train["label"].to_numpy()
            rows = _stratified(true, subset, rng)
            given = true.copy()
            given[rows] = symmetric_noise(true[rows], share, 10, rng)
            noise = f"symmetric {round(share * 100)} %: label replaced by a uniformly drawn other class"
        test_index = index[index["split"] == "test"].reset_index(drop=True)
        test_rows = _stratified(test_index["label"].to_numpy(), test, rng)
        archive = zipfile.ZipFile(data_root / "cifar10" / "cifar10-jpeg.zip")

        def write(path_in_zip: str, target: Path) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(path_in_zip))

        truth = []
        for row in rows:
            sample_id = f"{CIFAR_CLASSES[given[row]]}/{row:05d}.jpg"
            write(train.loc[row, "path"], work / "train" / sample_id)
            truth.append((sample_id, CIFAR_CLASSES[true[row]]))
        for row in test_rows:
            write(test_index.loc[row, "path"], work / "test" / CIFAR_CLASSES[test_index.loc[row, "label"]] / f"{row:05d}.jpg")
    else:
        folder = "fashion-mnist" if name.startswith("fashion-mnist") else "mnist"
        kind = name[len(folder) + 1:]
        images, true = _read_idx(data_root / folder / "train-images-idx3-ubyte.gz"), \
            _read_idx(data_root / folder / "train-labels-idx1-ubyte.gz").astype(np.int64)
        test_images = _read_idx(data_root / folder / "t10k-images-idx3-ubyte.gz")
        test_labels = _read_idx(data_root / folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        rows = _stratified(true, subset, rng)
        true = true[rows]
        if kind.startswith("sym"):
            share = int(kind[3:]) / 100
            given = symmetric_noise(true, share, 10, rng)
            noise = f"symmetric {kind[3:]} %: label replaced by a uniformly drawn other class"
        else:
            share = int(kind[4:]) / 100
            given = asymmetric_noise(true, share, NEXT_CLASS, rng)
            noise = f"asymmetric {kind[4:]} %: in every class c, that share relabeled c + 1 (mod 10)"
        truth = []
        for row, g, t in zip(rows, given, true):
            sample_id = f"{g}/{row:05d}.png"
            (work / "train" / str(g)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[row]).save(work / "train" / sample_id)
            truth.append((sample_id, str(t)))
        for row in _stratified(test_labels, test, rng):
            (work / "test" / str(test_labels[row])).mkdir(parents=True, exist_ok=True)
            Image.fromarray(test_images[row]).save(work / "test" / str(test_labels[row]) / f"{row:05d}.png")
    pd.DataFrame(truth, columns=["sample_id", "true_label"]).to_csv(work / "truth.csv", index=False)
    noisy_share = float(np.mean([s.split("/")[0] != t for s, t in truth]))
    return {"noise": noise, "noisy_share": round(noisy_share, 4), "train": work / "train", "test": work / "test",
            "truth": work / "truth.csv"}


# -------------------------------------------------------------------------------------------- methods
def fit(data: dict, out: Path, epochs: int, seed: int, augment: bool, config: str, **options):
    import crust_clean

    start = time.perf_counter()
    run = crust_clean.fit(data["train"], out=out, config=config, epochs=epochs, seed=seed, augment=augment,
                          true_labels=str(data["truth"]), progress=False, overwrite=True, **{**OVERRIDES, **options})
    return run, time.perf_counter() - start


def _drop_weights(run) -> None:
    """Kept run folders hold the ledger, scores and predictions for offline analysis, not the weights."""
    (run.path / "model.safetensors").unlink()


def cleanlab_scores(data: dict, train_ids: list[str], epochs: int, seed: int, augment: bool, config: str,
                    work: Path) -> dict:
    """cleanlab find_label_issues on 5-fold out-of-sample probabilities (5 CE fits of 4/5 of the data)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    import crust_clean
    from crust_clean.data.images import FileImages

    ids = pd.read_csv(data["truth"], dtype=str)["sample_id"].to_numpy()
    given_names = np.array([s.split("/")[0] for s in ids])
    classes = sorted(set(given_names))
    given = np.array([classes.index(g) for g in given_names])
    probs = np.zeros((len(ids), len(classes)))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(ids, given)
    for k, (fit_rows, held_rows) in enumerate(folds):
        manifest = work / f"fold{k}.csv"
        pd.DataFrame({"path": [str(data["train"] / s) for s in ids[fit_rows]], "label": given_names[fit_rows]}
                     ).to_csv(manifest, index=False)
        run = crust_clean.fit(manifest, out=work / f"fold{k}", config=config, epochs=epochs, seed=seed,
                              augment=augment, selector="none", val_fraction=0.0, progress=False, overwrite=True,
                              **OVERRIDES)
        assert run.model_info["class_names"] == classes
        probs[held_rows] = run.predict_probs(FileImages([data["train"] / s for s in ids[held_rows]]))
        _drop_weights(run)
    flagged = find_label_issues(given, probs)
    quality = get_label_quality_scores(given, probs)
    position = {s: i for i, s in enumerate(ids)}
    rows = [position[s] for s in train_ids]
    return {"score": 1 - quality[rows], "flagged": flagged[rows], "seconds": time.perf_counter() - start,
            "epochs": 5 * epochs * 0.8}


def mistakenness_scores(run, train_ids: list[str]) -> np.ndarray:
    """FiftyOne Brain compute_mistakenness from a run's saved model (logits), on a throwaway dataset."""
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")  # fiftyone-db 0.4.5 ships MongoDB 6.0
    import fiftyone as fo
    import fiftyone.brain as fob

    table = run.review_table()
    table = table.set_index("sample_id").loc[train_ids]
    dataset = fo.Dataset()
    try:
        dataset.add_samples([
            fo.Sample(filepath=path, sample_key=sample_id, ground_truth=fo.Classification(label=given),
                      prediction=fo.Classification(label=predicted, confidence=float(confidence),
                                                   logits=np.asarray(logits).tolist()))
            for sample_id, path, given, predicted, confidence, logits in zip(
                table.index, table["path"], table["given_label"], table["predicted_label"], table["confidence"],
                table["logits"])
        ])
        fob.compute_mistakenness(dataset, "prediction", label_field="ground_truth", use_logits=True)
        values = dict(zip(dataset.values("sample_key"), dataset.values("mistakenness")))
    finally:
        dataset.delete()
    return np.array([values[s] for s in train_ids])


def crust_settings(args) -> list[tuple[str, dict]]:
    """(method name, fit options) for every crust-clean setting of the grid and fraction sweep."""
    grid = args.settings or (CRUST_GRID_FULL if args.full_grid else CRUST_GRID_QUICK)
    settings = []
    for setting in grid:
        selector, split, proxy = setting.split("/")
        for fraction in args.fractions or [None]:
            name = setting if fraction is None else f"{setting} @{fraction:g}"
            options = dict(selector=selector, class_split=split, proxy=proxy)
            if fraction is not None:
                options["coreset_fraction"] = fraction
            settings.append((name, options))
    return settings


def run_dataset(name: str, args) -> dict:
    from crust_clean.errors import CrustCleanError
    from crust_clean.method.metrics import ranking_metrics
    from crust_clean.method.scores import SUSPECT_RULE

    result = {"dataset": name + args.tag, "augment": args.augment, "crust_rule": SUSPECT_RULE, "subset": args.subset, "test_images": args.test,
              "epochs": args.epochs, "seeds": args.seeds, "methods": {},
              "config": f"config {args.config}" + "".join(f" {k}={v}" for k, v in OVERRIDES.items()),
              "curves": {}, "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix=f"crust-detect-{name}-") as tmp:
            work = args.keep / f"{name}{args.tag}" / f"seed{seed}" if args.keep else Path(tmp)
            data = prepare(name, args.data_root, args.subset, args.test, seed, work / "data")
            result["noise"] = data["noise"]
            result.setdefault("noisy_share", []).append(data["noisy_share"])
            truth = pd.read_csv(data["truth"], dtype=str).set_index("sample_id")["true_label"]

            def record(method: str, score, flagged, seconds, epochs, train_ids, test_accuracy=None):
                noisy = np.array([s.split("/")[0] != truth[s] for s in train_ids])
                metrics = ranking_metrics(np.asarray(score), noisy, flagged)
                metrics.update(seconds=round(seconds, 1), epochs=epochs, test_accuracy=test_accuracy)
                result["methods"].setdefault(method, []).append(metrics)
                if seed == args.seeds[0]:
                    from sklearn.metrics import precision_recall_curve

                    precision, recall, _ = precision_recall_curve(noisy, score)
                    step = max(1, len(recall) // 300)
                    result["curves"][method] = {"precision": precision[::step].round(4).tolist(),
                                                "recall": recall[::step].round(4).tolist()}
                print(f"[{name} seed {seed}] {method}: AUROC {metrics['auroc']:.3f} AP "
                      f"{metrics['average_precision']:.3f} F1@k {metrics['at_noise_count']['f1']:.3f} "
                      f"test {test_accuracy} ({seconds:.0f} s)", flush=True)

            def fit_or_record_failure(method: str, out: Path, epochs: int, **options):
                try:
                    return fit(data, out, epochs, seed, args.augment, args.config, **options)
                except CrustCleanError as err:  # e.g. a diverged run: record it, go on with the others
                    result.setdefault("failures", []).append({"method": method, "seed": seed, "error": str(err)})
                    print(f"[{name} seed {seed}] {method}: FAILED: {err}", flush=True)
                    return None, None

            ce, ce_seconds = fit(data, work / "ce", args.epochs, seed, args.augment, args.config, selector="none")
            scores = ce.scores
            ids = scores["sample_id"].tolist()
            test_ce = ce.evaluate(data["test"])
            ledger = ce.ledger()
            final_loss = ledger[ledger["epoch"] == ledger["epoch"].max()].set_index("sample_id")["loss"].loc[ids]
            record("ce: mean 1-p(given)", scores["score"], scores["suspect"], ce_seconds, args.epochs, ids, test_ce)
            record("ce: final loss", final_loss.to_numpy(), None, ce_seconds, args.epochs, ids, test_ce)
            record("ce: AUM", -scores["aum"].to_numpy(), None, ce_seconds, args.epochs, ids, test_ce)
            if not args.no_mistakenness:
                mistakenness = mistakenness_scores(ce, ids)
                record("ce: fiftyone mistakenness", mistakenness, mistakenness > 0.5, ce_seconds, args.epochs, ids,
                       test_ce)
            _drop_weights(ce)
            first_crust_seconds = None
            for method, options in crust_settings(args):
                run, seconds = fit_or_record_failure(f"crust {method}", work / method.replace("/", "-").replace(
                    " @", "-f"), args.epochs, **options)
                if run is None:
                    continue
                first_crust_seconds = first_crust_seconds or seconds
                run_scores = run.scores.set_index("sample_id").loc[ids]
                record(f"crust {method}", run_scores["score"].to_numpy(), run_scores["suspect"].to_numpy(),
                       seconds, args.epochs, ids, run.evaluate(data["test"]))
                if run_scores["selection_rate"].notna().all():  # the run had selection epochs
                    record(f"crust {method}: 1 - selection rate", 1 - run_scores["selection_rate"].to_numpy(),
                           None, seconds, args.epochs, ids)
                if seed == args.seeds[0]:
                    result.setdefault("coreset_label_accuracy", {})[method] = [
                        e.get("coreset_label_accuracy") for e in run.metrics["epochs"]]
                _drop_weights(run)
            if args.equal_time and first_crust_seconds:
                # plain CE given the wall time of the first crust setting (fewer epochs, same schedule shape)
                epochs = max(1, round(args.epochs * first_crust_seconds / ce_seconds))
                short, seconds = fit(data, work / "ce-equal-time", epochs, seed, args.augment, args.config,
                                     selector="none")
                short_scores = short.scores.set_index("sample_id").loc[ids]
                record("ce at crust's wall time: mean 1-p(given)", short_scores["score"].to_numpy(),
                       short_scores["suspect"].to_numpy(), seconds, epochs, ids, short.evaluate(data["test"]))
                _drop_weights(short)
            if not args.no_cleanlab:
                lab = cleanlab_scores(data, ids, args.epochs, seed, args.augment, args.config, work / "cleanlab")
                record("cleanlab (5-fold CV)", lab["score"], lab["flagged"], lab["seconds"], lab["epochs"], ids)
    return result


# -------------------------------------------------------------------------------------------- reports
def _mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def write_results(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"detect-{result['dataset']}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result)
    write_markdown()


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for method, curve in result["curves"].items():
        if "selection rate" in method:
            continue
        ax.plot(curve["recall"], curve["precision"], label=method, lw=1.4)
    ax.axhline(np.mean(result["noisy_share"]), color="grey", ls=":", lw=1, label="noise share (chance)")
    ax.set(xlabel="recall", ylabel="precision", title=f"{result['dataset']}: suspect ranking vs true noise",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(RESULTS / f"detect-{result['dataset']}-pr.png", dpi=110)
    plt.close(fig)
    if result.get("coreset_label_accuracy"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for setting, values in result["coreset_label_accuracy"].items():
            epochs = [i for i, v in enumerate(values) if v is not None]
            ax.plot(epochs, [values[i] for i in epochs], marker=".", label=setting)
        ax.axhline(1 - np.mean(result["noisy_share"]), color="grey", ls=":", lw=1, label="label accuracy of the data")
        ax.set(xlabel="epoch", ylabel="coreset label accuracy", title=f"{result['dataset']}: coreset label accuracy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"detect-{result['dataset']}-coreset.png", dpi=110)
        plt.close(fig)


def _epochs(per_seed: list[float]) -> str:
    """Epochs trained: one number, or the range when seeds differ (CE at CRUST's wall time)."""
    low, high = min(per_seed), max(per_seed)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def write_markdown() -> None:
    lines = ["# Detection benchmark results", "",
             "Made by `benchmarks/detect.py` (see its docstring for data, noise and methods); one section per "
             "`benchmarks/results/detect-*.json`. Scores are ranked on the training split of each run; "
             "mean ± std over seeds where there are several. F1@k: precision = recall at k = the true number "
             "of noisy samples. Own rule: the method's decision (crust-clean: the rule named in each section, "
             "`score > 0.5` before it changed; cleanlab: find_label_issues; mistakenness > 0.5). Epochs: full-data-equivalent epochs trained for the "
             "scores (cleanlab: 5 folds x 4/5 of the data). Test accuracy: the run's saved model on clean "
             "test images.", ""]
    # the full-scale tables first, one level down: partial fine-tuning (benchmarks/stages.py, then the exploratory
    # runs that chose its recipe), frozen features (benchmarks/frozen.py), the scale curve and the neighbour index
    # (benchmarks/scale.py, neighbours.py), the FiftyOne export's map and similarity index (fiftyone_map.py), the
    # other issue types (issues.py)
    full_scale = [path for path in (RESULTS / "stages.md", RESULTS / "stages-probe.md", RESULTS / "frozen.md",
                                    RESULTS / "scale.md", RESULTS / "neighbours.md", RESULTS / "fiftyone-map.md",
                                    RESULTS / "issues.md")
                  if path.is_file()]
    for path in full_scale:
        lines += ["#" + line if line.startswith("#") else line for line in path.read_text().splitlines()]
    if full_scale:
        lines += ["## 2,000-image subsets (`benchmarks/detect.py`)", ""]
    for path in sorted(RESULTS.glob("detect-*.json")):
        result = json.loads(path.read_text())
        lines += [f"### {result['dataset']}", "",
                  f"{result['noise']}; measured noisy share {_mean_std(result['noisy_share'])}; "
                  f"{result['subset']} training images (stratified), {result['test_images']} clean test images, "
                  f"{result['epochs']} epochs, seeds {result['seeds']}, {result['config']}"
                  f"{'' if result.get('augment', True) else ' without augmentation'}, "
                  f"{result['machine']['cpus']} CPUs; crust-clean's own rule: "
                  f"{result.get('crust_rule', 'score > 0.5')}.", "",
                  *[f"Note: {note}\n" for note in result.get("notes", [])],
                  "| method | AUROC | AP | F1@k | own rule P / R / F1 | recall top 1 % / 5 % | test acc. | s | epochs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for method, runs in result["methods"].items():
            own = runs[0].get("own_rule")
            own_text = "-" if own is None else " / ".join(
                _mean_std([r["own_rule"][k] for r in runs]) for k in ("precision", "recall", "f1"))
            lines.append(
                f"| {method} | {_mean_std([r['auroc'] for r in runs])} | "
                f"{_mean_std([r['average_precision'] for r in runs])} | "
                f"{_mean_std([r['at_noise_count']['f1'] for r in runs])} | {own_text} | "
                f"{_mean_std([r['recall_top_1pct'] for r in runs])} / {_mean_std([r['recall_top_5pct'] for r in runs])} | "
                f"{_mean_std([r['test_accuracy'] for r in runs])} | {np.mean([r['seconds'] for r in runs]):.0f} | "
                f"{_epochs([r['epochs'] for r in runs])} |")
        for failure in result.get("failures", []):
            lines.append(f"\n**{failure['method']} failed** (seed {failure['seed']}): {failure['error']}")
        lines += ["", f"![precision-recall]({'results/' + path.stem}-pr.png)", ""]
        if (RESULTS / f"{path.stem}-coreset.png").exists():
            lines += [f"![coreset label accuracy]({'results/' + path.stem}-coreset.png)", ""]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", nargs="+", default=QUICK_DATASETS)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--subset", type=int, default=2000, help="training images (stratified by true label)")
    parser.add_argument("--test", type=int, default=2000, help="clean test images")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--full-grid", action="store_true", help="both class splits and both proxies")
    parser.add_argument("--no-cleanlab", action="store_true")
    parser.add_argument("--no-mistakenness", action="store_true", help="skip FiftyOne (no mongod needed)")
    parser.add_argument("--settings", nargs="+", help="crust settings selector/split/proxy (default: the quick grid)")
    parser.add_argument("--fractions", type=float, nargs="+", help="coreset fractions to sweep for every setting")
    parser.add_argument("--equal-time", action="store_true",
                        help="also train plain CE for the wall time the first crust setting took")
    parser.add_argument("--config", default="cpu-quick", help="named config or YAML every training starts from")
    parser.add_argument("--keep", type=Path, help="keep every run folder (ledgers, scores; no weights) under this "
                        "folder for offline analysis (benchmarks/signals.py)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train without augmentation (the regime where plain CE memorises the noise)")
    parser.add_argument("--tag", default="", help="suffix of the result name, e.g. -long")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config options for every training, e.g. img_size=64 (values read as YAML)")
    args = parser.parse_args()
    import yaml

    OVERRIDES.update({key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)})
    for name in args.dataset:
        write_results(run_dataset(name, args))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
