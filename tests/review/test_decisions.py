"""The review contract's pure parts, on tiny tables: the carry-forward rule and the CSV rows."""

import pandas as pd
import pytest

from crust_clean.errors import BadInputError
from crust_clean.review.decisions import carry_forward, parse_decisions_csv, utc_iso


def earlier_rows(*rows):
    columns = ["sample_id", "content_hash", "decision", "new_label", "decided_at", "decided_score", "decided_in"]
    return pd.DataFrame([dict(zip(columns, row)) for row in rows], columns=columns)


def test_carry_forward_takes_the_latest_decision_on_the_same_content_and_reopens_a_keep_whose_score_rose():
    current = pd.DataFrame({"sample_id": ["a", "b", "c", "d", "e", "f"], "content_hash": ["A", "B2", "C", "D", "E", "F"],
                            "score": [0.30, 0.9, 0.50, 0.90, None, 0.2]})
    t1, t2 = pd.Timestamp("2026-11-01"), pd.Timestamp("2026-11-02")
    earlier = earlier_rows(
        ("a", "A", "drop", None, t1, 0.8, "round1"), ("a", "A", "keep", None, t2, 0.6, "round1b"),  # latest wins
        ("b", "B", "drop", None, t1, 0.9, "round1"),  # the image changed since: nothing
        ("c", "C", "keep", None, t1, 0.44, "round1"),  # rose by 0.06 > 0.05: re-opened
        ("d", "D", "drop", None, t1, 0.1, "round1"),  # a drop stands whatever the score
        ("e", "E", "keep", None, t1, 0.1, "round1"),  # no score now (a val sample): it stands
        ("f", "F", "relabel", "cat", t1, None, "file x.csv"),  # imported without a score: it stands
        ("z", "Z", "drop", None, t1, 0.9, "round1"))  # not in this round
    carried, reopened = carry_forward(current, earlier, reopen_margin=0.05)
    assert carried[["sample_id", "decision", "decided_in"]].values.tolist() == [
        ["a", "keep", "round1b"], ["d", "drop", "round1"], ["e", "keep", "round1"], ["f", "relabel", "file x.csv"]]
    assert carried.loc[carried["sample_id"] == "f", "new_label"].item() == "cat"
    assert reopened[["sample_id", "score", "decided_score"]].values.tolist() == [["c", 0.5, 0.44]]
    assert carry_forward(current, earlier, reopen_margin=0.1)[1].empty  # 0.06 is within a 0.1 margin


def test_utc_iso_gives_every_time_its_offset():
    assert utc_iso(pd.Timestamp("2026-11-30 10:00:00")) == "2026-11-30T10:00:00+00:00"  # naive = UTC
    assert utc_iso(pd.Timestamp("2026-11-30 11:00:00+01:00")) == "2026-11-30T10:00:00+00:00"
    assert utc_iso(None) is None and utc_iso(float("nan")) is None


def test_a_decisions_csv_is_checked_row_by_row(tmp_path):
    samples = pd.DataFrame({"sample_id": ["a", "b", "c"], "content_hash": ["A", "B", "C"]})
    good = tmp_path / "good.csv"
    good.write_text("sample_id,decision,new_label,decided_at\n"
                    "a,keep,,2026-11-30 10:00\nb, relabel ,cat,2026-11-30T12:00:00+02:00\nc,,,\n")
    rows = parse_decisions_csv(good, samples, ["cat", "dog"])
    assert rows["sample_id"].tolist() == ["a", "b"]  # c has no decision: left out
    assert [utc_iso(t) for t in rows["decided_at"]] == ["2026-11-30T10:00:00+00:00", "2026-11-30T10:00:00+00:00"]
    assert rows["content_hash"].tolist() == ["A", "B"] and rows["new_label"].fillna("-").tolist() == ["-", "cat"]
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,decision,decided_at,decided_score\na,keep,yesterday,\nb,drop,,high\n")
    with pytest.raises(BadInputError) as err:
        parse_decisions_csv(bad, samples, ["cat", "dog"])
    assert str(err.value).splitlines() == [
        "2 bad rows, nothing imported:",
        f"{bad}:2: decided_at 'yesterday' or decided_score '' does not parse",
        f"{bad}:3: decided_at '' or decided_score 'high' does not parse"]
