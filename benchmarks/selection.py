"""Selection speed: facility-location / centrality time, peak memory and k-medoids cost vs n, beside
apricot-select's and submodlib's lazy greedy on the same objective, and selection's share of epoch time in
the demo fit.

    .venv/bin/python benchmarks/selection.py            # (make bench-selection) writes benchmarks/results/selection.{json,md,png}

Proxies for the timing sweep are synthetic but shaped like real ones: 20 Gaussian clusters
(unit-variance centres, 0.3 spread) in d = 10 (both of our proxies' size for 10 classes: the last-layer
proxy comes in K coordinates, proxies.py) and d = 512 (a proxy as wide as resnet18's features, as other
tools use). k = n/2 (the default coreset fraction), float32, default chunk size.
facility-location:partitioned is what a fit does for a class above crust.partition_size (20,000): random
parts, each selecting its share (selection.in_partitions).
The peers (`pip install apricot-select submodlib-py`) optimise the same facility location from the dense
similarity matrix d0 - distance, which they need and we do not; its construction is timed with them.
Each (method, n, d) runs in a fresh subprocess; peak memory is the largest growth of its resident set
during the selection (sampled every 5 ms). Not a test: figures depend on the machine, which the JSON records.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTITION_SIZE = 20_000  # crust.partition_size's default


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _dense_similarity(x):
    """The peers' input: the full (n, n) float32 matrix d0 - ||x_i - x_j||, our objective's similarities."""
    from crust_clean.method.facility_location import distance_bound, distances

    return (distance_bound(x) - distances(x, x)).cpu().numpy()


def _select(method: str, x, k: int):
    """Medoid indices of ``method`` on rows ``x``; the peers get the dense similarity matrix (built inside
    the timed part: they need it, we do not)."""
    import numpy as np
    import torch

    from crust_clean.method.facility_location import facility_location
    from crust_clean.method.selection import centrality, in_partitions

    if method == "centrality":
        return centrality(x, k).medoids
    if method == "facility-location:partitioned":  # the default for classes above crust.partition_size
        return in_partitions(x, k, facility_location, partition_size=PARTITION_SIZE,
                             generator=torch.Generator().manual_seed(0)).medoids
    if method.startswith("facility-location:"):
        return facility_location(x, k, greedy=method.split(":")[1], generator=torch.Generator().manual_seed(0)).medoids
    if method == "apricot:lazy":
        from apricot import FacilityLocationSelection

        return np.asarray(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy")
                          .fit(_dense_similarity(x)).ranking)
    if method == "submodlib:lazy":
        from submodlib import FacilityLocationFunction

        function = FacilityLocationFunction(n=len(x), mode="dense", sijs=_dense_similarity(x), separate_rep=False)
        return np.asarray([i for i, _ in function.maximize(budget=k, optimizer="LazyGreedy", show_progress=False)])
    raise ValueError(method)


def k_medoids_cost(x, medoids) -> float:
    """Sum over rows of the distance to the nearest medoid (the objective F hides differences behind n * d0)."""
    import torch

    from crust_clean.method.facility_location import distances

    chosen = x[torch.as_tensor(medoids, device=x.device)]
    return float(sum(distances(x[a:a + 2048], chosen).min(1).values.double().sum() for a in range(0, len(x), 2048)))


def measure_one(method: str, n: int, d: int, device: str) -> dict:
    """Run in a child process: time one selection and the memory it adds."""
    import torch

    torch.manual_seed(0)
    centres = torch.randn(20, d)
    x = (centres[torch.randint(0, 20, (n,))] + 0.3 * torch.randn(n, d)).float().to(device)
    if method.startswith("apricot"):  # compile apricot's numba code outside the timed part
        _select(method, x[:64], 32)
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # the RSS high-water mark of the selection alone (ru_maxrss counts set-up too)
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample)
    sampler.start()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    medoids = _select(method, x, n // 2)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak_mb = (max(peak[0], _rss_bytes()) - before) / 2**20
    return {"method": method, "n": n, "d": d, "device": device, "seconds": round(seconds, 3),
            "peak_extra_mb": round(peak_mb, 1), "input_mb": round(n * d * 4 / 2**20, 1),
            "k_medoids_cost": round(k_medoids_cost(x, medoids), 3)}


def sweep(ns: list[int], dims: list[int], methods: list[str], max_n: dict[str, int], device: str) -> list[dict]:
    rows = []
    for d in dims:
        for n in ns:
            for method in methods:
                if n > max_n.get(method, 10**9) or (method == "facility-location:partitioned" and n <= PARTITION_SIZE):
                    continue  # (partitioned is the whole-class greedy up to PARTITION_SIZE)
                out = subprocess.run([sys.executable, __file__, "--one", method, str(n), str(d), device],
                                     capture_output=True, text=True, check=True, cwd=ROOT)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{method:28s} n={n:6d} d={d:4d} {row['seconds']:9.2f} s  +{row['peak_extra_mb']:8.1f} MB  "
                      f"cost {row['k_medoids_cost']}", flush=True)
                rows.append(row)
    return rows


def demo_share(config: Path, selectors: list[str], epochs: int | None) -> list[dict]:
    """Selection and eval-pass time as a share of epoch time in the demo's fit, per selector."""
    import tempfile

    import crust_clean
    from crust_clean.demo import build_digits

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = build_digits(Path(tmp) / "data")
        for selector in selectors:
            options = {"epochs": epochs} if epochs else {}
            run = crust_clean.fit(data["images"], out=Path(tmp) / selector, config=config, selector=selector,
                                  progress=False, **options)
            epochs_m = run.metrics["epochs"]
            warmup = run.config.crust.warmup_epochs if selector != "none" else 0
            selecting = [e for e in epochs_m if e["epoch"] >= warmup]
            total = sum(e["epoch_seconds"] for e in selecting)
            rows.append({
                "selector": selector,
                "fit_seconds": run.metrics["summary"]["wall_seconds"],
                "epochs_with_selection": len(selecting) if selector != "none" else 0,
                "selection_share": round(sum(e["selection_seconds"] for e in selecting) / total, 4),
                "eval_pass_share": round(sum(e["eval_seconds"] for e in selecting) / total, 4),
                "train_share": round(sum(e["train_seconds"] for e in selecting) / total, 4),
                "mean_epoch_seconds": round(total / len(selecting), 3),
                "coreset_size": selecting[-1]["coreset_size"],
            })
            print(rows[-1], flush=True)
    return rows


def write_report(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Selection speed", "",
        f"Machine: {result['machine']}; torch {result['torch']}; {result['date']}. Command: `{result['command']}`.",
        "", "## Facility location vs n (k = n/2, synthetic clustered proxies, float32, CPU)", "",
        "k-medoids cost: the sum of every row's distance to its nearest medoid (lower is better), relative to our",
        "lazy greedy's on the same rows. apricot and submodlib get the dense similarity matrix d0 - distance",
        "(float32), built inside their timed part; apricot's numba code is compiled before the timer.", "",
        "| method | d | n | seconds | extra peak MB | input MB | k-medoids cost | cost / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = {(r["n"], r["d"]): r["k_medoids_cost"] for r in result["sweep"] if r["method"] == "facility-location:lazy"}
    for r in result["sweep"]:
        ratio = f"{r['k_medoids_cost'] / ours[(r['n'], r['d'])]:.4f}" if (r["n"], r["d"]) in ours else "-"
        lines.append(f"| {r['method']} | {r['d']} | {r['n']} | {r['seconds']} | {r['peak_extra_mb']} | "
                     f"{r['input_mb']} | {r['k_medoids_cost']} | {ratio} |")
    if result["demo"]:
        lines += ["", "## Share of epoch time in the demo fit (epochs after warm-up)", "",
                  "| selector | selection | eval pass (proxies, ledger) | training | s / epoch | coreset |",
                  "|---|---|---|---|---|---|"]
    for r in result["demo"]:
        lines.append(f"| {r['selector']} | {r['selection_share']:.1%} | {r['eval_pass_share']:.1%} | "
                     f"{r['train_share']:.1%} | {r['mean_epoch_seconds']} | {r['coreset_size']} |")
    full = next((r for r in result["demo"] if r["selector"] == "none"), None)
    if full:
        lines += ["", "Whole fit (same epochs, warm-up included) against plain full-data training, same run of this script:",
                  ""]
        lines += [f"- {r['selector']}: {r['fit_seconds']} s vs {full['fit_seconds']} s "
                  f"({r['fit_seconds'] / full['fit_seconds']:.2f}x); epochs after warm-up "
                  f"{r['mean_epoch_seconds'] / full['mean_epoch_seconds']:.2f}x" for r in result["demo"] if r is not full]
    (out / "selection.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sorted({r["method"] for r in result["sweep"]})
    for colour, method in zip(plt.cm.tab10.colors, methods):  # a colour per method, a line style per d
        for style, d in zip(("-", "--", ":"), sorted({r["d"] for r in result["sweep"]})):
            rows = [r for r in result["sweep"] if r["method"] == method and r["d"] == d]
            if rows:
                ax.plot([r["n"] for r in rows], [r["seconds"] for r in rows], marker="o", color=colour,
                        linestyle=style, label=f"{method}, d={d}")
    ax.set(xscale="log", yscale="log", xlabel="samples in the class (n)", ylabel="seconds (k = n/2)",
           title="Coreset selection time, CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "selection.png", dpi=120)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000, 50000, 100000])
    parser.add_argument("--d", type=int, nargs="+", default=[10, 512])
    parser.add_argument("--max-n-stochastic", type=int, default=5000,
                        help="stochastic greedy recomputes distances every step: slow on CPU beyond this")
    parser.add_argument("--max-n-dense", type=int, default=20000,
                        help="apricot and submodlib hold the n x n similarity matrix: not beyond this")
    parser.add_argument("--max-n-whole", type=int, default=50000,
                        help="our lazy greedy over a whole class (beyond: the partitioned default)")
    parser.add_argument("--methods", nargs="+", default=["facility-location:lazy", "facility-location:partitioned",
                                                         "facility-location:stochastic", "centrality", "apricot:lazy",
                                                         "submodlib:lazy"])
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu", help="where our selection runs")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo fit's epoch-time shares")
    parser.add_argument("--demo-epochs", type=int, default=None, help="override the demo config's epochs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import torch

    limits = {"facility-location:stochastic": args.max_n_stochastic, "apricot:lazy": args.max_n_dense,
              "submodlib:lazy": args.max_n_dense, "facility-location:lazy": args.max_n_whole}
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "command": "python " + " ".join(sys.argv),
        "sweep": sweep(args.n, args.d, args.methods, limits, args.device),
        "demo": [] if args.no_demo else demo_share(ROOT / "configs" / "cpu-quick.yaml",
                                                   ["centrality", "facility-location", "none"], args.demo_epochs),
    }
    write_report(result, args.out)
    print(f"wrote {args.out / 'selection.md'}")


if __name__ == "__main__":
    main()
