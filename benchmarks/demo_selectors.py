"""Selector x class-split grid on the demo data (digits, 20 % symmetric noise), several seeds.

    .venv/bin/python benchmarks/demo_selectors.py           # writes benchmarks/results/demo_selectors.{json,md}

For each seed s the demo data is rebuilt with noise seed s and the fit uses seed s, with
configs/cpu-quick.yaml (resnet10t, 32x32, 30 epochs, augmentation). Reported per setting, mean +- std
over seeds: detection AUROC / precision / recall of ``score`` (suspect = score > 0.5), AUROC of
1 - selection rate, how many wrong labels the final model fits, mean coreset label accuracy, clean
test accuracy of the saved model, and wall seconds. A small, easy dataset in a short augmented run:
the regime where plain training does not memorise; the detection benchmark covers the others.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SETTINGS = [
    ("centrality", "given"), ("centrality", "predicted"),
    ("facility-location", "given"), ("facility-location", "predicted"),
    ("none", "given"),
]


def one(setting: tuple[str, str], seed: int, data: dict, tmp: Path, config: Path, epochs: int | None) -> dict:
    import crust_clean
    from crust_clean.method.metrics import detection_metrics

    selector, split = setting
    options = {"epochs": epochs} if epochs else {}
    run = crust_clean.fit(data["images"], out=tmp / f"{selector}-{split}-{seed}", config=config, selector=selector,
                          class_split=split, seed=seed, true_labels=str(data["truth"]), progress=False, **options)
    scores = run.scores
    truth = pd.read_csv(data["truth"], dtype=str).set_index("sample_id")["true_label"]
    noisy = scores["given_label"].astype(str).to_numpy() != truth.loc[scores["sample_id"]].to_numpy()
    detection = detection_metrics(scores["score"].to_numpy(), noisy)
    epochs_m = run.metrics["epochs"]
    coreset_acc = [e["coreset_label_accuracy"] for e in epochs_m if "coreset_label_accuracy" in e]
    row = {
        "selector": selector, "class_split": split, "seed": seed,
        "auroc": detection["auroc"], "precision": detection["precision"], "recall": detection["recall"],
        "selection_rate_auroc": detection_metrics(1 - scores["selection_rate"].to_numpy(), noisy)["auroc"]
        if selector != "none" else None,
        "never_selected": int(scores["never_selected"].sum()),
        "never_selected_noisy_share": float(noisy[scores["never_selected"].to_numpy(bool)].mean())
        if scores["never_selected"].any() else None,
        "noisy_fit_rate_final": epochs_m[-1]["noisy_fit_rate"],
        "coreset_label_accuracy": float(np.mean(coreset_acc)) if coreset_acc else None,
        "test_accuracy": run.evaluate(data["test"]),
        "wall_seconds": run.metrics["summary"]["wall_seconds"],
    }
    print(json.dumps(row), flush=True)
    return row


def summarise(rows: list[dict]) -> list[dict]:
    frame = pd.DataFrame(rows)
    out = []
    for (selector, split), group in frame.groupby(["selector", "class_split"], sort=False):
        entry = {"selector": selector, "class_split": split, "seeds": len(group)}
        for column in ["auroc", "precision", "recall", "selection_rate_auroc", "noisy_fit_rate_final",
                       "coreset_label_accuracy", "test_accuracy", "wall_seconds", "never_selected"]:
            values = group[column].dropna().astype(float)
            entry[column] = [round(values.mean(), 4), round(values.std(ddof=0), 4)] if len(values) else None
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    config = HERE.parent / "configs" / "cpu-quick.yaml"
    started = time.time()
    from crust_clean.demo import build_digits

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            data = build_digits(Path(tmp) / f"data-{seed}", seed=seed)
            rows += [one(setting, seed, data, Path(tmp), config, args.epochs) for setting in SETTINGS]
    summary = summarise(rows)
    result = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
              "machine": f"{platform.machine()}, cpu", "config": str(config.relative_to(HERE.parent)),
              "wall_seconds": round(time.time() - started), "summary": summary, "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_selectors.json").write_text(json.dumps(result, indent=2) + "\n")

    def cell(value):
        if value is None:
            return "-"
        return f"{value[0]:.3f} ± {value[1]:.3f}"

    lines = ["# Selectors on the demo data (digits, 20 % symmetric noise)", "",
             f"`{result['command']}`, {result['date']}, {result['machine']}, config `{result['config']}`, "
             f"mean ± std over {args.seeds} seeds. Suspect = score > 0.5.", "",
             "| selector | split | AUROC | precision | recall | AUROC of 1 - selection rate | wrong labels fitted "
             "(final) | coreset label acc. | clean test acc. | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
        lines.append(f"| {e['selector']} | {e['class_split'] if e['selector'] != 'none' else '-'} | {cell(e['auroc'])} | "
                     f"{cell(e['precision'])} | {cell(e['recall'])} | {cell(e['selection_rate_auroc'])} | "
                     f"{cell(e['noisy_fit_rate_final'])} | {cell(e['coreset_label_accuracy'])} | "
                     f"{cell(e['test_accuracy'])} | {e['wall_seconds'][0]:.0f} |")
    (args.out / "demo_selectors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
