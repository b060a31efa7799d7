"""Loading speed: images per second through the training transform, from each image store, with and
without DataLoader workers, and what the decoded uint8 cache costs to build.

    .venv/bin/python benchmarks/loading.py      # (make bench-loading) writes benchmarks/results/loading.{json,md}

Data: the first N/10 training images of each CIFAR-10 class (32x32 JPEG, ../shared/data/cifar10), written
to a temporary ImageFolder and to a HF ``save_to_disk`` dataset (JPEG bytes in Arrow) outside the
repository and removed afterwards. Each pass reads every image once in a shuffled order through the
train transform of configs/cpu-quick.yaml (random resized crop to 32 px, tensor, normalise), batch 128, as
an epoch does; the figure is the best of ``--repeats`` passes. A training step of the same config is timed
for scale, and then whole ``fit`` epochs (2 epochs, the first a warm-up on all data) compare the
defaults against workers and the cache end to end. Not a test: figures depend on the machine, which the JSON records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def write_subset(zip_path: Path, per_class: int, folder: Path) -> None:
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "train" and parts[2].endswith(".jpg") and int(parts[2][:4]) < per_class:
                target = folder / parts[1] / parts[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))


def write_hf(samples, target: Path) -> None:
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=samples.class_names)})
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": p.read_bytes(), "path": None} for p in samples.paths], "label": samples.labels.tolist()},
        features=features)
    table.save_to_disk(str(target))


def epoch_pass(images, labels, transform, workers: int, repeats: int) -> float:
    """Best seconds for one shuffled pass over every image through ``transform``."""
    import torch

    from crust_clean.data.torch_datasets import ImageDataset

    best = float("inf")
    for repeat in range(repeats):
        loader = torch.utils.data.DataLoader(ImageDataset(images, labels, transform), batch_size=128, shuffle=True,
                                             num_workers=workers, generator=torch.Generator().manual_seed(repeat))
        start = time.perf_counter()
        for _ in loader:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def fit_epochs(folder: Path, out: Path, workers: int, cache: str) -> dict:
    """Wall seconds of a 2-epoch cpu-quick fit (selection on in epoch 1) and its per-epoch phase times."""
    import crust_clean

    start = time.perf_counter()
    run = crust_clean.fit(folder, out=out, config="cpu-quick", epochs=2, warmup_epochs=1, workers=workers,
                          cache=cache, progress=False)
    wall = time.perf_counter() - start
    epochs = run.metrics["epochs"]
    row = {"workers": workers, "cache": cache, "wall_seconds": round(wall, 2),
           "epoch_seconds": [e["epoch_seconds"] for e in epochs], "train_seconds": [e["train_seconds"] for e in epochs],
           "eval_seconds": [e["eval_seconds"] for e in epochs],
           "data_share": round(sum(e["data_seconds"] for e in epochs) / sum(e["epoch_seconds"] for e in epochs), 3)}
    print(row, flush=True)
    return row


def train_step_seconds(cfg) -> float:
    import torch

    from crust_clean.train.models import create_model

    model = create_model(cfg.model, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 3, cfg.model.img_size, cfg.model.img_size), torch.randint(0, 10, (128,))
    times = []
    for _ in range(6):
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def run(data_root: Path, n: int, repeats: int) -> dict:
    import torch

    from crust_clean.config import from_dict, load_yaml
    from crust_clean.data.images import DecodedCache
    from crust_clean.data.sources import load_source
    from crust_clean.train.models import build_transforms, create_model, data_config

    cfg = from_dict(load_yaml("cpu-quick"))
    model = create_model(cfg.model, 10)
    train_tf, _ = build_transforms(data_config(model, cfg.model), cfg.train)
    rows, scans = [], {}
    with tempfile.TemporaryDirectory(prefix="crust-clean-loading-") as tmp:
        tmp = Path(tmp)
        write_subset(data_root / "cifar10" / "cifar10-jpeg.zip", n // 10, tmp / "folder")
        start = time.perf_counter()
        files = load_source(tmp / "folder")
        scans["imagefolder"] = time.perf_counter() - start
        write_hf(files, tmp / "hf")
        start = time.perf_counter()
        rows_source = load_source(tmp / "hf")
        scans["hf save_to_disk"] = time.perf_counter() - start
        stores = {"files (JPEG)": files.images, "HF rows (JPEG bytes in Arrow)": rows_source.images}
        builds = {}
        for where in ("memory", "disk"):
            start = time.perf_counter()
            stores[f"cache: {where}"] = DecodedCache.build(
                files.images, cfg.model.img_size, file=tmp / "cache" / "pixels.u8" if where == "disk" else None,
                workers=2)
            builds[where] = time.perf_counter() - start
        for name, store in stores.items():
            for workers in (0, 2):
                seconds = epoch_pass(store, files.labels, train_tf, workers, repeats)
                rows.append({"store": name, "workers": workers, "seconds": round(seconds, 3),
                             "images_per_second": round(len(files) / seconds)})
                print(rows[-1], flush=True)
        fits = [fit_epochs(tmp / "folder", tmp / f"run-{workers}-{cache}", workers, cache)
                for workers, cache in ((0, "none"), (2, "none"), (0, "memory"), (2, "memory"))]
    step = train_step_seconds(cfg)
    return {
        "n_images": len(files), "image_size": "32x32 JPEG", "transform": "cpu-quick train transform (32 px)",
        "repeats": repeats, "scan_seconds": {k: round(v, 3) for k, v in scans.items()},
        "cache_build_seconds_2_workers": {k: round(v, 3) for k, v in builds.items()},
        "passes": rows,
        "fits": fits,
        "train_step_seconds_batch_128": round(step, 4),
        "train_images_per_second": round(128 / step),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads()},
    }


def write_report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "loading.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Loading speed ({result['n_images']} CIFAR-10 images, {result['image_size']}, "
        f"{result['machine']['cpus']} CPUs)", "",
        f"One shuffled pass through the {result['transform']}, batch 128, best of {result['repeats']}.", "",
        "| store | workers | seconds | images/s |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['store']} | {r['workers']} | {r['seconds']:.2f} | {r['images_per_second']:,} |"
              for r in result["passes"]]
    scans = ", ".join(f"{k} {v:.2f} s" for k, v in result["scan_seconds"].items())
    builds = ", ".join(f"{k} {v:.2f} s" for k, v in result["cache_build_seconds_2_workers"].items())
    lines += ["", f"Reading the source (header check of every image): {scans}.",
              f"Building the decoded cache (2 workers): {builds}.",
              f"For scale: one training step (resnet10t, 32 px, batch 128) takes {result['train_step_seconds_batch_128']:.3f} s "
              f"= {result['train_images_per_second']:,} images/s on this machine.", "",
              "Whole fits (cpu-quick, 2 epochs: a warm-up epoch on all data, then a 50 % coreset epoch; "
              "wall time includes reading the source and, with the cache, building it):", "",
              "| workers | cache | wall s | epoch s (warm-up, coreset) | train s | eval s | waiting for data |",
              "|---:|---|---:|---|---|---|---:|"]
    lines += [f"| {f['workers']} | {f['cache']} | {f['wall_seconds']:.1f} | "
              + " | ".join(", ".join(f"{x:.1f}" for x in f[key]) for key in ("epoch_seconds", "train_seconds", "eval_seconds"))
              + f" | {f['data_share']:.0%} |" for f in result["fits"]]
    (out / "loading.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("-n", type=int, default=10_000, help="images (a multiple of 10, at most 50,000)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    result = run(args.data_root, args.n, args.repeats)
    write_report(result, args.out)
    print(f"wrote {args.out / 'loading.md'}")


if __name__ == "__main__":
    main()
