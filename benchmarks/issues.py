"""Beyond wrong labels, where the truth is known: near-duplicates, outliers and image quality planted into real
images, found by a crust-clean fit, by cleanlab's Datalab on the same embeddings and by cleanvision on the files.

    .venv/bin/python benchmarks/issues.py          (make bench-issues; about 10 minutes on 2 cores)

Two datasets, each fit once by crust-clean (``--config frozen-lite0``: frozen EfficientNet-Lite0 features at
128 px, a CRUST head, 30 epochs, seed 0) on its clean labels:
  cifar  the first 10,000 CIFAR-10 training images, and planted among them: ``DUPLICATES`` copies of as many
         images, ``EDITS`` in turn (re-encoded as JPEG 75, resized to 64 px, brightened by 10 %, shifted by a
         pixel, flipped; every other ten of them given another class), ``OUTLIERS`` MNIST digits given CIFAR-10
         labels at random (out of distribution, and close to each other), and ``QUALITY`` copies per quality kind
         (dark, light, blurry, low-information, grayscale, odd size, odd aspect ratio).
  mnist  the first 10,000 MNIST training digits and 1 % Fashion-MNIST images (100) given digit labels at random.
What is measured against the planted truth: near-duplicate pairs found (the copy in the same group as its
original), by edit, and how many other samples are put in groups (CIFAR-10 holds near-duplicates of its own, so
these are not all false), for crust-clean's rule, Datalab's ``near_duplicate`` check and cleanvision's near and
exact duplicates (perceptual hashes of the files), and over a sweep of
thresholds (what chose ``NEAR_DUPLICATE_SIMILARITY``); outlier AUROC / AP and precision / recall / F1 at each
method's own rule (Datalab's ``outlier`` check; crust-clean's distance to the neighbours alone; crust-clean over a
sweep of ``OUTLIER_SPREAD``); each quality kind's recall and CIFAR-10's own images flagged, beside cleanvision's
check of the same kind. Cost: the fit's seconds in checks (``checks_seconds`` of its summary: groups, outliers and
quality rules, the files), the neighbour search over every sample against the training samples only (what the
agreement searched before), and the quality measures of the decoding pass (``data.quality.measure`` timed alone
on the decoded images), each against the fit's wall time. Writes benchmarks/results/issues.json, issues.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BASE, DUPLICATES, OUTLIERS, QUALITY = 10_000, 200, 100, 30
#: The near-duplicate copies, in turn (``edited_copy``).
EDITS = ("re-encoded", "resized", "brightened", "shifted", "flipped")
#: cleanvision's name of each quality kind.
CLEANVISION_KINDS = {"dark": "dark", "light": "light", "blurry": "blurry", "low-information": "low_information",
                     "grayscale": "grayscale", "odd-size": "odd_size", "odd-aspect-ratio": "odd_aspect_ratio"}
SIMILARITIES = (0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.98)
SPREADS = (3.0, 4.0, 5.0, 6.0, 8.0)


# ----------------------------------------------------------------------------------------------- data
def _save(image: Image.Image, path: Path, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=quality) if path.suffix == ".jpg" else image.save(path)


def _idx_images(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)


def _idx_labels(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)


def planted_quality(image: Image.Image, kind: str) -> Image.Image:
    """A copy of ``image`` with one quality issue."""
    if kind == "dark":
        return Image.eval(image, lambda v: v // 12)
    if kind == "light":
        return Image.eval(image, lambda v: 255 - (255 - v) // 12)
    if kind == "blurry":
        return image.filter(ImageFilter.GaussianBlur(2))
    if kind == "low-information":
        mean = tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(0))
        return Image.new("RGB", image.size, mean)
    if kind == "grayscale":
        return image.convert("L").convert("RGB")
    if kind == "odd-size":
        return image.resize((6, 6), Image.Resampling.BICUBIC)
    if kind == "odd-aspect-ratio":
        return image.resize((image.width * 3, image.height), Image.Resampling.BICUBIC)
    raise ValueError(kind)


def edited_copy(image: Image.Image, edit: str) -> Image.Image:
    """A near-duplicate of a 32-px ``image``: what copies in a collected dataset tend to be."""
    if edit == "re-encoded":  # saved as JPEG at quality 75 by the caller
        return image
    if edit == "resized":
        return image.resize((64, 64), Image.Resampling.BICUBIC)
    if edit == "brightened":
        return ImageEnhance.Brightness(image).enhance(1.1)
    if edit == "shifted":
        return image.crop((1, 1, 32, 32)).resize((32, 32), Image.Resampling.BICUBIC)
    if edit == "flipped":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    raise ValueError(edit)


def prepare_cifar(data: Path, work: Path) -> tuple[Path, dict]:
    """work/cifar/: the images, manifest.csv (path, label) and truth.json (what was planted where)."""
    from crust_clean.config import QUALITY_KINDS

    root = work / "cifar"
    if (root / "truth.json").is_file():
        return root / "manifest.csv", json.loads((root / "truth.json").read_text())
    rng = np.random.default_rng(0)
    index = pd.read_csv(data / "cifar10" / "index.csv")
    train = index[index["split"] == "train"].sort_values("index").head(BASE)
    archive = zipfile.ZipFile(data / "cifar10" / "cifar10-jpeg.zip")
    rows = []
    for i, (source, label) in enumerate(zip(train["path"], train["label"])):
        path = f"images/base/{i:05d}.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(archive.read(source))
        rows.append((path, CLASSES[label]))

    def base_image(i: int) -> Image.Image:
        return Image.open(root / rows[i][0]).convert("RGB")

    chosen = rng.choice(BASE, DUPLICATES + QUALITY * len(QUALITY_KINDS), replace=False)
    pairs = []
    for k, original in enumerate(chosen[:DUPLICATES]):
        edit = EDITS[k % len(EDITS)]
        label = rows[original][1]
        if (k // len(EDITS)) % 2:
            label = CLASSES[(CLASSES.index(label) + int(rng.integers(1, 10))) % 10]
        path = f"images/duplicates/{k:03d}.{'jpg' if edit == 're-encoded' else 'png'}"
        _save(edited_copy(base_image(original), edit), root / path, quality=75)
        pairs.append([rows[original][0], path, edit])
        rows.append((path, label))
    digits = _idx_images(data / "mnist" / "train-images-idx3-ubyte.gz")
    outliers = []
    for k, digit in enumerate(digits[-OUTLIERS:]):
        path = f"images/outliers/{k:03d}.png"
        _save(Image.fromarray(digit).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC), root / path)
        outliers.append(path)
        rows.append((path, CLASSES[int(rng.integers(0, 10))]))
    quality = {}
    for j, kind in enumerate(QUALITY_KINDS):
        quality[kind] = []
        for k, original in enumerate(chosen[DUPLICATES + j * QUALITY:DUPLICATES + (j + 1) * QUALITY]):
            path = f"images/quality/{kind}/{k:03d}.png"
            _save(planted_quality(base_image(original), kind), root / path)
            quality[kind].append(path)
            rows.append((path, rows[original][1]))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(root / "manifest.csv", index=False)
    truth = {"duplicate_pairs": pairs,
             "different_label_pairs": [p for k, p in enumerate(pairs) if (k // len(EDITS)) % 2],
             "outliers": outliers, "quality": quality}
    (root / "truth.json").write_text(json.dumps(truth))
    return root / "manifest.csv", truth


def prepare_mnist(data: Path, work: Path) -> tuple[Path, dict]:
    """work/mnist/: 10,000 MNIST digits and 100 Fashion-MNIST images with digit labels, manifest and truth."""
    root = work / "mnist"
    if (root / "truth.json").is_file():
        return root / "manifest.csv", json.loads((root / "truth.json").read_text())
    rng = np.random.default_rng(0)
    digits = _idx_images(data / "mnist" / "train-images-idx3-ubyte.gz")[:BASE]
    labels = _idx_labels(data / "mnist" / "train-labels-idx1-ubyte.gz")[:BASE]
    fashion = _idx_images(data / "fashion-mnist" / "train-images-idx3-ubyte.gz")[:OUTLIERS]
    rows, outliers = [], []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        path = f"images/digits/{i:05d}.png"
        _save(Image.fromarray(digit), root / path)
        rows.append((path, str(label)))
    for k, item in enumerate(fashion):
        path = f"images/fashion/{k:03d}.png"
        _save(Image.fromarray(item), root / path)
        outliers.append(path)
        rows.append((path, str(int(rng.integers(0, 10)))))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(root / "manifest.csv", index=False)
    truth = {"outliers": outliers}
    (root / "truth.json").write_text(json.dumps(truth))
    return root / "manifest.csv", truth


# ----------------------------------------------------------------------------------------------- fits
def fit(manifest: Path, work: Path, name: str):
    import crust_clean

    start = time.perf_counter()
    run = crust_clean.fit(manifest, out=work / "runs" / name, config="frozen-lite0",
                          feature_cache=str(work / "features"), seed=0, progress=False, overwrite=True)
    return run, time.perf_counter() - start


def datalab(embeddings: np.ndarray, labels: np.ndarray) -> tuple[dict, float]:
    from cleanlab import Datalab

    start = time.perf_counter()
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=embeddings, issue_types={"near_duplicate": {}, "outlier": {}})
    return {"near_duplicate": lab.get_issues("near_duplicate"), "outlier": lab.get_issues("outlier")}, \
        time.perf_counter() - start


def cleanvision(paths: list[str]) -> tuple:
    """cleanvision's Imagelab on the image files: (its issues table, its info: duplicate sets, seconds)."""
    from cleanvision import Imagelab

    start = time.perf_counter()
    lab = Imagelab(filepaths=paths)
    lab.find_issues({kind: {} for kind in (*CLEANVISION_KINDS.values(), "near_duplicates", "exact_duplicates")})
    return lab.issues, lab.info, time.perf_counter() - start


# -------------------------------------------------------------------------------------------- figures
def prf(flagged: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((flagged & truth).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    return {"precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4), "flagged": int(flagged.sum())}


def outlier_figures(score: np.ndarray, flagged: np.ndarray, truth: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"auroc": round(float(roc_auc_score(truth, score)), 4),
            "ap": round(float(average_precision_score(truth, score)), 4), **prf(flagged, truth)}


def duplicate_figures(found: int, pairs: int, planted: np.ndarray, base: np.ndarray, flagged: np.ndarray) -> dict:
    """Planted pairs ``found`` in one group, and the samples ``flagged`` outside the ``planted`` pairs: CIFAR-10's
    own images (``base``) and the other planted images (outliers, quality issues)."""
    return {"pairs_found": int(found), "pairs": pairs, "recall": round(found / pairs, 4),
            "other_samples_flagged": int((flagged & ~planted).sum()),
            "cifar_images_flagged": int((flagged & ~planted & base).sum())}


def one_dataset(name: str, manifest: Path, truth: dict, work: Path) -> dict:
    from crust_clean.config import QUALITY_KINDS
    from crust_clean.data.images import FileImages
    from crust_clean.data.quality import measure
    from crust_clean.method.issues import (flag_outliers, near_duplicate_groups, neighbour_similarities,
                                          robust_deviations)
    from crust_clean.method.neighbours import NEIGHBOURS, nearest_neighbours

    run, fit_seconds = fit(manifest, work, name)
    summary = run.metrics["summary"]
    checks, samples = run.checks(), run.samples
    position = {path: i for i, path in enumerate(samples["sample_id"])}
    embeddings = np.asarray(run.embeddings(), dtype=np.float32)
    labels = samples["given_label"].to_numpy()
    out = {"samples": len(samples), "fit_seconds": round(fit_seconds, 1),
           "feature_seconds": summary.get("feature_seconds"), "checks_seconds": summary.get("checks_seconds"),
           "neighbour_seconds": summary.get("neighbour_seconds")}

    # cost: the neighbours of every sample against those of the training samples only; the quality measures
    start = time.perf_counter()
    nearest_neighbours(embeddings, NEIGHBOURS)
    out["neighbours_all_seconds"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    nearest_neighbours(embeddings, NEIGHBOURS, rows=np.nonzero(samples["split"].to_numpy() == "train")[0])
    out["neighbours_train_seconds"] = round(time.perf_counter() - start, 2)
    images = FileImages([Path(p) for p in samples["path"]])
    decoded = [images[i] for i in range(len(images))]
    start = time.perf_counter()
    for image in decoded:
        measure(image)
    out["quality_measure_seconds"] = round(time.perf_counter() - start, 2)

    lab, out["datalab_seconds"] = datalab(embeddings, labels)
    is_outlier = np.zeros(len(samples), bool)
    is_outlier[[position[p] for p in truth["outliers"]]] = True
    judged = np.ones(len(samples), bool)  # the planted quality issues are far from everything too: judged there
    for paths in truth.get("quality", {}).values():
        judged[[position[p] for p in paths]] = False
    score = checks["outlier_score"].to_numpy()
    neighbours = nearest_neighbours(embeddings, NEIGHBOURS)
    similarities = neighbour_similarities(embeddings, neighbours)
    isolation = 1 - np.nanmean(similarities, axis=1)
    datalab_score = 1 - lab["outlier"]["outlier_score"].to_numpy()
    out["outliers"] = {
        "judged": int(judged.sum()),
        "crust-clean": outlier_figures(score[judged], checks["outlier"].to_numpy()[judged], is_outlier[judged]),
        "Datalab": outlier_figures(datalab_score[judged], lab["outlier"]["is_outlier_issue"].to_numpy()[judged],
                                   is_outlier[judged]),
        "crust-clean, distance to the neighbours alone": outlier_figures(
            isolation[judged], flag_outliers(robust_deviations(isolation))[judged], is_outlier[judged]),
        "crust-clean by spread": {str(s): prf(flag_outliers(score, spread=s)[judged], is_outlier[judged])
                                  for s in SPREADS},
    }
    if "duplicate_pairs" not in truth:
        return out

    pairs = [(position[a], position[b], edit) for a, b, edit in truth["duplicate_pairs"]]
    planted = np.zeros(len(samples), bool)
    planted[[a for a, _, _ in pairs] + [b for _, b, _ in pairs]] = True
    sets = lab["near_duplicate"]["near_duplicate_sets"].to_numpy()
    base = samples["sample_id"].str.startswith("images/base/").to_numpy()

    def found(groups: np.ndarray, edit: str | None = None) -> int:
        return int(sum(groups[a] == groups[b] >= 0 for a, b, e in pairs if edit in (None, e)))

    def datalab_found(edit: str | None = None) -> int:
        return int(sum(b in set(sets[a]) or a in set(sets[b]) for a, b, e in pairs if edit in (None, e)))

    vision, vision_info, out["cleanvision_seconds"] = cleanvision([str(p) for p in samples["path"]])
    vision_group = np.full(len(samples), -1)
    path_row = {str(p): i for i, p in enumerate(samples["path"])}
    for number, members in enumerate(vision_info["near_duplicates"]["sets"] + vision_info["exact_duplicates"]["sets"]):
        vision_group[[path_row[str(m)] for m in members]] = number

    group = checks["near_duplicate_group"].to_numpy()
    near = {"crust-clean": duplicate_figures(found(group), len(pairs), planted, base, group >= 0),
            "cleanvision": duplicate_figures(found(vision_group), len(pairs), planted, base, vision_group >= 0),
            "Datalab": duplicate_figures(datalab_found(), len(pairs), planted, base,
                                         lab["near_duplicate"]["is_near_duplicate_issue"].to_numpy()),
            "by edit": {edit: {"pairs": sum(e == edit for _, _, e in pairs), "crust-clean": found(group, edit),
                               "Datalab": datalab_found(edit), "cleanvision": found(vision_group, edit),
                               "median similarity": round(float(np.median(
                                   [_cosine(embeddings[a], embeddings[b]) for a, b, e in pairs if e == edit])), 3)}
                        for edit in EDITS}}
    differ = {(position[a], position[b]) for a, b, _ in truth["different_label_pairs"]}
    labels_differ = checks["group_labels_differ"].to_numpy()
    near["different-label pairs found"] = int(sum(group[a] == group[b] >= 0 for a, b in differ))
    near["different-label pairs found and flagged as such"] = int(sum(labels_differ[a] and group[a] == group[b] >= 0
                                                                      for a, b in differ))
    near["crust-clean by similarity"] = {}
    for threshold in SIMILARITIES:
        swept = near_duplicate_groups(neighbours, similarities, threshold=threshold, typical_share=None)
        near["crust-clean by similarity"][str(threshold)] = duplicate_figures(found(swept), len(pairs), planted, base,
                                                                              swept >= 0)
    out["near_duplicates"] = near
    out["quality"] = {}
    for kind in QUALITY_KINDS:
        planted = np.zeros(len(samples), bool)
        planted[[position[p] for p in truth["quality"][kind]]] = True
        flagged = checks[f"{kind}_issue"].to_numpy()
        theirs = vision[f"is_{CLEANVISION_KINDS[kind]}_issue"].to_numpy()
        out["quality"][kind] = {**prf(flagged, planted), "planted": int(planted.sum()),
                                "CIFAR-10 images flagged": int((flagged & base).sum()),
                                "cleanvision": {**prf(theirs, planted), "CIFAR-10 images flagged": int((theirs & base).sum())}}
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def markdown(result: dict) -> str:
    lines = ["# Near-duplicates, outliers and image quality where the truth is known", "",
             f"{result['machine']}, {result['date']}. Command: `python benchmarks/issues.py` (`make bench-issues`); "
             "see its docstring for what was planted. One crust-clean fit per dataset (frozen Lite0 head, "
             "seed 0); Datalab on the same embeddings (the run's `embeddings.npy`).", ""]
    for name, data in result["datasets"].items():
        lines += [f"## {name}: {data['samples']:,} samples", ""]
        if "near_duplicates" in data:
            near = data["near_duplicates"]
            lines += ["Near-duplicates: planted pairs found (the copy in one group with its original) and the samples "
                      "flagged outside the planted pairs (the planted outliers and quality issues, and CIFAR-10's own images):", "",
                      "| method | pairs found | recall | other samples flagged | of them CIFAR-10 images |",
                      "|---|---|---|---|---|"]
            rows = [(method, near[method]) for method in ("crust-clean", "Datalab", "cleanvision")]
            rows += [(f"crust-clean, similarity >= {threshold}", row)
                     for threshold, row in near["crust-clean by similarity"].items()]
            for method, row in rows:
                lines.append(f"| {method} | {row['pairs_found']} / {row['pairs']} | {row['recall']:.3f} | "
                             f"{row['other_samples_flagged']} | {row['cifar_images_flagged']} |")
            lines += ["", "By edit (pairs found at each method's default; the median cosine similarity of the pairs' "
                          "embeddings):", "", "| copy | pairs | crust-clean | Datalab | cleanvision | median similarity |",
                      "|---|---|---|---|---|---|"]
            for edit, row in near["by edit"].items():
                lines.append(f"| {edit} | {row['pairs']} | {row['crust-clean']} | {row['Datalab']} | "
                             f"{row['cleanvision']} | {row['median similarity']:.3f} |")
            lines += ["", f"Of the {near['crust-clean']['pairs'] // 2} planted pairs with different labels, "
                          f"{near['different-label pairs found']} found, "
                          f"{near['different-label pairs found and flagged as such']} of them in a group flagged "
                          "'labels differ' (first in review order).", ""]
        outliers = data["outliers"]
        lines += [f"Outliers ({outliers['judged']:,} samples judged: the planted quality issues are left out, they "
                  "are judged below):", "", "| method | AUROC | AP | P | R | F1 | flagged |",
                  "|---|---|---|---|---|---|---|"]
        rows = [(method, outliers[method])
                for method in ("crust-clean", "Datalab", "crust-clean, distance to the neighbours alone")]
        rows += [(f"crust-clean, spread {spread}", row) for spread, row in outliers["crust-clean by spread"].items()]
        for method, row in rows:  # the sweep's rows have no AUROC / AP (one ranking, another cut)
            ranking = f"{row['auroc']:.4f} | {row['ap']:.4f}" if "auroc" in row else "|"
            lines.append(f"| {method} | {ranking} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
                         f"{row['flagged']} |")
        if "quality" in data:
            lines += ["", "Image quality: planted copies found, and CIFAR-10's own images flagged (not planted; "
                          "CIFAR-10 holds grayscale photos):", "",
                      "| kind | planted found | recall | precision | CIFAR-10 images flagged | cleanvision: found | "
                      "precision | CIFAR-10 images flagged |", "|---|---|---|---|---|---|---|---|"]
            for kind, row in data["quality"].items():
                theirs = row["cleanvision"]
                lines.append(f"| {kind} | {round(row['recall'] * row['planted'])} / {row['planted']} | "
                             f"{row['recall']:.3f} | {row['precision']:.3f} | {row['CIFAR-10 images flagged']} | "
                             f"{round(theirs['recall'] * row['planted'])} / {row['planted']} | "
                             f"{theirs['precision']:.3f} | {theirs['CIFAR-10 images flagged']} |")
        fit_seconds = data["fit_seconds"]
        features = (f"feature pass {data['feature_seconds']} s" if data["feature_seconds"]
                    else "features read from the cache an earlier run of this benchmark wrote")
        lines += ["", f"Cost against the fit's {fit_seconds:.0f} s ({features}): the "
                      f"checks {data['checks_seconds']} s ({data['checks_seconds'] / fit_seconds:.1%}); the neighbour "
                      f"search over every sample {data['neighbours_all_seconds']} s against "
                      f"{data['neighbours_train_seconds']} s over the training samples only "
                      f"(+{(data['neighbours_all_seconds'] - data['neighbours_train_seconds']) / fit_seconds:.1%}); "
                      f"the quality measures {data['quality_measure_seconds']} s "
                      f"({data['quality_measure_seconds'] / fit_seconds:.1%}); Datalab's two checks "
                      f"{data['datalab_seconds']:.1f} s" + (f"; cleanvision's, reading the image files, "
                                                              f"{data['cleanvision_seconds']:.1f} s"
                                                              if "cleanvision_seconds" in data else "") + ".", ""]
    if "cost" in result:
        cost = result["cost"]
        added = ", ".join(f"{part} {seconds} s" for part, seconds in cost["added_seconds"].items())
        lines += ["## What the checks cost a fit of all 50,000 CIFAR-10N images", "",
                  f"`python benchmarks/issues.py --cost`: a first `frozen-lite0` fit of {cost['samples']:,} images "
                  f"(random1 labels) took {cost['fit_seconds']:.0f} s, {cost['feature_seconds']} s of them in the "
                  f"feature pass. Added by the checks: {added}, together {cost['added_share']:.1%} of the fit. "
                  f"Found: " + ", ".join(f"{issue} {n}" for issue, n in cost["issues"].items()) + ".", ""]
    if "checks_at_scale" in result:
        at = result["checks_at_scale"]
        lines += [f"`python benchmarks/issues.py --checks-at {at['samples']}`: the checks alone on {at['samples']:,} "
                  f"synthetic 1,280-d rows (benchmarks/scale.py's features, neighbours drawn at random) took "
                  f"{at['seconds']} s.", ""]
    return "\n".join(lines) + "\n"


def cost(data: Path, work: Path) -> dict:
    """What the checks add to a first fit (feature pass included) on all 50,000 CIFAR-10N images (random1 labels,
    benchmarks/frozen.py's manifest): the fit's seconds in checks, the neighbour search over every sample less the
    search over the training samples (what the agreement alone needs), and the quality measures timed alone on
    every decoded image (inside the fit they run in the decoding pass)."""
    import frozen
    from crust_clean.data.images import FileImages
    from crust_clean.data.quality import measure
    from crust_clean.method.neighbours import NEIGHBOURS, nearest_neighbours

    frozen.prepare(data, work / "cifar10n")
    run, fit_seconds = fit(work / "cifar10n" / "random1.csv", work, "cifar10n-random1")
    summary = run.metrics["summary"]
    embeddings = np.asarray(run.embeddings(), dtype=np.float32)
    train = np.nonzero(run.samples["split"].to_numpy() == "train")[0]
    start = time.perf_counter()
    nearest_neighbours(embeddings, NEIGHBOURS, rows=train)
    train_seconds = time.perf_counter() - start
    images = FileImages([Path(p) for p in run.samples["path"]])
    decoded = [images[i] for i in range(len(images))]
    start = time.perf_counter()
    for image in decoded:
        measure(image)
    quality_seconds = time.perf_counter() - start
    added = {"checks": summary["checks_seconds"],
             "neighbours of the validation samples too": max(0.0, summary["neighbour_seconds"] - train_seconds),
             "quality measures": quality_seconds}
    return {"samples": len(run.samples), "fit_seconds": round(fit_seconds, 1),
            "feature_seconds": summary.get("feature_seconds"), "neighbour_seconds": summary["neighbour_seconds"],
            "neighbours_train_seconds": round(train_seconds, 2),
            "added_seconds": {k: round(v, 2) for k, v in added.items()},
            "added_share": round(sum(added.values()) / fit_seconds, 4), "issues": summary["issues"]}


def checks_at(n: int, work: Path) -> dict:
    """Seconds of ``run.checks`` alone (groups, outliers, quality rules, issue rows, checks.parquet written) on
    ``n`` synthetic 1,280-d rows in a memory-mapped .npy (benchmarks/scale.py's features: 10 classes), with
    neighbours drawn at random (scattered reads, as a large index's are)."""
    import scale
    from crust_clean.run.checks import issue_rows, sample_checks

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, n)
    path = work / f"checks-{n}.npy"
    embeddings = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, scale.WIDTH))
    scale.fill_synthetic(embeddings, truth, rng)
    embeddings.flush()
    embeddings = np.load(path, mmap_mode="r")
    neighbours = rng.integers(0, n, (n, 10))
    labels = np.array([f"class{c}" for c in range(10)], dtype=object)[truth]
    split = np.where(rng.random(n) < 0.9, "train", "val").astype(object)
    measures = np.tile(np.array([0.1, 0.9, 6.0, 1.0, 0.2], np.float32), (n, 1))
    start = time.perf_counter()
    checks = sample_checks([f"s{i:07d}" for i in range(n)], labels, split, embeddings, neighbours, measures,
                           np.full((n, 2), 32))
    issue_rows(checks)
    checks.to_parquet(work / f"checks-{n}.parquet")
    seconds = time.perf_counter() - start
    path.unlink()
    (work / f"checks-{n}.parquet").unlink()
    return {"samples": n, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=HERE.parent.parent / "bench-work" / "issues")
    parser.add_argument("--checks-at", type=int, metavar="N", help="only the checks alone on N synthetic rows (their "
                                                                     "own section of issues.json)")
    parser.add_argument("--cost", action="store_true", help="only the cost on all 50,000 CIFAR-10N images (its own "
                                                                "section of issues.json)")
    args = parser.parse_args()
    work = args.work.resolve()
    if args.cost or args.checks_at:
        result = json.loads((RESULTS / "issues.json").read_text())
        work.mkdir(parents=True, exist_ok=True)
        if args.cost:
            result["cost"] = cost(args.data.resolve(), work)
        if args.checks_at:
            result["checks_at_scale"] = checks_at(args.checks_at, work)
        print(json.dumps({k: result.get(k) for k in ("cost", "checks_at_scale")}), flush=True)
        (RESULTS / "issues.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "issues.md").write_text(markdown(result))
        from detect import write_markdown

        write_markdown()
        return
    result = {"machine": f"{platform.machine()}, 2 threads", "date": time.strftime("%Y-%m-%d"), "datasets": {}}
    if (RESULTS / "issues.json").is_file():  # the --cost and --checks-at sections stay until measured again
        result.update({k: v for k, v in json.loads((RESULTS / "issues.json").read_text()).items()
                       if k in ("cost", "checks_at_scale")})
    for name, prepare in (("cifar", prepare_cifar), ("mnist", prepare_mnist)):
        manifest, truth = prepare(args.data, work)
        result["datasets"][name] = one_dataset(name, manifest, truth, work)
        print(json.dumps(result["datasets"][name])[:2000], flush=True)
    (RESULTS / "issues.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "issues.md").write_text(markdown(result))
    from detect import write_markdown

    write_markdown()


if __name__ == "__main__":
    main()
