"""How long a 300-suspect review takes in operator calls: the review plugin's operators driven as the App drives
them, on a finished run with true labels (the demo's), by a reviewer who always decides right.

    .venv/bin/python benchmarks/review_time.py demo/run --suspects 300      (make bench-review; after make demo)

The run is exported into a throw-away FiftyOne dataset with the top 300 scores as suspects. Two ways through the
"to review" queue, each from an empty queue:
  one by one   one tile per call: relabel to the model's prediction where that is the true label, drop where the
               label is wrong otherwise, keep where it is right (as a careful reviewer does)
  by screen    a screen of 24 tiles (6 x 4 at the App's default zoom) per step: one call per decision present on
               that screen, its tiles selected together
Each call is the server side of one click on "Execute": input validation, the decision written, the selection
cleared, the queue counted. The time a reviewer spends looking is not measured. Writes
benchmarks/results/review-time.json and review-time.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PLUGIN = "@crust-clean/review"
OPERATORS = {"keep": "mark_correct", "drop": "mark_mislabeled", "relabel": "relabel"}


def right_decisions(run, truth: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    """What a reviewer who knows the truth decides on each sample: (decision, new label)."""
    table = run.review_table().merge(truth, on="sample_id")
    decided = {}
    for row in table.itertuples():
        if row.given_label == row.true_label:
            decided[row.sample_id] = ("keep", None)
        elif row.predicted_label == row.true_label:
            decided[row.sample_id] = ("relabel", row.predicted_label)
        else:
            decided[row.sample_id] = ("drop", None)
    return decided


def timed_call(dataset, decision: str, new_label: str | None, ids: list[str]) -> tuple[float, dict]:
    import fiftyone.operators as foo

    params = {"new_label": new_label} if decision == "relabel" else {}
    start = time.perf_counter()
    result = foo.execute_operator(f"{PLUGIN}/{OPERATORS[decision]}", ctx={
        "dataset": dataset, "view": dataset.load_saved_view("to review"), "selected": ids, "params": params})
    return time.perf_counter() - start, result.result


def one_by_one(dataset, decided: dict) -> list[float]:
    seconds = []
    queue = dataset.load_saved_view("to review")
    while len(queue):
        sample = queue.first()
        decision, label = decided[sample.crust_sample_id]
        elapsed, _ = timed_call(dataset, decision, label, [sample.id])
        seconds.append(elapsed)
        queue = dataset.load_saved_view("to review")
    return seconds


def by_screen(dataset, decided: dict, screen: int) -> list[float]:
    seconds = []
    queue = dataset.load_saved_view("to review")
    while len(queue):
        ids, sample_ids = queue.limit(screen).values(["id", "crust_sample_id"])
        groups: dict[tuple, list[str]] = {}
        for fiftyone_id, sample_id in zip(ids, sample_ids):
            groups.setdefault(decided[sample_id], []).append(fiftyone_id)
        for (decision, label), members in groups.items():
            elapsed, _ = timed_call(dataset, decision, label, members)
            seconds.append(elapsed)
        queue = dataset.load_saved_view("to review")
    return seconds


def summary(seconds: list[float]) -> dict:
    return {"calls": len(seconds), "total_s": round(sum(seconds), 2), "median_call_s": round(
        statistics.median(seconds), 3), "max_call_s": round(max(seconds), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "demo" / "run"))
    parser.add_argument("--truth", help="sample_id,true_label CSV [default: the demo's, beside the run]")
    parser.add_argument("--suspects", type=int, default=300)
    parser.add_argument("--screen", type=int, default=24, help="tiles on one screen of the App")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    args = parser.parse_args()
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    from crust_clean.review.app import prepare_app_environment
    from crust_clean.review.decision_store import clear_decisions, queue_counts
    from crust_clean.review.fiftyone import export_to_fiftyone
    from crust_clean.run.folder import Run

    prepare_app_environment()  # the plugin, as `crust-clean review` finds it
    run = Run(args.run)
    truth = pd.read_csv(args.truth or Path(args.run).parent / "data" / "truth.csv", dtype=str)
    decided = right_decisions(run, truth)
    dataset = export_to_fiftyone(run, name="crust-review-timing", persistent=False, overwrite=True,
                                 top=args.suspects, visualization="none", carry_forward=False).dataset
    try:
        queue = dataset.load_saved_view("to review")
        assert len(queue) == args.suspects, f"the queue holds {len(queue)} suspects, not {args.suspects}"
        wrong = sum(decided[s][0] != "keep" for s in queue.values("crust_sample_id"))
        single = one_by_one(dataset, decided)
        counts_after = queue_counts(dataset)
        clear_decisions(dataset)
        screens = by_screen(dataset, decided, args.screen)
    finally:
        dataset.delete()
    result = {
        "run": args.run, "suspects": args.suspects, "mislabeled_among_them": wrong,
        "screen": args.screen, "one_by_one": summary(single), "by_screen": summary(screens),
        "queue_after": {"decided": counts_after[0], "left": counts_after[1]},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "python": sys.version.split()[0], "note": args.note,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "review-time.json").write_text(json.dumps(result, indent=2) + "\n")
    one, screen = result["one_by_one"], result["by_screen"]
    (RESULTS / "review-time.md").write_text(
        f"# A {args.suspects}-suspect review in operator calls\n\n"
        f"`benchmarks/review_time.py` on {result['run']} ({wrong} of the {args.suspects} suspects mislabeled); "
        f"server-side time of each call, not the reviewer's looking. {args.note}\n\n"
        "| way through the queue | calls | total s | median s / call | slowest call s |\n|---|---|---|---|---|\n"
        f"| one tile per call | {one['calls']} | {one['total_s']} | {one['median_call_s']} | {one['max_call_s']} |\n"
        f"| a screen of {args.screen} per step, one call per decision on it | {screen['calls']} | "
        f"{screen['total_s']} | {screen['median_call_s']} | {screen['max_call_s']} |\n\n"
        f"Queue after the one-by-one pass: {counts_after[0]} decided, {counts_after[1]} left.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
