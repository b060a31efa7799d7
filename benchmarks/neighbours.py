"""Approximate against exact nearest neighbours on real embeddings: the 50,000 EfficientNet-Lite2 pooled features of
CIFAR-10's training images (the frozen-head recipe's features, benchmarks/stages.py's cache), 10 neighbours.

    .venv/bin/python benchmarks/neighbours.py            (make bench-neighbours; the features pass runs once if
                                                          benchmarks/stages.py has not cached them under --work)

For each faiss index tried (and the product's choice, ``method.neighbours.APPROXIMATE_INDEX``, also with its index
over a random sample of the rows, ``REFERENCE_SAMPLES``): seconds to build and to search all rows, recall@10 against
exact search (the share of the exact 10 neighbours found), and the AUROC of 1 - neighbour agreement for the wrong
labels of CIFAR-10N random1 / aggre / worse and the near-clean set, beside exact search's. Writes
benchmarks/results/neighbours.json and neighbours.md.

    .venv/bin/python benchmarks/neighbours.py --synthetic 200000 1000000

How recall holds up with size, where exact search of every row is out of reach: the scale benchmark's synthetic
features (benchmarks/scale.py: 10 classes, 1,280-d) at each size: the product's search of every row as a fit runs it
(seconds; its index over a random ``REFERENCE_ROWS`` above that many), indexes over all rows beside it up to
200,000, and 2,000 random rows' recall@10 against exact search of those rows over all rows.
Merged into the same results ("synthetic").
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

import stages  # noqa: E402  (the shared data and feature cache)

LABEL_SETS = ("random1", "aggre", "worse", "near-clean")
#: (faiss index description, the search's breadth: efSearch for HNSW, nprobe for IVF, HNSW's efConstruction:
#: None for faiss's default, 40)
TRIED = (("HNSW32", 16, None), ("HNSW32", 32, None), ("HNSW32", 64, None), ("HNSW16,SQ8", 32, None),
         ("HNSW32,SQ8", 32, None), ("HNSW32,SQ8", 24, None), ("HNSW32,SQ8", 32, 20), ("HNSW32,SQ8", 24, 20),
         ("HNSW24,SQ8", 32, 20), ("HNSW16,SQ8", 48, 20), ("HNSW16,SQ8", 64, None), ("IVF256,Flat", 16, None),
         ("PCA128,HNSW32", 32, None))
K = 10
#: Index sizes tried for the product's reference sample (``method.neighbours.REFERENCE_ROWS``) on the 50,000 real
#: rows: half, a fifth (200,000 of a million) and a tenth.
REFERENCE_SAMPLES = (25_000, 10_000, 5_000)
#: Indexes over every row compared with the product's at synthetic sizes up to ``compare_up_to``: the cheaper graph
#: and the product's own (the product's index holds at most ``REFERENCE_ROWS`` rows).
ALL_ROWS = (("HNSW16,SQ8", 64), ("HNSW32,SQ8", 32))


def faiss_neighbours(vectors: np.ndarray, description: str, breadth: int,
                     construction: int | None) -> tuple[np.ndarray, float, float]:
    import faiss

    index = faiss.index_factory(vectors.shape[1], description, faiss.METRIC_INNER_PRODUCT)
    if construction is not None:
        faiss.ParameterSpace().set_index_parameter(index, "efConstruction", construction)
    start = time.perf_counter()
    index.train(vectors)
    index.add(vectors)
    built = time.perf_counter() - start
    faiss.ParameterSpace().set_index_parameter(index, "efSearch" if "HNSW" in description else "nprobe", breadth)
    start = time.perf_counter()
    _, found = index.search(vectors, K + 1)
    searched = time.perf_counter() - start
    keep = np.argsort(found == np.arange(len(found))[:, None], axis=1, kind="stable")[:, :K]
    return np.take_along_axis(found, keep, axis=1), built, searched


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` as float32 unit vectors."""
    x = x.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def unit_blocks(x: np.ndarray, block: int = 65536):
    for start in range(0, len(x), block):
        yield start, unit(x[start:start + block])


def exact_for(x: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, K) exact cosine neighbours of rows ``queries`` among all rows of ``x`` (not themselves)."""
    q = unit(x[queries])
    best_value, best_index = np.full((len(q), 0), -np.inf), np.zeros((len(q), 0), dtype=np.int64)
    for start, block in unit_blocks(x):
        similarity = q @ block.T
        own = (queries >= start) & (queries < start + len(block))
        similarity[np.flatnonzero(own), queries[own] - start] = -np.inf
        top = np.argpartition(-similarity, K, axis=1)[:, :K]
        value = np.concatenate([best_value, np.take_along_axis(similarity, top, 1)], 1)
        index = np.concatenate([best_index, top + start], 1)
        keep = np.argsort(-value, axis=1, kind="stable")[:, :K]
        best_value, best_index = np.take_along_axis(value, keep, 1), np.take_along_axis(index, keep, 1)
    return best_index


def synthetic_recall(sizes: list[int], queries: int = 2000, compare_up_to: int = 200_000) -> list[dict]:
    """Per size and index: seconds, recall@10 against exact search, and the share of the neighbours found in the
    query's true class beside exact search's (what the agreement counts: in 1,280 Gaussian dimensions the
    distances within a class concentrate, so which 10 of a class are nearest is nearly arbitrary and recall is low
    for any approximate search, while the class of the neighbours is what matters). The product's function with
    every row searched, as a fit runs it (its index over a random ``REFERENCE_ROWS`` of the rows above that many);
    up to ``compare_up_to`` rows also the ``ALL_ROWS`` indexes over every row (the build timed, the ``queries``
    rows searched)."""
    import faiss

    import scale
    from crust_clean.method import neighbours as nb

    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        truth = rng.integers(0, scale.CLASSES, n)
        x = np.empty((n, scale.WIDTH), dtype=np.float16)
        scale.fill_synthetic(x, truth, rng)
        asked = np.sort(rng.choice(n, queries, replace=False))
        q = unit(x[asked])
        start = time.perf_counter()
        exact = exact_for(x, asked)
        exact_seconds = time.perf_counter() - start

        def scored(method: str, found: np.ndarray, **seconds) -> None:
            keep = np.argsort(found == asked[:, None], axis=1, kind="stable")[:, :K]
            found = np.take_along_axis(found, keep, axis=1)
            rows.append({"n": n, "method": method, **seconds,
                         "recall": round(float((found[:, :, None] == exact[:, None, :]).any(2).mean()), 4),
                         "same_class": round(float((truth[found] == truth[asked][:, None]).mean()), 4),
                         "same_class_exact": round(float((truth[exact] == truth[asked][:, None]).mean()), 4),
                         "queries": queries, "exact_seconds": round(exact_seconds, 1)})
            print(rows[-1], flush=True)

        start = time.perf_counter()  # the product: every row searched, as a fit does
        found = nb.approximate_neighbours(x, K + 1)[asked]
        scored(f"product: {nb.APPROXIMATE_INDEX}, efSearch {nb.SEARCH_BREADTH}, index over "
               f"{min(n, nb.REFERENCE_ROWS):,} rows", found, all_rows_seconds=round(time.perf_counter() - start, 1))
        for description, breadth in ALL_ROWS if n <= compare_up_to else ():  # indexes over every row
            index = faiss.index_factory(scale.WIDTH, description, faiss.METRIC_INNER_PRODUCT)
            start = time.perf_counter()
            index.train(unit(x[np.sort(rng.choice(n, min(n, 100_000), replace=False))]))
            for _, block in unit_blocks(x):
                index.add(block)
            built = time.perf_counter() - start
            faiss.ParameterSpace().set_index_parameter(index, "efSearch", breadth)
            start = time.perf_counter()
            _, found = index.search(q, K + 1)
            scored(f"{description}, efSearch {breadth}, index over all rows", found, build_seconds=round(built, 1),
                   search_seconds_per_1000=round((time.perf_counter() - start) / queries * 1000, 2))
            del index
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=HERE.parent.parent / "bench-work" / "frozen")
    parser.add_argument("--synthetic", nargs="+", type=int, help="only the recall at these sizes on synthetic features")
    args = parser.parse_args()
    args.work = args.work.resolve()
    if args.synthetic:
        path = RESULTS / "neighbours.json"
        result = json.loads(path.read_text())
        result["synthetic"] = [r for r in result.get("synthetic", []) if r["n"] not in args.synthetic] \
            + synthetic_recall(args.synthetic)  # merged by size
        result["synthetic"].sort(key=lambda r: r["n"])
        path.write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "neighbours.md").write_text(markdown(result))
        from detect import write_markdown

        write_markdown()
        return
    from sklearn.metrics import roc_auc_score

    from crust_clean.method import neighbours as nb

    stages.frozen.prepare(args.data, args.work)
    config, options = stages.FITS["crust frozen head"]
    _, _, found = stages.cached(args, config, args.work / "random1.csv", **options)
    features = found.store.array[0]
    truth = pd.read_csv(args.work / "truth.csv")["true_label"].to_numpy()
    given = {name: pd.read_csv(args.work / f"{name}.csv")["label"].to_numpy() for name in LABEL_SETS}

    def auroc(neighbours: np.ndarray) -> dict:
        return {name: round(float(roc_auc_score(labels != truth, 1 - (labels[neighbours] == labels[:, None]).mean(1))), 4)
                for name, labels in given.items()}

    rows = []
    start = time.perf_counter()
    exact = nb.nearest_neighbours(features, K, exact_up_to=len(features))
    rows.append({"method": "exact (blocks of rows)", "seconds": round(time.perf_counter() - start, 1), "recall": 1.0,
                 "auroc": auroc(exact)})
    print(rows[-1], flush=True)

    def recall(neighbours: np.ndarray) -> float:
        return round(float((neighbours[:, :, None] == exact[:, None, :]).any(2).mean()), 4)

    start = time.perf_counter()
    product = nb.nearest_neighbours(features, K, exact_up_to=0)
    rows.append({"method": f"product: {nb.APPROXIMATE_INDEX}, efSearch {nb.SEARCH_BREADTH}",
                 "seconds": round(time.perf_counter() - start, 1), "recall": recall(product), "auroc": auroc(product)})
    print(rows[-1], flush=True)
    for reference in REFERENCE_SAMPLES:  # what a million rows' index of nb.REFERENCE_ROWS would hold, as a share
        start = time.perf_counter()
        found_rows = nb.approximate_neighbours(features, K, reference_rows=reference)
        rows.append({"method": f"product, index over a random {reference:,} of the rows",
                     "seconds": round(time.perf_counter() - start, 1), "recall": recall(found_rows),
                     "auroc": auroc(found_rows), "reference_rows": reference})
        print(rows[-1], flush=True)
    unit_features = unit(features)
    for description, breadth, construction in TRIED:
        found_rows, built, searched = faiss_neighbours(unit_features, description, breadth, construction)
        built_with = f", efConstruction {construction}" if construction is not None else ""
        rows.append({"method": f"{description}, {'efSearch' if 'HNSW' in description else 'nprobe'} {breadth}{built_with}",
                     "build_seconds": round(built, 1), "search_seconds": round(searched, 1),
                     "seconds": round(built + searched, 1), "recall": recall(found_rows), "auroc": auroc(found_rows)})
        print(rows[-1], flush=True)
    import torch

    result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "date": time.strftime("%Y-%m-%d"),
              "rows": len(features), "width": features.shape[1], "k": K, "exact_up_to": nb.EXACT_UP_TO, "methods": rows}
    earlier = json.loads((RESULTS / "neighbours.json").read_text()) if (RESULTS / "neighbours.json").is_file() else {}
    if "synthetic" in earlier:  # measured by --synthetic, kept
        result["synthetic"] = earlier["synthetic"]
    (RESULTS / "neighbours.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "neighbours.md").write_text(markdown(result))
    from detect import write_markdown

    write_markdown()


def markdown(result: dict) -> str:
    lines = ["# Approximate nearest neighbours", "",
             f"{result['rows']:,} EfficientNet-Lite2 pooled features ({result['width']}-d) of CIFAR-10's training "
             f"images, {result['k']} neighbours by cosine similarity; {result['machine']}, {result['date']}. Command: "
             "`python benchmarks/neighbours.py`. Recall@10: share of the exact neighbours found. AUROC: 1 - "
             "neighbour agreement against CIFAR-10N's wrong labels. The product searches exactly up to "
             f"{result['exact_up_to']:,} rows and with the `product` index above.", "",
             "| method | seconds (build + search) | recall@10 | " + " | ".join(f"AUROC {n}" for n in LABEL_SETS) + " |",
             "|---|---|---|" + "---|" * len(LABEL_SETS)]
    for row in result["methods"]:
        lines.append(f"| {row['method']} | {row['seconds']} | {row['recall']:.4f} | "
                     + " | ".join(f"{row['auroc'][n]:.4f}" for n in LABEL_SETS) + " |")
    if result.get("synthetic"):
        lines += ["", "## Recall at larger sizes (synthetic features)", "",
                  "`python benchmarks/neighbours.py --synthetic 200000 1000000`: the scale benchmark's synthetic "
                  "features (10 classes, 1,280-d: class centres plus Gaussian noise); "
                  f"{result['synthetic'][0]['queries']:,} random rows compared with exact search over all rows.",
                  "Recall is low for any approximate search there: in 1,280 Gaussian dimensions the distances within "
                  "a class concentrate, so which 10 of the class are nearest is nearly arbitrary; the share of the "
                  "neighbours in the query's true class (what the agreement counts) is compared with exact search's.",
                  "", "| rows | index | seconds | recall@10 | same class | same class, exact |",
                  "|---|---|---|---|---|---|"]
        for row in result["synthetic"]:
            seconds = (f"{row['all_rows_seconds']} (every row searched)" if "all_rows_seconds" in row else
                       f"{row['build_seconds']} to build, {row['search_seconds_per_1000']} per 1,000 searched")
            lines.append(f"| {row['n']:,} | {row['method']} | {seconds} | {row['recall']:.4f} | "
                         f"{row['same_class']:.4f} | {row['same_class_exact']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
