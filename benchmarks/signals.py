"""Which per-sample signal of a run separates mislabeled samples best, and which decision rule flags them.

    .venv/bin/python benchmarks/detect.py --dataset mnist-sym50 --seeds 0 1 2 --keep ../bench-runs
    .venv/bin/python benchmarks/signals.py ../bench-runs
    .venv/bin/python benchmarks/signals.py ../bench-work/frozen/runs --out signals-frozen   (after frozen.py)

Reads the run folders ``detect.py --keep`` left (``<runs>/<dataset>/seed<k>/<setting>/`` with ledger.parquet,
scores.csv, samples.csv, predictions.parquet, metrics.json, and ``seed<k>/data/truth.csv``); trains nothing.
Writes benchmarks/results/signals.json and signals.md (``--out NAME``: NAME.json / .md): per dataset and
setting, mean ± std over seeds of

* the AUROC of each candidate signal (higher = more likely mislabeled; below 0.5 = the signal points the
  other way), all from the same run:
  mean 1-p(given) over epochs (crust-clean's score), over the last half of the epochs, at the last epoch,
  under the saved (validation-chosen) model, minus the area under the margin, 1 - selection rate,
  never selected, and the rank average of the score and 1 - selection rate; where the run recorded them, the
  held-out score (mean 1-p(given) over the epochs whose training saw the sample neither as a medoid nor as a
  mixup partner), the same over the epochs it was no medoid (partners' leak: the gap between the two),
  1 - neighbour agreement and the rank averages of the score and of the held-out score with it;
* F1 of candidate decision rules: score > 0.5, the saved model disagrees with the given label, most epochs
  disagree, and the top n-hat by score with n-hat = the number of saved-model disagreements (crust-clean's
  rule) or n-hat = the wrong labels confident learning estimates from the saved model's probabilities (the
  sum over classes of estimated noise rate x class size);
* for crust runs, the coreset's composition: label accuracy of the selected medoids and the selection rate of
  clean and of mislabeled samples, averaged over the selection epochs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run_signals(run: Path, is_noisy_of: pd.Series) -> dict:
    """Signals, rules and coreset composition of one run folder; ``is_noisy_of`` maps sample_id -> bool."""
    from crust_clean.method.coreset_size import estimate_noise_rates
    from crust_clean.method.metrics import ranking_metrics
    from crust_clean.method.scores import top_scores

    ledger = pd.read_parquet(run / "ledger.parquet")
    scores = pd.read_csv(run / "scores.csv", dtype={"sample_id": str}).set_index("sample_id")
    ids = scores.index.to_numpy()
    is_noisy = is_noisy_of.loc[ids].to_numpy()
    samples = pd.read_csv(run / "samples.csv", dtype=str).set_index("sample_id").loc[ids]
    model_json = run / "model.json"  # source order of the classes; an ImageFolder's is sorted by name
    class_names = json.loads(model_json.read_text())["class_names"] if model_json.exists() \
        else sorted(pd.read_csv(run / "samples.csv", dtype=str)["given_label"].unique())
    given = np.array([class_names.index(g) for g in samples["given_label"]])

    epochs = np.sort(ledger["epoch"].unique())
    wide = {column: ledger.pivot(index="sample_id", columns="epoch", values=column).loc[ids]
            for column in ("prob_given", "predicted_label", "selected")}
    prob = wide["prob_given"].to_numpy(np.float64)
    disagree = wide["predicted_label"].to_numpy() != given[:, None]
    predictions = pd.read_parquet(run / "predictions.parquet").set_index("sample_id").loc[ids]
    logits = np.stack(predictions["logits"].to_numpy()).astype(np.float64)
    saved_probs = np.exp(logits - logits.max(1, keepdims=True))
    saved_probs /= saved_probs.sum(1, keepdims=True)
    saved_disagree = saved_probs.argmax(1) != given

    score = scores["score"].to_numpy()
    signals = {
        "mean 1-p(given)": score,
        "late mean 1-p(given)": 1 - prob[:, len(epochs) // 2:].mean(1),
        "last-epoch 1-p(given)": 1 - prob[:, -1],
        "saved model 1-p(given)": 1 - saved_probs[np.arange(len(ids)), given],
        "-AUM": -scores["aum"].to_numpy(),
    }
    if "held_out_score" in scores and scores["held_out_score"].notna().any():
        held_out = scores["held_out_score"].fillna(scores["score"]).to_numpy()  # never held out: its score
        medoid = wide["selected"].astype("boolean").fillna(True).to_numpy(dtype=bool)  # warm-up: trained
        not_medoid = np.where(~medoid, prob, np.nan)
        signals["held-out 1-p(given)"] = held_out
        signals["not-medoid 1-p(given)"] = np.where(np.isnan(not_medoid).all(1), score,
                                                    1 - np.nanmean(not_medoid, axis=1))
    if "neighbour_agreement" in scores:
        disagreement = 1 - scores["neighbour_agreement"].to_numpy()
        signals["1 - neighbour agreement"] = disagreement
        signals["rank mean(score, 1 - agreement)"] = rankdata(score) + rankdata(disagreement)
        if "held-out 1-p(given)" in signals:
            signals["rank mean(held-out, 1 - agreement)"] = rankdata(signals["held-out 1-p(given)"]) + \
                rankdata(disagreement)
    out = {"auroc": {}, "rules": {}, "coreset": {}}
    if scores["selection_rate"].notna().all():
        rate = scores["selection_rate"].to_numpy()
        signals["1 - selection rate"] = 1 - rate
        signals["never selected"] = scores["never_selected"].to_numpy().astype(float)
        signals["rank mean(score, 1 - selection rate)"] = rankdata(score) + rankdata(1 - rate)
        epoch_rows = [e for e in json.loads((run / "metrics.json").read_text())["epochs"]
                      if "coreset_label_accuracy" in e]
        for key in ("coreset_label_accuracy", "selection_rate_clean", "selection_rate_noisy"):
            out["coreset"][key] = float(np.mean([e[key] for e in epoch_rows]))
        out["coreset"]["never_selected_share_noisy"] = float(is_noisy[signals["never selected"] > 0].mean()) \
            if (signals["never selected"] > 0).any() else None
    for name, values in signals.items():
        out["auroc"][name] = float(roc_auc_score(is_noisy, values))
    confident_count = int(round(estimate_noise_rates(saved_probs, given, len(class_names))[given].sum()))
    rules = {"score > 0.5": score > 0.5, "saved model disagrees": saved_disagree,
             "most epochs disagree": disagree.mean(1) > 0.5,
             "top n-hat by score": top_scores(score, int(saved_disagree.sum())),
             "top n-hat (confident learning) by score": top_scores(score, confident_count)}
    for name, flagged in rules.items():
        out["rules"][name] = ranking_metrics(score, is_noisy, flagged)["own_rule"]
    return out


def collect(runs: Path) -> dict:
    """{dataset: {setting: [per-seed run_signals]}} for every kept run folder under ``runs``; a sample is
    mislabeled where its given label (the run's samples.csv) differs from truth.csv's."""
    found: dict = {}
    for truth_csv in sorted(runs.glob("*/seed*/data/truth.csv")):
        seed_dir = truth_csv.parent.parent
        truth = pd.read_csv(truth_csv, dtype=str).set_index("sample_id")["true_label"]
        for run in sorted(p for p in seed_dir.iterdir() if (p / "ledger.parquet").exists()):
            given = pd.read_csv(run / "samples.csv", dtype=str).set_index("sample_id")["given_label"]
            is_noisy = given != truth.loc[given.index]
            found.setdefault(seed_dir.parent.name, {}).setdefault(run.name, []).append(run_signals(run, is_noisy))
    return found


def _mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.3f}" if len(values) == 1 else f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def markdown(found: dict) -> str:
    lines = ["# Noise signals and decision rules", "",
             "Made by `benchmarks/signals.py` from the run folders `benchmarks/detect.py --keep` (or `frozen.py`) left "
             "(see the docstrings); mean ± std over seeds (n = number of seeds).", ""]
    for dataset, settings in found.items():
        lines += [f"## {dataset}", ""]
        signal_names = list(dict.fromkeys(k for runs in settings.values() for r in runs for k in r["auroc"]))
        lines += ["AUROC of each signal:", "", "| run | n | " + " | ".join(signal_names) + " |",
                  "|---|---|" + "---|" * len(signal_names)]
        for setting, runs in settings.items():
            cells = [_mean_std([r["auroc"].get(s) for r in runs]) for s in signal_names]
            lines.append(f"| {setting} | {len(runs)} | " + " | ".join(cells) + " |")
        rule_names = list(runs[0]["rules"])
        lines += ["", "Decision rules, precision / recall / F1:", "",
                  "| run | " + " | ".join(rule_names) + " |", "|---|" + "---|" * len(rule_names)]
        for setting, runs in settings.items():
            cells = [" / ".join(_mean_std([r["rules"][rule][k] for r in runs]) for k in ("precision", "recall", "f1"))
                     for rule in rule_names]
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        crust = {s: runs for s, runs in settings.items() if runs[0]["coreset"]}
        if crust:
            lines += ["", "Coreset composition (mean over selection epochs):", "",
                      "| run | coreset label accuracy | selection rate clean | selection rate mislabeled "
                      "| mislabeled share of never-selected |", "|---|---|---|---|---|"]
            for setting, runs in crust.items():
                keys = ("coreset_label_accuracy", "selection_rate_clean", "selection_rate_noisy",
                        "never_selected_share_noisy")
                lines.append(f"| {setting} | " + " | ".join(_mean_std([r["coreset"][k] for r in runs])
                                                            for k in keys) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the folder given to detect.py --keep (or frozen.py's --work/runs)")
    parser.add_argument("--out", default="signals", help="results name: benchmarks/results/<out>.json / .md")
    args = parser.parse_args()
    found = collect(args.runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(found, indent=1) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(found))
    print(f"wrote {RESULTS / args.out}.md")


if __name__ == "__main__":
    main()
