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


def test_demo_runs_end_to_end(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("model:\n  img_size: 24\ncrust:\n  warmup_epochs: 1\ntrain:\n  epochs: 2\n  lr: 0.02\n")
    main(["--out", str(tmp_path / "demo"), "--config", str(config)])
    out = capsys.readouterr().out
    for text in ["detection AUROC", "precision", "recall", "clean held-out images", "never-selected samples"]:
        assert text in out
    assert (tmp_path / "demo" / "run" / "scores.csv").is_file()
    assert (tmp_path / "demo" / "run" / "report" / "index.html").is_file() and "report: " in out

