"""Selection speed: facility-location / centrality time and peak memory vs n, and selection's share
of epoch time in the demo fit.

    .venv/bin/python benchmarks/selection.py            # (make bench-selection) writes benchmarks/results/selection.{json,md,png}

Proxies for the timing sweep are synthetic but shaped like real ones: 20 Gaussian clusters
(unit-variance centres, 0.3 spread) in d = 10 (the logits proxy's size for 10 classes) and d = 512
(resnet18's last-layer proxy). k = n/2 (the default coreset fraction), float32, default chunk size.
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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure_one(method: str, n: int, d: int) -> dict:
    """Run in a child process: time one selection and the memory it adds."""
    import torch

    from crust_clean.selection import centrality, facility_location

    torch.manual_seed(0)
    centres = torch.randn(20, d)
    x = (centres[torch.randint(0, 20, (n,))] + 0.3 * torch.randn(n, d)).float()
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # the RSS high-water mark of the selection alone (ru_maxrss counts set-up too)
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_bytes())

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    if method == "centrality":
        centrality(x, n // 2)
    else:
        facility_location(x, n // 2, greedy=method.split(":")[1], generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak_mb = (max(peak[0], _rss_bytes()) - before) / 2**20
    return {"method": method, "n": n, "d": d, "seconds": round(seconds, 3), "peak_extra_mb": round(peak_mb, 1),
            "input_mb": round(n * d * 4 / 2**20, 1)}


def sweep(ns: list[int], dims: list[int], methods: list[str], max_n: dict[str, int]) -> list[dict]:
    rows = []
    for d in dims:
        for n in ns:
            for method in methods:
                if n > max_n.get(method, 10**9):
                    continue
                out = subprocess.run([sys.executable, __file__, "--one", method, str(n), str(d)],
                                     capture_output=True, text=True, check=True, cwd=ROOT)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{method:28s} n={n:6d} d={d:4d} {row['seconds']:9.2f} s  +{row['peak_extra_mb']:8.1f} MB",
                      flush=True)
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
        "| method | d | n | seconds | extra peak MB | input MB |", "|---|---|---|---|---|---|",
    ]
    for r in result["sweep"]:
        lines.append(f"| {r['method']} | {r['d']} | {r['n']} | {r['seconds']} | {r['peak_extra_mb']} | {r['input_mb']} |")
    lines += ["", "## Share of epoch time in the demo fit (epochs after warm-up)", "",
              "| selector | selection | eval pass (proxies, ledger) | training | s / epoch | coreset |",
              "|---|---|---|---|---|---|"]
    for r in result["demo"]:
        lines.append(f"| {r['selector']} | {r['selection_share']:.1%} | {r['eval_pass_share']:.1%} | "
                     f"{r['train_share']:.1%} | {r['mean_epoch_seconds']} | {r['coreset_size']} |")
    (out / "selection.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in result["sweep"]}):
        for d in sorted({r["d"] for r in result["sweep"]}):
            rows = [r for r in result["sweep"] if r["method"] == method and r["d"] == d]
            if rows:
                ax.plot([r["n"] for r in rows], [r["seconds"] for r in rows], marker="o", label=f"{method}, d={d}")
    ax.set(xscale="log", yscale="log", xlabel="samples in the class (n)", ylabel="seconds (k = n/2)",
           title="Coreset selection time, CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "selection.png", dpi=120)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000, 50000])
    parser.add_argument("--d", type=int, nargs="+", default=[10, 512])
    parser.add_argument("--max-n-stochastic", type=int, default=5000,
                        help="stochastic greedy recomputes distances every step: slow on CPU beyond this")
    parser.add_argument("--demo-epochs", type=int, default=None, help="override the demo config's epochs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import torch

    methods = ["facility-location:lazy", "facility-location:stochastic", "centrality"]
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "command": "python " + " ".join(sys.argv),
        "sweep": sweep(args.n, args.d, methods, {"facility-location:stochastic": args.max_n_stochastic}),
        "demo": demo_share(ROOT / "configs" / "cpu-quick.yaml", ["centrality", "facility-location", "none"],
                           args.demo_epochs),
    }
    write_report(result, args.out)
    print(f"wrote {args.out / 'selection.md'}")


if __name__ == "__main__":
    main()
