"""How many suspects to flag: the run's rule against confident-learning counts, on the stages.py runs.

    .venv/bin/python benchmarks/suspect_count.py --labels near-clean aggre random1 worse --seeds 0 1 2

The run's `suspect` column flags the n highest scores; only n is in question here (the ranking is the run's
score). Candidate n, each from one run folder of benchmarks/stages.py (no training here):
  disagree        the run's rule: training samples the saved model labels differently
  cj saved        confident learning's off-diagonal count (coreset_size.estimate_noise_rates) on the saved
                  model's probabilities of the training samples (in sample)
  cj held out     the same rates estimated on the held-out split (out of sample), times each class's size
  cj warm-up      the rates the fit estimated at the end of its warm-up to size the coresets (recovered from
                  the logged coreset fractions: 1 - fraction - noise_margin; a class at the floor reads low)
  truth           the true number of wrong labels (F1 = precision = recall there; an upper bound of the idea)
F1 of the n highest scores against the true labels; run folders that are missing are skipped. Writes benchmarks/results/suspect-count.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import crust_clean
from crust_clean.method.coreset_size import estimate_noise_rates
from crust_clean.method.scores import top_scores

HERE = Path(__file__).resolve().parent
METHODS = ["crust last stage", "ce last stage", "crust frozen head"]


def softmax(logits: np.ndarray) -> np.ndarray:
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True)


def counts(run: crust_clean.Run, wrong: pd.Series) -> dict:
    """{rule: n} for one run; ``wrong`` (indexed by sample_id) marks the truly wrong labels."""
    classes = run.model_info["class_names"]
    samples = run.samples.set_index("sample_id")
    given = samples.given_label.map({c: i for i, c in enumerate(classes)})
    probs = softmax(np.stack(run.predictions().set_index("sample_id").reindex(samples.index).logits.to_numpy()))
    train = (samples.split == "train").to_numpy()
    sizes = np.bincount(given[train], minlength=len(classes))
    found = {"disagree": int((probs[train].argmax(1) != given[train]).sum())}
    found["cj saved"] = int(round(estimate_noise_rates(probs[train], given[train].to_numpy(), len(classes)) @ sizes))
    held = ~train
    found["cj held out"] = int(round(estimate_noise_rates(probs[held], given[held].to_numpy(), len(classes)) @ sizes))
    logged = [e["coreset_fractions"] for e in run.metrics["epochs"] if e.get("coreset_fractions")]
    if logged:
        rates = np.clip(1 - np.asarray(logged[0]) - run.config.crust.noise_margin, 0, 1)
        found["cj warm-up"] = int(round(rates @ sizes))
    found["truth"] = int(wrong.sum())
    return found


def f1_at(score: pd.Series, wrong: pd.Series, k: int) -> float:
    flagged = top_scores(score.to_numpy(), k)
    hits = int((flagged & wrong.to_numpy()).sum())
    return 2 * hits / (k + int(wrong.sum())) if k else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE.parent.parent / "bench-work" / "frozen")
    parser.add_argument("--labels", nargs="+", default=["near-clean", "aggre", "random1", "worse"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    truth = pd.read_csv(args.work / "truth.csv").set_index("sample_id").true_label
    results = {}
    for labels in args.labels:
        for seed, method in [(seed, method) for seed in args.seeds for method in METHODS]:
            folder = args.work / "runs" / f"cifar10n-{labels}-stages" / f"seed{seed}" / method.replace(" ", "-")
            if not (folder / "scores.csv").is_file():
                continue
            run = crust_clean.Run(folder)
            scores = run.scores.set_index("sample_id")
            scores = scores[scores.score.notna()]  # the training split
            wrong = scores.given_label != truth.reindex(scores.index)
            found = counts(run, wrong)
            row = {rule: {"flagged": n, "f1": round(f1_at(scores.score, wrong, n), 4)} for rule, n in found.items()}
            results.setdefault(labels, {}).setdefault(str(seed), {})[method] = row
            print(labels, seed, method, {rule: (v["flagged"], v["f1"]) for rule, v in row.items()})
    out = HERE / "results" / "suspect-count.json"
    out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    rules = ["disagree", "cj saved", "cj held out", "cj warm-up", "truth"]
    lines = ["# How many suspects: F1 of the n highest scores (flagged n in brackets)", "",
             "`benchmarks/suspect_count.py` on the runs of `benchmarks/stages.py`; see its docstring.", "",
             "| labels | seed | method | " + " | ".join(rules) + " |", "|---" * (len(rules) + 3) + "|"]
    for labels, seeds in results.items():
        for seed, methods in seeds.items():
            for method, found in methods.items():
                cells = [f"{found[r]['f1']:.3f} ({found[r]['flagged']})" if r in found else "" for r in rules]
                lines.append(f"| {labels} | {seed} | {method} | " + " | ".join(cells) + " |")
    (HERE / "results" / "suspect-count.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
