import json

import pandas as pd
import pytest

from crust_clean.demo import build_digits, main


def test_demo_data_keeps_truth_out_of_the_folder_it_fits(tmp_path):
    paths = build_digits(tmp_path / "data", noise=0.2)
    truth = pd.read_csv(paths["truth"])
    given = truth["sample_id"].str.split("/").str[0].astype(int)
    assert (given != truth["true_label"]).mean() == pytest.approx(0.2, abs=0.001)
    assert len(list(paths["images"].rglob("*.png"))) == len(truth)
    assert len(list(paths["test"].rglob("*.png"))) == 359  # 20 % of scikit-learn's 1797 digits, clean


def test_demo_finds_the_injected_noise_and_reports_what_its_files_hold(tmp_path, capsys):
    """The demo at a shorter setting (6 epochs at 16 px, 15 s here: AUROC 0.992, F1 0.836, test accuracy 0.933;
    make demo's 30 epochs at 32 px give 0.999 / 0.914 / 0.942). Floors leave room for another CPU's rounding."""
    import re

    from sklearn.metrics import roc_auc_score

    config = tmp_path / "short.yaml"
    config.write_text("model:\n  img_size: 16\ncrust:\n  warmup_epochs: 2\ntrain:\n  epochs: 6\n  lr: 0.02\n"
                      "  batch_size: 64\n  hflip: 0.0\n")
    main(["--out", str(tmp_path / "demo"), "--config", str(config)])
    out = capsys.readouterr().out
    figures = dict(re.findall(r"(AUROC|average precision|precision|recall|F1) (\d\.\d+)", out))
    suspects = int(re.search(r"suspects \(.*\): (\d+)", out).group(1))
    accuracy = float(re.search(r"clean held-out images: (\d\.\d+)", out).group(1))
    never, never_noisy = map(int, re.search(r"never-selected samples: (\d+) \((\d+)% of them", out).groups())

    run = tmp_path / "demo" / "run"
    scores = pd.read_csv(run / "scores.csv", dtype={"given_label": str})
    truth = pd.read_csv(tmp_path / "demo" / "data" / "truth.csv", dtype=str).set_index("sample_id")["true_label"]
    noisy = (scores["given_label"] != truth.loc[scores["sample_id"]].to_numpy()).to_numpy()
    assert noisy.sum() == 261 and len(scores) == 1295  # what the demo prints, from the files
    assert suspects == scores["suspect"].sum() == json.loads((run / "metrics.json").read_text())["summary"]["suspects"]
    assert float(figures["AUROC"]) == pytest.approx(roc_auc_score(noisy, scores["score"]), abs=5e-4)
    assert float(figures["recall"]) == pytest.approx((scores["suspect"] & noisy).sum() / noisy.sum(), abs=5e-4)
    assert never == scores["never_selected"].sum() and never_noisy > 50  # never-selected: mostly wrong labels
    assert float(figures["AUROC"]) > 0.95 and float(figures["F1"]) > 0.7 and accuracy > 0.8
    assert (run / "report" / "index.html").is_file() and "report: " in out
