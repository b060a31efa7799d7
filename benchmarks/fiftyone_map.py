"""The FiftyOne export's embeddings at scale: the App's map fit on a sample, and where the similarity index keeps
its embeddings.

    .venv/bin/python benchmarks/fiftyone_map.py          (make bench-fiftyone-map; the Lite2 features pass runs once
                                                           if benchmarks/stages.py has not cached them under --work)

Map: the 50,000 EfficientNet-Lite2 pooled features of CIFAR-10's training images (benchmarks/stages.py's cache) drawn
in 2-D by UMAP fit on all of them (what the export did, through FiftyOne Brain) and by the product's ``map_points``
(PCA to ``MAP_PCA_DIMS``, UMAP fit on ``MAP_FIT_ROWS`` rows, every row placed a block at a time), and with other fit
sizes. Quality: the share of each image's 10 nearest images on the map that are of its true class (what a reviewer
sees as clusters). Seconds and the heap's peak (anonymous memory) of each.

Similarity index: 50,000 rows of embeddings (the scale benchmark's 50,000-sample run, 1,280-d) given to FiftyOne
Brain's scikit-learn similarity index as an array (kept in the brain run's own record) or in a sample field (what the
export does now): seconds to write and build, the heap's peak, and the seconds of the first and a second sort by
similarity. Writes benchmarks/results/fiftyone-map.json and fiftyone-map.md (and RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

import scale  # noqa: E402  (the heap meter, the synthetic run)
import stages  # noqa: E402  (the shared data and feature cache)

#: (fit rows, PCA dimensions first; 0: none) tried beside the product's choice and UMAP on all rows.
TRIED = ((10_000, 50), (20_000, 0))


class HeapPeak:
    """The process's peak anonymous memory since ``reset``, sampled every 0.1 s."""

    def __init__(self):
        self.peak = 0
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, scale.StageMeter.memory()[1])
            time.sleep(0.1)

    def measure(self, function):
        """(what ``function()`` returned, its seconds, the heap's peak meanwhile in MB)."""
        self.peak = 0
        start = time.perf_counter()
        value = function()
        return value, round(time.perf_counter() - start, 1), round(self.peak / 2**20)


def same_class_on_map(points: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    from sklearn.neighbors import NearestNeighbors

    _, found = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return round(float((truth[found[:, 1:]] == truth[:, None]).mean()), 4)


def maps(args, heap: HeapPeak) -> list[dict]:
    import umap

    from crust_clean.review import fiftyone as export

    config, options = stages.FITS["crust frozen head"]
    _, _, found = stages.cached(args, config, args.work / "random1.csv", **options)
    features = found.store.array[0]
    truth = pd.read_csv(args.work / "truth.csv")["true_label"].to_numpy()
    rows = []

    def add(method: str, function) -> None:
        points, seconds, peak = heap.measure(function)
        rows.append({"method": method, "seconds": seconds, "heap_peak_mb": peak,
                     "same_class_on_map": same_class_on_map(points, truth)})
        print(rows[-1], flush=True)

    # umap-learn compiles its numba code on the first fit and the first transform: done before anything is timed
    umap_map(features[:2000], fit_rows=1000, dims=export.MAP_PCA_DIMS)
    add("UMAP fit on all rows (FiftyOne Brain's default)",
        lambda: umap.UMAP(n_components=2, random_state=0).fit_transform(np.asarray(features, dtype=np.float32)))
    add(f"product: PCA {export.MAP_PCA_DIMS}, UMAP fit on {export.MAP_FIT_ROWS:,} rows",
        lambda: export.map_points(features, "umap"))
    for fit_rows, dims in TRIED:
        add(f"PCA {dims}, UMAP fit on {fit_rows:,} rows" if dims else f"UMAP fit on {fit_rows:,} rows",
            lambda: umap_map(features, fit_rows=fit_rows, dims=dims))
    return rows


def umap_map(features: np.ndarray, *, fit_rows: int, dims: int) -> np.ndarray:
    """``map_points``'s recipe with another fit size, or without the PCA (``dims`` 0)."""
    import umap
    from sklearn.decomposition import PCA

    fitted = np.sort(np.random.default_rng(0).choice(len(features), fit_rows, replace=False))
    sample = np.asarray(features[fitted], dtype=np.float32)
    pca = PCA(dims, random_state=0).fit(sample) if dims else None
    reduce = pca.transform if dims else (lambda block: block)
    reducer = umap.UMAP(n_components=2, random_state=0).fit(reduce(sample))
    return np.concatenate([reducer.transform(reduce(np.asarray(features[s:s + 50_000], dtype=np.float32)))
                           for s in range(0, len(features), 50_000)])


def similarity(embeddings: np.ndarray, heap: HeapPeak) -> list[dict]:
    import fiftyone as fo
    import fiftyone.brain as fob

    from crust_clean.review.fiftyone import EMBEDDING_FIELD, WRITE_BLOCK

    rows = []
    for kept_in in ("the brain run's record", "a sample field"):
        dataset = fo.Dataset()
        n = len(embeddings)
        dataset.add_samples((fo.Sample(filepath=f"/nowhere/{i}.png") for i in range(n)), num_samples=n,
                            progress=False)
        if kept_in == "a sample field":
            def build():
                ids = dataset.values("id")
                for start in range(0, n, WRITE_BLOCK):
                    block = np.asarray(embeddings[start:start + WRITE_BLOCK], dtype=np.float32)
                    dataset.select(ids[start:start + len(block)], ordered=True).set_values(EMBEDDING_FIELD, list(block))
                fob.compute_similarity(dataset, embeddings=EMBEDDING_FIELD, brain_key="s", backend="sklearn",
                                       metric="cosine", progress=False)
        else:
            def build():
                fob.compute_similarity(dataset, embeddings=np.asarray(embeddings, dtype=np.float32), brain_key="s",
                                       backend="sklearn", metric="cosine", progress=False)
        _, seconds, peak = heap.measure(build)
        dataset.clear_cache()  # the first sort loads the index from the database, as the App does
        first, second = dataset.first().id, dataset.skip(7).first().id
        _, first_sort, _ = heap.measure(lambda: dataset.sort_by_similarity(first, k=25, brain_key="s").values("id"))
        _, next_sort, _ = heap.measure(lambda: dataset.sort_by_similarity(second, k=25, brain_key="s").values("id"))
        rows.append({"embeddings_in": kept_in, "rows": n, "width": embeddings.shape[1], "build_seconds": seconds,
                     "heap_peak_mb": peak, "first_sort_seconds": first_sort, "next_sort_seconds": next_sort})
        print(rows[-1], flush=True)
        dataset.delete()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=HERE.parent.parent / "bench-work" / "frozen")
    parser.add_argument("--scale-work", type=Path, default=HERE.parent.parent / "bench-work" / "scale")
    args = parser.parse_args()
    args.work = args.work.resolve()
    stages.frozen.prepare(args.data, args.work)
    heap = HeapPeak()
    run = args.scale_work / "runs" / "n50000"
    if not (run / "embeddings.npy").is_file():
        raise SystemExit(f"{run} has no embeddings.npy: run `python benchmarks/scale.py --sizes 50000` first")
    result = {"machine": f"{platform.machine()}, 2 threads", "date": time.strftime("%Y-%m-%d"),
              "maps": maps(args, heap), "similarity": similarity(np.load(run / "embeddings.npy", mmap_mode="r"), heap)}
    (RESULTS / "fiftyone-map.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "fiftyone-map.md").write_text(markdown(result))
    from detect import write_markdown

    write_markdown()


def markdown(result: dict) -> str:
    lines = ["# The FiftyOne export's embeddings at scale", "",
             f"{result['machine']}, {result['date']}. Command: `python benchmarks/fiftyone_map.py` "
             "(`make bench-fiftyone-map`).", "",
             "## The map: 50,000 EfficientNet-Lite2 features of CIFAR-10 in 2-D", "",
             "Same class on the map: the share of each image's 10 nearest images on the map that are of its true "
             "class. Heap: the process's peak anonymous memory.", "",
             "| map | seconds | heap peak MB | same class on the map |", "|---|---|---|---|"]
    for row in result["maps"]:
        lines.append(f"| {row['method']} | {row['seconds']} | {row['heap_peak_mb']:,} | {row['same_class_on_map']:.4f} |")
    lines += ["", "## The similarity index: where its embeddings are kept", "",
              f"{result['similarity'][0]['rows']:,} embeddings ({result['similarity'][0]['width']}-d) in FiftyOne "
              "Brain's scikit-learn similarity index (cosine); the first sort loads the index from the database.", "",
              "| embeddings kept in | build seconds | heap peak MB | first sort s | next sort s |", "|---|---|---|---|---|"]
    for row in result["similarity"]:
        lines.append(f"| {row['embeddings_in']} | {row['build_seconds']} | {row['heap_peak_mb']:,} | "
                     f"{row['first_sort_seconds']} | {row['next_sort_seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
