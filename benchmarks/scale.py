"""How a frozen-feature fit grows with the number of samples, stage by stage, and what partitioned selection costs
in detection.

    .venv/bin/python benchmarks/scale.py                       (make bench-scale: the curve and the partition sweep)
    .venv/bin/python benchmarks/scale.py --sizes 10000 50000   (a part of the curve; results merge by size)
    .venv/bin/python benchmarks/scale.py --partitions-only     (only the partition sweep on CIFAR-10N)
    .venv/bin/python benchmarks/scale.py --export-only 50000   (only the FiftyOne export of a run the curve left)

The curve: for n = 10,000, 50,000, 200,000 and 1,000,000 samples, the product's frozen-lite0 fit (30 epochs, a
linear head on 1,280-d EfficientNet-Lite0 features, CRUST with the coreset sized to the noise) run through
``crust_clean.fit`` on a Hugging Face dataset on disk. The features are synthetic (said so in the results): 10
classes, each a random non-negative 1,280-d centre plus Gaussian noise, 10 % of the labels moved to another class,
written into the feature cache entry the fit looks up; the image pass itself is not timed here (its cost per image
is benchmarks/results/stages.md's pass seconds, linear by construction: every image is read once). Each stage of the
fit is timed and its peak resident memory (RSS, sampled every 50 ms) recorded by wrapping the product's function
for it: reading the features, the eval passes, training, coreset selection, the ledger, the neighbour search, the
scores, the other outputs, the report, and (up to --fiftyone-up-to samples) the FiftyOne export; each size runs
in a process of its own. The exponent of a stage is the slope of log seconds against log n over the sizes run.

The partition sweep: the frozen Lite2 head recipe (benchmarks/stages.py's "crust frozen head") on all 50,000
CIFAR-10N images with crust.partition_size 20,000 (no class is split: today's exact selection per class), 2,500 and
1,000 (each class of 4,500 training rows split into 2 and 5 random parts, as classes of 100,000 are split at the
default size): AUROC, precision in the top 1 %, test accuracy and selection seconds per epoch.

Writes benchmarks/results/scale.json, scale.md and scale.png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

SIZES = (10_000, 50_000, 200_000, 1_000_000)
CLASSES = 10
WIDTH = 1280
NOISE = 0.10
PARTITION_SIZES = (20_000, 2_500, 1_000)
GOALS = {"selection": ("selection seconds per epoch at 1M", 60), "neighbours": ("neighbour search at 1M", 600),
         "fit": ("30-epoch head fit at 1M", 3600)}


# ------------------------------------------------------------------------------------------------ memory
class StageMeter:
    """Seconds and peak memory of named stages: ``with meter.stage(name)`` around a call; a thread samples the
    process's memory every ``interval`` seconds and credits it to every stage open at that moment. Two peaks: the
    resident set (RSS), which counts the pages of memory-mapped files the stage has read or written (the feature
    cache, embeddings.npy: page cache the kernel can drop or write back), and the anonymous memory within it (the
    heap: what the process holds itself, the figure that must stay bounded)."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.open, self.seconds, self.calls = interval, {}, {}, {}
        self.peak, self.peak_anonymous = {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def memory() -> tuple[int, int]:
        """(resident bytes, anonymous resident bytes) of this process, from /proc/self/status."""
        found = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    name, kb = line.split()[:2]
                    found[name] = int(kb) * 1024
        return found["VmRSS:"], found["RssAnon:"]

    def _credit(self, names) -> None:
        rss, anonymous = self.memory()
        for name in names:
            self.peak[name] = max(self.peak.get(name, 0), rss)
            self.peak_anonymous[name] = max(self.peak_anonymous.get(name, 0), anonymous)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._credit(list(self.open))

    @contextmanager
    def stage(self, name: str):
        self.open[name] = self.open.get(name, 0) + 1
        self._credit([name])
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.calls[name] = self.calls.get(name, 0) + 1
            self._credit([name])
            self.open[name] -= 1
            if not self.open[name]:
                del self.open[name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def wrap(meter: StageMeter, owner, attribute: str, name: str):
    """Replace ``owner.attribute`` by the same function timed as stage ``name``; returns the undo."""
    original = getattr(owner, attribute)

    def timed(*args, **kwargs):
        with meter.stage(name):
            return original(*args, **kwargs)

    setattr(owner, attribute, timed)
    return lambda: setattr(owner, attribute, original)


def instrument(meter: StageMeter) -> list:
    """Time the product's own functions for each stage of a fit (leaves only: no stage holds another)."""
    from crust_clean.run import folder, ledger, recorder
    from crust_clean.train import trainable, trainer

    return [wrap(meter, trainable, "prepare", "read features"),
            wrap(meter, trainer, "eval_pass", "eval passes"),
            wrap(meter, trainer, "train_one_epoch", "training"),
            wrap(meter, trainer, "select_coreset", "selection"),
            wrap(meter, ledger.Ledger, "append", "ledger"),
            wrap(meter, ledger.Ledger, "write_part", "ledger"),
            wrap(meter, ledger.Ledger, "join_parts", "ledger"),
            wrap(meter, ledger.Ledger, "per_sample", "scores"),
            wrap(meter, recorder, "neighbour_agreement", "neighbours"),
            wrap(meter, folder.RunFolder, "write_scores", "scores"),
            wrap(meter, folder.RunFolder, "write_predictions", "other outputs"),
            wrap(meter, folder.RunFolder, "write_model", "other outputs")]


#: The FiftyOne export's parts, timed inside it (stage "FiftyOne export"); the map is part of "map and similarity".
EXPORT_PARTS = ("add samples", "fields", "metadata", "mistakenness", "map and similarity", "map")


def instrument_export(meter: StageMeter) -> list:
    """Time the parts of the FiftyOne export (``EXPORT_PARTS``) as stages named "export: <part>"."""
    import fiftyone as fo

    from crust_clean.review import fiftyone as export

    return [wrap(meter, fo.Dataset, "add_samples", "export: add samples"),
            wrap(meter, export, "_write_fields", "export: fields"),
            wrap(meter, fo.Dataset, "compute_metadata", "export: metadata"),
            wrap(meter, export, "_mistakenness", "export: mistakenness"),
            wrap(meter, export, "_brain_runs", "export: map and similarity"),
            wrap(meter, export, "map_points", "export: map")]


# --------------------------------------------------------------------------------------- synthetic data
def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 120, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_source(n: int, work: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """(a Hugging Face dataset of n rows on disk: one tiny image repeated, a sample_id and a given label; the truth
    csv; the true labels; the given labels), made once under ``work``."""
    import datasets

    folder, truth_csv = work / f"synthetic-{n}", work / f"synthetic-{n}-truth.csv"
    rng = np.random.default_rng(n)
    truth = rng.integers(0, CLASSES, n)
    given = truth.copy()
    moved = rng.random(n) < NOISE
    given[moved] = (truth[moved] + rng.integers(1, CLASSES, moved.sum())) % CLASSES
    if not (folder / "dataset_info.json").is_file():
        names = [f"class{c}" for c in range(CLASSES)]
        ids = [f"s{i:07d}" for i in range(n)]
        features = datasets.Features({"image": datasets.Image(), "sample_id": datasets.Value("string"),
                                      "label": datasets.ClassLabel(names=names)})
        image = {"bytes": png_bytes(), "path": None}
        dataset = datasets.Dataset.from_dict({"image": [image] * n, "sample_id": ids, "label": given.tolist()},
                                             features=features)
        dataset.save_to_disk(str(folder))
        pd.DataFrame({"sample_id": ids, "true_label": [names[c] for c in truth]}).to_csv(truth_csv, index=False)
    return folder, truth_csv, truth, given


def fill_synthetic(out: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> None:
    """Synthetic features of classes ``truth`` into ``out`` (n, WIDTH): a random non-negative centre per class
    plus Gaussian noise, drawn from ``rng`` 50,000 rows at a time."""
    centres = np.abs(rng.normal(size=(CLASSES, WIDTH))).astype(np.float32)
    for start in range(0, len(truth), 50_000):
        rows = truth[start:start + 50_000]
        out[start:start + len(rows)] = centres[rows] + rng.normal(scale=1.5, size=(len(rows), WIDTH))


def seed_feature_cache(source: Path, truth: np.ndarray, cfg) -> None:
    """Write synthetic features for ``source`` into the cache entry ``cfg``'s fit looks up (the product's key), with
    the quality measures of its one image."""
    from crust_clean.data.sources import load_source
    from crust_clean.data.quality import measure
    from crust_clean.train.features import (FEATURES, META, QUALITY, cache_entry, cache_root, feature_description,
                                            frozen_backbone)
    from crust_clean.train.trainer import TrainContext

    samples = load_source(source)
    description = feature_description(frozen_backbone(cfg, CLASSES), samples, cfg, TrainContext.create(cfg))
    entry = cache_entry(description, cache_root(cfg))
    if (entry / META).is_file():
        return
    entry.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(entry / FEATURES, mode="w+", dtype=np.float16, shape=(1, len(truth), WIDTH))
    fill_synthetic(out[0], truth, np.random.default_rng(len(truth)))
    out.flush()
    np.save(entry / QUALITY, np.tile(measure(samples.images[0]), (len(truth), 1)))  # every row is the same image
    (entry / META).write_text(json.dumps({"description": description, "shape": [WIDTH], "failed": [], "seconds": 0,
                                          "synthetic": True}))


# ------------------------------------------------------------------------------------------------ the curve
def one_size(n: int, args) -> dict:
    import crust_clean
    from crust_clean.config import resolve_config
    from crust_clean.train.models import prepare

    source, truth_csv, truth, given = synthetic_source(n, args.work)
    options = {"feature_cache": str(args.work / "features"), "true_labels": str(truth_csv)}
    cfg = resolve_config("frozen-lite0", **options)
    prepare(cfg.model)
    seed_feature_cache(source, truth, cfg)
    meter = StageMeter()
    undo = instrument(meter)
    start = time.perf_counter()
    try:
        run = crust_clean.fit(source, out=args.work / "runs" / f"n{n}", config="frozen-lite0", overwrite=True,
                              progress=False, **options)
        fit_seconds = time.perf_counter() - start
        from crust_clean.review.report import write_report

        with meter.stage("report"):
            write_report(run)
        if n <= args.fiftyone_up_to:
            from crust_clean.review.fiftyone import export_to_fiftyone

            with meter.stage("FiftyOne export"):
                export_to_fiftyone(run, name=f"scale-{n}", persistent=False, overwrite=True)
    finally:
        for u in undo:
            u()
        meter.close()
    epochs = run.metrics["epochs"]
    selecting = [e["selection_seconds"] for e in epochs if e["epoch"] >= cfg.crust.warmup_epochs]
    summary = run.metrics["summary"]
    return {"n": n, "fit_seconds": round(fit_seconds, 1),
            "stages": {name: {"seconds": round(meter.seconds[name], 2), "calls": meter.calls[name],
                              "peak_rss_mb": round(meter.peak[name] / 2**20),
                              "peak_anonymous_mb": round(meter.peak_anonymous[name] / 2**20)}
                       for name in meter.seconds},
            "selection_seconds_per_epoch": round(float(np.mean(selecting)), 2) if selecting else None,
            "selection_epochs": len(selecting),
            "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "auroc": summary.get("detection", {}).get("auroc"), "epochs": len(epochs),
            "synthetic_features": True}


def export_only(n: int, args) -> dict:
    """The FiftyOne export of the run ``one_size`` left for n samples, timed and metered alone (stage "FiftyOne
    export"): to measure the export again without the fit."""
    import crust_clean
    from crust_clean.review.fiftyone import export_to_fiftyone

    run = crust_clean.Run(args.work / "runs" / f"n{n}")
    meter = StageMeter()
    undo = instrument_export(meter)
    try:
        with meter.stage("FiftyOne export"):
            export_to_fiftyone(run, name=f"scale-{n}", persistent=False, overwrite=True)
    finally:
        for u in undo:
            u()
        meter.close()
    return {name: {"seconds": round(meter.seconds[name], 2), "peak_rss_mb": round(meter.peak[name] / 2**20),
                   "peak_anonymous_mb": round(meter.peak_anonymous[name] / 2**20)}
            for name in meter.seconds}


def exponents(rows: list[dict]) -> dict:
    """Least-squares slope of log seconds against log n per stage (and the whole fit), over the sizes run."""
    rows = sorted(rows, key=lambda r: r["n"])
    out = {}
    names = {name for r in rows for name in r["stages"]} | {"fit"}
    for name in sorted(names):
        points = [(r["n"], r["fit_seconds"] if name == "fit" else r["stages"].get(name, {}).get("seconds"))
                  for r in rows]
        points = [(n, s) for n, s in points if s]
        if len(points) >= 2:
            x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            out[name] = round(float(np.polyfit(x, y, 1)[0]), 2)
    return out


# ------------------------------------------------------------------------------------- partition sweep
def partition_sweep(args) -> list[dict]:
    import crust_clean
    import stages

    work = stages.frozen.prepare(args.data, args.frozen_work)
    shared = {"test_labels": pd.read_csv(work / "test.csv")["label"].map(stages.CLASSES.index).to_numpy()}
    config, options = stages.FITS["crust frozen head"]
    rows = []
    for labels in args.partition_labels:
        for size in PARTITION_SIZES:
            start = time.perf_counter()
            run = crust_clean.fit(work / f"{labels}.csv", out=args.work / "partition-runs" / f"{labels}-{size}",
                                  true_labels=str(work / "truth.csv"), partition_size=size,
                                  **stages.base(argparse.Namespace(work=work), config), **options)
            seconds = time.perf_counter() - start
            detection = run.metrics["summary"]["detection"]
            from crust_clean.method.metrics import ranking_metrics

            scores = run.scores
            truth = pd.read_csv(work / "truth.csv").set_index("sample_id")["true_label"]
            noisy = (scores["given_label"].to_numpy() != truth.loc[scores["sample_id"]].to_numpy())
            ranking = ranking_metrics(scores["score"].to_numpy(), noisy)
            selecting = [e["selection_seconds"] for e in run.metrics["epochs"]
                         if e["epoch"] >= run.config.crust.warmup_epochs]
            rows.append({"labels": labels, "partition_size": size, "auroc": round(detection["auroc"], 4),
                         "average_precision": round(detection["average_precision"], 4),
                         "precision_top_1pct": round(ranking["precision_top_1pct"], 4),
                         "test_accuracy": round(stages.test_accuracy(run, shared, work), 4),
                         "selection_seconds_per_epoch": round(float(np.mean(selecting)), 3),
                         "fit_seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ output
def markdown(result: dict) -> str:
    lines = ["# Scale: a frozen-feature fit from 10,000 to 1,000,000 samples", "",
             f"{result['machine']}; {result['date']}. Command: `python benchmarks/scale.py` (`make bench-scale`). "
             "Features are synthetic (10 classes, 1,280-d, 10 % wrong labels) and put in the feature cache; every "
             "other stage is the product's `crust_clean.fit` with `--config frozen-lite0` (30 epochs). Seconds are "
             "each stage's total over the fit; memory is the process's peak while the stage ran: its anonymous memory "
             "(the heap, what the process holds itself) / its resident set (RSS, which also counts the pages of the "
             "memory-mapped feature cache and embeddings.npy it has touched: page cache the kernel can drop), in MB.",
             ""]
    rows = sorted(result.get("curve", []), key=lambda r: r["n"])
    if rows:
        names = [s for s in ("read features", "training", "eval passes", "selection", "ledger", "neighbours", "scores",
                             "other outputs", "report", "FiftyOne export") if any(s in r["stages"] for r in rows)]
        lines += ["| n | fit s | " + " | ".join(f"{s} s (MB)" for s in names) + " | selection s / epoch |",
                  "|---|---|" + "---|" * len(names) + "---|"]
        for r in rows:
            cells = [f"{r['stages'][s]['seconds']} ({_memory(r['stages'][s])})" if s in r["stages"] else "-"
                     for s in names]
            lines.append(f"| {r['n']:,} | {r['fit_seconds']} | " + " | ".join(cells) +
                         f" | {r['selection_seconds_per_epoch']} |")
        lines += ["", "Exponent of each stage's growth (slope of log seconds on log n), over all sizes: " +
                  ", ".join(f"{k} {v}" for k, v in result["exponents"].items()) + "."]
        if len(rows) >= 2:
            last = exponents(rows[-2:])
            lines += ["", f"From {rows[-2]['n']:,} to {rows[-1]['n']:,} (past the sizes where selection partitions a "
                      "class and the neighbours come from the index): " +
                      ", ".join(f"{k} {v}" for k, v in last.items()) + "."]
        lines.append("")
        top = rows[-1]
        if top["n"] == 1_000_000:
            lines += ["Goals at 1,000,000 samples on 2 cores:", ""]
            figures = {"selection": top["selection_seconds_per_epoch"],
                       "neighbours": top["stages"].get("neighbours", {}).get("seconds"), "fit": top["fit_seconds"]}
            for key, (what, limit) in GOALS.items():
                got = figures[key]
                lines.append(f"- {what}: {got} s against under {limit} s: {'met' if got is not None and got < limit else 'not met'}")
            lines.append("")
    exported = [r for r in rows if "export" in r]
    if exported:
        lines += ["The FiftyOne export's parts (`--export-only N`: the export of the run the curve left, alone), "
                  "seconds (heap / RSS peak MB):", "",
                  "| n | whole export | " + " | ".join(EXPORT_PARTS) + " |", "|---|---|" + "---|" * len(EXPORT_PARTS)]
        for r in exported:
            cells = [f"{r['export'][f'export: {part}']['seconds']} ({_memory(r['export'][f'export: {part}'])})"
                     if f"export: {part}" in r["export"] else "-" for part in EXPORT_PARTS]
            whole = r["stages"]["FiftyOne export"]
            lines.append(f"| {r['n']:,} | {whole['seconds']} ({_memory(whole)}) | " + " | ".join(cells) + " |")
        lines.append("")
    sweep = result.get("partitions", [])
    if sweep:
        lines += ["## What partitioned selection costs in detection (CIFAR-10N, frozen Lite2 head, seed 0)", "",
                  "| labels | partition size | AUROC | AP | precision top 1 % | test accuracy | selection s / epoch | fit s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sweep:
            lines.append(f"| {r['labels']} | {r['partition_size']:,} | {r['auroc']:.4f} | {r['average_precision']:.4f} | "
                         f"{r['precision_top_1pct']:.3f} | {r['test_accuracy']:.3f} | {r['selection_seconds_per_epoch']} | "
                         f"{r['fit_seconds']} |")
    return "\n".join(lines) + "\n"


def _memory(stage: dict) -> str:
    """'anonymous / RSS' peak MB (RSS alone for rows measured before the anonymous peak was)."""
    rss = f"{stage['peak_rss_mb']:,}"
    return f"{stage['peak_anonymous_mb']:,} / {rss}" if "peak_anonymous_mb" in stage else rss


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(result.get("curve", []), key=lambda r: r["n"])
    if len(rows) < 2:
        return
    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(n, [r["fit_seconds"] for r in rows], "k-o", label="whole fit")
    for name in ("training", "eval passes", "selection", "ledger", "neighbours", "scores", "report"):
        seconds = [r["stages"].get(name, {}).get("seconds") for r in rows]
        if all(seconds):
            ax.loglog(n, seconds, "-o", label=name, markersize=3)
    ax.loglog(n, [rows[0]["fit_seconds"] * x / n[0] for x in n], "k:", label="linear from the first size")
    ax.set_xlabel("samples")
    ax.set_ylabel("seconds (30 epochs)")
    ax.set_title("frozen-lite0 fit, 2 CPU cores, synthetic 1,280-d features")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--work", type=Path, default=HERE.parent.parent / "bench-work" / "scale")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--frozen-work", type=Path, default=HERE.parent.parent / "bench-work" / "frozen")
    parser.add_argument("--fiftyone-up-to", type=int, default=50_000, help="export to FiftyOne up to this many samples")
    parser.add_argument("--export-only", type=int, metavar="N",
                        help="only the FiftyOne export of the n=N run a curve left (its stage in that row)")
    parser.add_argument("--partitions-only", action="store_true")
    parser.add_argument("--no-partitions", action="store_true")
    parser.add_argument("--partition-labels", nargs="+", default=["random1", "worse"])
    args = parser.parse_args()
    args.work, args.frozen_work = args.work.resolve(), args.frozen_work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import torch

    path = RESULTS / "scale.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result.update({"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, no GPU",
                   "date": time.strftime("%Y-%m-%d")})

    def save() -> None:
        path.write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "scale.md").write_text(markdown(result))
        plot(result)

    if args.export_only:
        measured = export_only(args.export_only, args)
        row = next(r for r in result["curve"] if r["n"] == args.export_only)
        row["stages"]["FiftyOne export"] = measured.pop("FiftyOne export")
        row["export"] = measured
        print(row["stages"]["FiftyOne export"], measured, flush=True)
        save()
        return
    if not args.partitions_only and len(args.sizes) > 1:  # each size in a process of its own: memory freed by
        # one fit stays in the process (the allocator keeps it), and would count as the next one's peak
        import subprocess

        for n in args.sizes:
            subprocess.run([sys.executable, __file__, "--sizes", str(n), "--no-partitions", "--work", str(args.work),
                            "--fiftyone-up-to", str(args.fiftyone_up_to)], check=True)
        result = json.loads(path.read_text())
    elif not args.partitions_only:
        n = args.sizes[0]
        row = one_size(n, args)
        print(json.dumps(row), flush=True)
        result["curve"] = [r for r in result.get("curve", []) if r["n"] != n] + [row]
        result["exponents"] = exponents(result["curve"])
        save()
    if not args.no_partitions:
        result["partitions"] = partition_sweep(args)
        save()
    from detect import write_markdown

    write_markdown()


if __name__ == "__main__":
    main()
