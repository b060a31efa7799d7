"""The demo: a noisy ImageFolder built from scikit-learn's bundled digits (no download), a fit on it,
and detection quality against the injected noise.

    python -m crust_clean.demo --out demo --config digits      (what ``make demo`` runs)

Noise: symmetric, ``noise`` share of the fit images get a label drawn uniformly from the *other*
classes (fixed seed). The true labels go to ``OUT/truth.csv`` only; the folder the fit reads has the
noisy labels as class folders. A clean held-out ``OUT/test`` folder measures the robust model.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .config import CLASS_SPLITS, PROXIES, SELECTORS
from .method.metrics import detection_metrics
from .method.noise import symmetric_noise


def build_digits(out: str | Path, *, noise: float = 0.2, test_fraction: float = 0.2, size: int = 32,
                 seed: int = 0) -> dict[str, Path]:
    """Write ``out/images/<noisy label>/*.png``, ``out/truth.csv`` and ``out/test/<true label>/*.png``."""
    from sklearn.datasets import load_digits

    out = Path(out)
    if (out / "truth.csv").exists():  # a previous demo's data: rebuild from scratch
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    n_test = int(round(test_fraction * len(order)))
    test_rows, fit_rows = order[:n_test], order[n_test:]
    true = digits.target[fit_rows]
    given = symmetric_noise(true, noise, 10, rng)

    def save(row: int, folder: Path) -> str:
        pixels = (digits.images[row] * (255 / 16)).astype(np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"digit_{row:04d}.png"
        Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC).save(path)
        return path.name

    images = out / "images"
    with open(out / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sample_id", "true_label"])
        for row, label, truth in zip(fit_rows, given, true):
            name = save(row, images / str(label))
            writer.writerow([f"{label}/{name}", str(truth)])
    for row in test_rows:
        save(row, out / "test" / str(digits.target[row]))
    return {"images": images, "truth": out / "truth.csv", "test": out / "test"}


def main(argv: list[str] | None = None) -> None:
    import crust_clean

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo", help="folder for the data and the run (default: demo)")
    parser.add_argument("--config", default=None,
                        help="config for the fit: a shipped name or a YAML file (make demo: digits)")
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--selector", choices=SELECTORS, help="override the config's selector")
    parser.add_argument("--class-split", choices=CLASS_SPLITS, help="override the config's class split")
    parser.add_argument("--proxy", choices=PROXIES, help="override the config's proxy")
    args = parser.parse_args(argv)

    out = Path(args.out)
    paths = build_digits(out / "data", noise=args.noise, seed=args.seed)
    run = crust_clean.fit(paths["images"], out=out / "run", config=args.config, overwrite=True,
                          true_labels=str(paths["truth"]), seed=args.seed, selector=args.selector,
                          class_split=args.class_split, proxy=args.proxy)
    scores = run.scores
    truth = {}
    with open(paths["truth"]) as f:
        for row in csv.DictReader(f):
            truth[row["sample_id"]] = row["true_label"]
    is_noisy = np.array([truth[s] != g for s, g in zip(scores["sample_id"], scores["given_label"].astype(str))])
    detection = detection_metrics(scores["score"].to_numpy(), is_noisy, scores["suspect"].to_numpy())
    summary = run.metrics["summary"]
    print(f"\nrun folder: {run.path}")
    print(f"training samples: {summary['n_train']} ({is_noisy.sum()} with injected wrong labels, "
          f"{args.noise:.0%} symmetric noise)")
    print(f"suspects ({summary['suspect_rule']}): {detection['flagged']}")
    print(f"detection AUROC {detection['auroc']:.3f}  average precision {detection['average_precision']:.3f}  "
          f"precision {detection['precision']:.3f}  recall {detection['recall']:.3f}  F1 {detection['f1']:.3f}")
    print(f"robust model accuracy on {len(list(paths['test'].rglob('*.png')))} clean held-out images: "
          f"{run.evaluate(paths['test']):.3f}")
    never = scores["never_selected"].to_numpy(dtype=bool)
    if scores["selection_rate"].notna().any():
        rate_auroc = detection_metrics(1 - scores["selection_rate"].to_numpy(), is_noisy)["auroc"]
        print(f"never-selected samples: {never.sum()} ({is_noisy[never].mean() if never.any() else 0:.0%} of them "
              f"mislabeled); AUROC of 1 - selection rate: {rate_auroc:.3f}")
    print(f"wall time {summary['wall_seconds']:.0f} s")
    report = crust_clean.write_report(run)
    print(f"report: {report.path} (open it in a browser, or: crust-clean report {run.path} --open)")


if __name__ == "__main__":
    main()
