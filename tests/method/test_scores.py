import numpy as np
import pandas as pd
import pytest

from crust_clean.errors import BadInputError
from crust_clean.method.metrics import detection_metrics, ranking_metrics
from crust_clean.method.scores import SUSPECT_RULE, SuspectRule, flag_suspects, margins, score_samples, top_scores


def ledger(rows):
    frame = pd.DataFrame(rows, columns=["epoch", "sample_id", "selected", "prob_given", "predicted_label"])
    frame["selected"] = frame["selected"].astype("boolean")
    frame["loss"] = -np.log(frame["prob_given"].clip(lower=1e-12))
    return frame


def test_score_is_mean_doubt_and_selection_stats_use_selection_epochs_only():
    frame = ledger([
        (0, "a", None, 0.5, 0), (0, "b", None, 0.2, 1),  # warm-up: no selection
        (1, "a", True, 0.9, 0), (1, "b", False, 0.1, 1),
        (2, "a", False, 1.0, 0), (2, "b", False, 0.0, 1),
    ])
    scores = score_samples(frame)
    assert scores.loc["a", "score"] == pytest.approx(1 - (0.5 + 0.9 + 1.0) / 3)
    assert scores.loc["b", "score"] == pytest.approx(1 - 0.3 / 3)
    assert scores.loc["a", "selection_rate"] == pytest.approx(0.5)
    assert scores.loc["b", "selection_rate"] == 0.0
    assert scores["never_selected"].tolist() == [False, True]
    assert scores.loc["b", "predicted_label"] == 1 and scores.loc["b", "prob_given"] == 0.0
    assert scores.loc["a", "mean_loss"] == pytest.approx(-np.log([0.5, 0.9, 1.0]).mean())
    assert SuspectRule(threshold=0.5).flag(scores["score"], np.zeros(2, bool)).tolist() == [False, True]


def test_a_run_without_selection_has_no_never_selected():
    scores = score_samples(ledger([(0, "a", None, 0.5, 0), (1, "a", None, 0.7, 0)]))
    assert np.isnan(scores.loc["a", "selection_rate"])
    assert not scores.loc["a", "never_selected"]


def test_detection_metrics_against_hand_counts():
    score = np.array([0.9, 0.8, 0.6, 0.4, 0.1])
    noisy = np.array([True, False, True, False, False])
    m = detection_metrics(score, noisy)
    assert m["flagged"] == 3 and m["noisy"] == 2
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["auroc"] == pytest.approx(5 / 6)  # 5 of the 6 noisy/clean pairs are ordered right
    assert detection_metrics(score, np.zeros(5, bool))["auroc"] is None


def test_suspects_are_the_top_scores_counted_by_the_models_disagreements():
    rng = np.random.default_rng(0)
    for _ in range(20):
        score = rng.choice([0.1, 0.3, 0.5, 0.7], size=30)  # many ties
        disagrees = rng.random(30) < rng.random()
        flagged = flag_suspects(score, disagrees)
        n = disagrees.sum()
        assert flagged.sum() == n
        if 0 < n < 30:  # brute force: nothing outside the flagged set scores higher than anything inside
            assert score[~flagged].max() <= score[flagged].min()
        if 0 < n:  # ties go to the first samples, as in the stable ranking of scores.csv
            boundary = score[flagged].min()
            tied = np.flatnonzero(score == boundary)
            assert flagged[tied].tolist() == sorted(flagged[tied].tolist(), reverse=True)
    m = detection_metrics(np.array([0.9, 0.2, 0.8]), np.array([True, False, False]), np.array([True, False, True]))
    assert (m["flagged"], m["precision"], m["recall"]) == (2, 0.5, 1.0)


def test_top_scores_leave_missing_scores_out_and_keep_the_first_of_ties():
    score = pd.Series([0.5, np.nan, 0.9, 0.5, 0.5, np.nan])  # validation samples have no score
    assert top_scores(score, 3).tolist() == [True, False, True, True, False, False]
    assert top_scores(score, 10).tolist() == [True, False, True, True, True, False]
    assert not top_scores(score, 0).any()


def test_margin_is_given_logit_minus_the_best_other():
    logits = np.array([[2.0, 1.0, -1.0], [0.5, 3.0, 1.0], [1.0, 1.0, 0.0]])
    labels = np.array([0, 0, 1])
    expected = [2.0 - 1.0, 0.5 - 3.0, 1.0 - 1.0]
    np.testing.assert_allclose(margins(logits, labels), expected)
    frame = ledger([(0, "a", None, 0.5, 0), (1, "a", None, 0.7, 0)])
    frame["margin"] = [1.0, -3.0]
    assert score_samples(frame).loc["a", "aum"] == pytest.approx(-1.0)


def test_ranking_metrics_against_brute_force():
    rng = np.random.default_rng(0)
    score = rng.random(200)
    noisy = rng.random(200) < 0.3
    m = ranking_metrics(score, noisy, flagged=score > 0.8)
    pairs = [(s_n > s_c) + 0.5 * (s_n == s_c) for s_n in score[noisy] for s_c in score[~noisy]]
    assert m["auroc"] == pytest.approx(np.mean(pairs))
    k = int(noisy.sum())
    top = np.zeros(200, bool)
    top[np.argsort(-score)[:k]] = True
    hits = (top & noisy).sum()
    assert m["at_noise_count"]["precision"] == pytest.approx(hits / k) == m["at_noise_count"]["recall"]
    flagged = score > 0.8
    assert m["own_rule"]["precision"] == pytest.approx((flagged & noisy).sum() / flagged.sum())
    assert m["recall_top_5pct"] == pytest.approx((noisy[np.argsort(-score)[:10]]).sum() / k)
    assert m["precision_top_5pct"] == pytest.approx(noisy[np.argsort(-score)[:10]].mean())
    assert m["precision_top_1pct"] == pytest.approx(float(noisy[np.argmax(score)]))  # 1 % of 200: the top sample


def test_suspect_rule_is_one_of_top_threshold_or_the_runs_own():
    score = pd.Series([0.2, np.nan, 0.9, 0.6, 0.4])  # a validation sample (NaN) is never a suspect
    disagrees = np.array([False, False, True, False, True])
    assert SuspectRule().flag(score, disagrees).tolist() == flag_suspects(score, disagrees).tolist() \
        == [False, False, True, True, False]
    assert SuspectRule(top=1).flag(score, disagrees).tolist() == [False, False, True, False, False]
    assert SuspectRule(threshold=0.3).flag(score, disagrees).tolist() == [False, False, True, True, True]
    assert SuspectRule().is_own and not SuspectRule(top=0).is_own
    assert [SuspectRule().describe(), SuspectRule(top=7).describe(), SuspectRule(threshold=0.25).describe()] == \
        [SUSPECT_RULE, "the 7 highest scores", "score > 0.25"]
    with pytest.raises(BadInputError, match="not both"):
        SuspectRule(top=3, threshold=0.5)
    with pytest.raises(BadInputError, match="--top must be >= 0"):
        SuspectRule(top=-1)


def test_held_out_score_counts_only_the_epochs_that_did_not_train_on_the_sample():
    frame = ledger([(0, "a", None, 0.5, 0), (0, "b", None, 0.2, 1),
                    (1, "a", True, 0.9, 0), (1, "b", False, 0.1, 1),
                    (2, "a", False, 0.7, 0), (2, "b", False, 0.3, 1)])
    frame["trained"] = [True, True, True, True, False, False]  # b was a's mixup partner in epoch 1
    scores = score_samples(frame)
    assert scores.loc["a", "held_out_score"] == pytest.approx(1 - 0.7)  # epoch 2 only
    assert scores.loc["b", "held_out_score"] == pytest.approx(1 - 0.3)  # epoch 2 only: a partner is trained on
    frame["trained"] = True
    assert score_samples(frame)["held_out_score"].isna().all()  # never held out
    assert score_samples(frame.drop(columns="trained"))["held_out_score"].isna().all()  # an older ledger


def test_score_totals_added_epoch_by_epoch_equal_score_samples_of_the_whole_ledger():
    from crust_clean.method.scores import ScoreTotals

    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(7)]
    parts = []
    for epoch in range(5):
        selecting = epoch >= 2
        selected = rng.random(7) < 0.5
        parts.append(pd.DataFrame({
            "epoch": epoch, "sample_id": pd.array(ids, dtype="string"),
            "selected": pd.array(selected if selecting else [pd.NA] * 7, dtype="boolean"),
            "weight": pd.array(np.where(selected, 1.0, 0.0) if selecting else [pd.NA] * 7, dtype="Float64"),
            "medoid": pd.array(ids if selecting else [pd.NA] * 7, dtype="string"),
            "loss": rng.random(7).astype(np.float32), "predicted_label": rng.integers(0, 3, 7),
            "prob_given": rng.random(7).astype(np.float32), "margin": rng.normal(size=7).astype(np.float32),
            # s0 is trained every epoch: never held out
            "trained": selected | (rng.random(7) < 0.3) | (np.arange(7) == 0) if selecting else np.ones(7, dtype=bool)}))
    totals = ScoreTotals(7)
    for part in parts:
        totals.add(part)
    expected = score_samples(pd.concat(parts, ignore_index=True))
    got = totals.per_sample(pd.array(ids, dtype="string"))
    assert list(got.index) == ids and list(got.columns) == list(expected.columns)
    assert got["held_out_score"].notna().any() and got["held_out_score"].isna().any()  # both cases covered
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-6, rtol=1e-6)
