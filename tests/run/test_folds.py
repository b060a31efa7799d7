"""--folds K: every training sample scored by a fold fit that never trained on it, the suspects counted out of fold,
each finished fold kept so that a killed run resumes at the next one."""

import re

import numpy as np
import pandas as pd
import pytest

import crust_clean
from crust_clean.errors import BadInputError, Interrupted
from crust_clean.run.folds import fold_of

from ..train.test_features import assert_predicts_as_the_run_says

#: without a validation split, so that the saved model is the last epoch's of the run's own fit, the state the
#: fold fits must not overwrite
HEAD = dict(model="resnet10t", train="head", img_size=24, epochs=6, warmup_epochs=2, batch_size=32, lr=0.1,
            hflip=0.0, val_fraction=0.0, progress=False)
FOLDS = 3


def test_folds_are_stratified_disjoint_and_fixed_by_the_seed():
    labels = np.repeat([0, 1, 2], [30, 12, 7])
    fold = fold_of(labels, 3, seed=4)
    assert sorted(np.unique(fold)) == [0, 1, 2]
    for c, n in ((0, 30), (1, 12), (2, 7)):  # each class spread over the folds within one sample
        counts = np.bincount(fold[labels == c], minlength=3)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(fold_of(labels, 3, seed=4), fold)
    assert not np.array_equal(fold_of(labels, 3, seed=5), fold)
    with pytest.raises(BadInputError, match="train.folds=5 needs at least 5 training samples"):
        fold_of(np.array([0, 1, 0]), 5, seed=0)


@pytest.fixture(scope="module")
def trained_rows(noisy_colours, backbone, tmp_path_factory):
    """A --folds 3 head fit, with the training rows each of its fits was given."""
    from crust_clean.data.torch_datasets import TrainingData

    root = tmp_path_factory.mktemp("folds")
    split = TrainingData.split.__func__
    seen = []

    def spy(cls, images, labels, train_idx, val_idx, **transforms):
        seen.append(np.asarray(train_idx).copy())
        return split(cls, images, labels, train_idx, val_idx, **transforms)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainingData, "split", classmethod(spy))
        run = crust_clean.fit(noisy_colours, out=root / "run", pretrained_weights=str(backbone), folds=FOLDS,
                              feature_cache=str(root / "features"),
                              true_labels=str(noisy_colours.parent / "truth.csv"), **HEAD)
    return run, seen


def test_each_sample_is_scored_by_the_fit_that_never_trained_on_it(trained_rows):
    run, seen = trained_rows
    assert len(seen) == 1 + FOLDS  # the run's own fit, then one per fold
    samples = run.samples
    train_rows = np.flatnonzero(samples["split"].to_numpy() == "train")
    np.testing.assert_array_equal(np.sort(seen[0]), train_rows)
    scores = run.scores
    row_of = {s: i for i, s in enumerate(samples["sample_id"])}
    held_rows = [np.array([row_of[s] for s in scores.loc[scores["fold"] == k, "sample_id"]]) for k in range(FOLDS)]
    assert sorted(np.concatenate(held_rows)) == list(train_rows)  # every training sample held out exactly once
    for k in range(FOLDS):
        assert len(np.intersect1d(seen[1 + k], held_rows[k])) == 0  # fold k's fit never saw what it scores
        np.testing.assert_array_equal(np.sort(np.concatenate([seen[1 + k], held_rows[k]])), train_rows)
    summary = run.metrics["summary"]
    assert summary["n_val"] == 0 and summary["folds"] == FOLDS and summary["fold_seconds"] > 0
    assert_predicts_as_the_run_says(run)  # the weights saved made predictions.parquet: the run's, not a fold fit's
    assert summary["suspect_rule"].endswith("scored and counted out of fold")
    assert not (run.path / "folds").exists()  # the resume state goes when the run finishes


def test_the_out_of_fold_score_ranks_the_wrong_labels_and_the_in_sample_score_is_kept(trained_rows):
    run, _ = trained_rows
    scores = run.scores
    truth = pd.read_csv(run.config.data.true_labels).set_index("sample_id")["true_label"]
    noisy = (scores["given_label"] != truth.loc[scores["sample_id"]].to_numpy()).to_numpy()
    assert 30 <= noisy.sum() <= 50  # about a quarter of the 160 training labels are wrong
    assert run.metrics["summary"]["detection"]["auroc"] > 0.9
    assert not np.allclose(scores["score"], scores["in_sample_score"])  # two scores, the out-of-fold one ranks
    assert (scores["score"].diff().dropna() <= 0).all()
    flagged = scores["suspect"].to_numpy()
    assert flagged.sum() >= 0.5 * noisy.sum() and noisy[flagged].mean() > 0.8
    table = run.review_table()  # exporters and the report see the suspects the fit counted
    assert set(table.loc[table["suspect"], "sample_id"]) == set(scores.loc[flagged, "sample_id"])


def test_a_run_killed_during_the_folds_resumes_at_the_next_fold(trained_rows, noisy_colours, backbone, tmp_path,
                                                               monkeypatch):
    from crust_clean.run import folds
    from crust_clean.run.folder import RunFolder

    whole, _ = trained_rows
    write_fold = RunFolder.write_fold

    def stop_after_fold_2(self, k, **arrays):
        write_fold(self, k, **arrays)
        if k == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunFolder, "write_fold", stop_after_fold_2)
    options = {**HEAD, "pretrained_weights": str(backbone), "folds": FOLDS,
               "feature_cache": str(whole.config.data.feature_cache),
               "true_labels": str(noisy_colours.parent / "truth.csv")}
    with pytest.raises(Interrupted, match="resume with"):
        crust_clean.fit(noisy_colours, out=tmp_path / "run", **options)
    assert sorted(p.name for p in (tmp_path / "run" / "folds").iterdir()) == ["fold-0.npz", "fold-1.npz"]
    monkeypatch.undo()
    fitted = []
    fit_fold = folds._fit_fold
    monkeypatch.setattr(folds, "_fit_fold", lambda *args, **kw: fitted.append(kw["name"]) or fit_fold(*args, **kw))
    resumed = crust_clean.resume(tmp_path / "run", progress=False)
    assert fitted == ["fold 3"]
    pd.testing.assert_frame_equal(resumed.scores, whole.scores)


@pytest.mark.parametrize("options,message", [
    ({"folds": 1}, "train.folds must be 0 (off) or >= 2"),
    ({"folds": 5, "model": "resnet10t"}, "train.folds needs --train head or last-stages")])
def test_folds_that_cannot_run_are_refused_in_one_line(options, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        crust_clean.fit("anything", out="nowhere", **options)
