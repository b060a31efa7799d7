"""The review loop as a team runs it: export to FiftyOne, decide with the plugin's operators, export the
cleaned dataset in every format, and fit it again."""

import json
import os

import pandas as pd
import pytest

import crust_clean
from crust_clean.errors import BadInputError

from ..conftest import QUICK

PLUGIN = "@crust-clean/review"


@pytest.fixture(scope="module")
def reviewed(fiftyone, noisy_colours, tmp_path_factory):
    """A run exported to FiftyOne, with decisions made through the plugin's operators."""
    import fiftyone.operators as foo

    from crust_clean.review.fiftyone import export_to_fiftyone

    run = crust_clean.fit(noisy_colours, out=tmp_path_factory.mktemp("review") / "run",
                          **{**QUICK, "epochs": 3, "warmup_epochs": 1})
    dataset = export_to_fiftyone(run, name="review-loop", top=12).dataset
    suspects = dataset.load_saved_view("crust suspects")
    ids = suspects.values("id")
    plan = {"drop": ids[0:3], "relabel": ids[3:5], "keep": ids[5:6]}  # ids[6:12]: suspects left unreviewed

    def execute(name, selected, **params):
        result = foo.execute_operator(f"{PLUGIN}/{name}", ctx={"dataset": dataset, "view": dataset.view(),
                                                              "selected": selected, "params": params})
        assert result.error is None, result.error
        return result.result

    assert execute("mark_mislabeled", plan["drop"])["message"] == "3 samples marked drop: 3 decided, 9 left to review"
    assert execute("relabel", plan["relabel"], new_label="green")["marked"] == 2
    assert execute("mark_correct", plan["keep"])["message"] == "1 sample marked keep: 6 decided, 6 left to review"
    assert execute("show_to_review", []) == {"view": "to review", "decided": 6, "left": 6}
    by_id = dict(zip(dataset.values("id"), dataset.values("crust_sample_id")))
    return run, dataset, {k: [by_id[i] for i in v] for k, v in plan.items()}, execute


def test_decisions_are_stored_on_exactly_the_selected_samples(reviewed):
    _, dataset, plan, _ = reviewed
    assert dataset.count_values("crust_decision") == {None: 154, "drop": 3, "relabel": 2, "keep": 1}
    tags = dataset.count_sample_tags()
    assert (tags["crust:decided:drop"], tags["crust:decided:relabel"], tags["crust:decided:keep"]) == (3, 2, 1)
    assert sorted(dataset.match_tags("crust:decided:drop").values("crust_sample_id")) == sorted(plan["drop"])
    badges = dataset.count_values("crust_review.label")  # the decision on the tile, shown by default
    assert badges == {None: 154, "drop": 3, "relabel to green": 2, "keep": 1}
    assert set(dataset.exists("crust_decision").values("crust_decided_in")) == {"review-loop"}
    decided = dataset.exists("crust_decision")
    assert decided.values("crust_decided_score") == decided.values("crust_score")  # the score when decided
    relabeled = dataset.exists("crust_new_label")
    assert sorted(relabeled.values("crust_sample_id")) == sorted(plan["relabel"])
    assert set(relabeled.values("crust_new_label")) == {"green"}
    assert len(dataset.exists("crust_decided_at")) == 6


def test_reviewed_manifest_reflects_the_decisions_exactly(reviewed, tmp_path):
    from crust_clean.review.manifest import export_manifest

    run, _, plan, _ = reviewed
    written = export_manifest(run, tmp_path / "clean", policy="reviewed", from_fiftyone="review-loop", top=12)
    assert (written.kept, written.dropped, written.relabeled, written.unreviewed_suspects) == (155, 3, 2, 6)
    dropped = pd.read_csv(tmp_path / "clean" / "dropped.csv", dtype=str)
    relabeled = pd.read_csv(tmp_path / "clean" / "relabeled.csv", dtype=str)
    assert sorted(dropped["sample_id"]) == sorted(plan["drop"])
    assert sorted(relabeled["sample_id"]) == sorted(plan["relabel"]) and set(relabeled["label"]) == {"green"}
    assert (dropped["reason"] == "reviewer: drop").all() and dropped["decided_at"].str.endswith("+00:00").all()
    manifest = pd.read_csv(written.dataset, dtype=str)
    assert len(manifest) == 157 and not set(plan["drop"]) & set(manifest["sample_id"])
    labels = manifest.set_index("sample_id")["label"]
    assert (labels.loc[plan["relabel"]] == "green").all()
    samples = run.samples.set_index("sample_id")
    untouched = [s for s in manifest["sample_id"] if s not in plan["relabel"]]
    assert (labels.loc[untouched] == samples.loc[untouched, "given_label"]).all()
    unreviewed = pd.read_csv(tmp_path / "clean" / "unreviewed_suspects.csv", dtype=str)
    assert len(unreviewed) == 6 and not set(unreviewed["sample_id"]) & {s for v in plan.values() for s in v}
    assert json.loads((tmp_path / "clean" / "summary.json").read_text())["dropped"] == 3
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "clean").stat().st_mode & 0o777 == 0o777 & ~umask  # teammates can read it, not 0700


def test_the_plugin_exports_the_same_manifest(reviewed, tmp_path):
    _, _, _, execute = reviewed
    result = execute("export_cleaned_manifest", [], out=str(tmp_path / "from-app"), policy="reviewed", format="csv")
    assert (result["kept"], result["dropped"], result["relabeled"]) == (155, 3, 2)
    assert pd.read_csv(result["dataset"]).shape[0] == 157  # kept + relabeled


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "imagefolder", "hf"])
def test_every_format_refits(reviewed, fmt, tmp_path):
    from crust_clean.review.manifest import export_manifest

    run, _, plan, _ = reviewed
    written = export_manifest(run, tmp_path / fmt, fmt=fmt, from_fiftyone="review-loop")
    refit = crust_clean.fit(written.dataset, out=tmp_path / f"refit-{fmt}", **{**QUICK, "epochs": 1,
                                                                            "warmup_epochs": 1})
    assert len(refit.samples) == 157  # 160 - 3 dropped
    assert refit.samples["given_label"].value_counts().sum() == 157
    if fmt != "imagefolder":  # the sample_id column is the id by default: decisions can follow into round 2
        kept = set(run.samples["sample_id"]) - set(plan["drop"])
        assert set(refit.samples["sample_id"]) == kept


def test_auto_policy_drops_or_relabels_the_suspects(reviewed, tmp_path):
    from crust_clean.review.manifest import export_manifest

    run, _, _, _ = reviewed
    table = run.review_table()  # the run's own suspects, as export_manifest takes them by default
    written = export_manifest(run, tmp_path / "auto", policy="auto", relabel_confidence=0.6)
    suspects = table[table["suspect"]]
    confident = suspects[(suspects["confidence"] >= 0.6) & (suspects["predicted_label"] != suspects["given_label"])]
    assert written.relabeled == len(confident) and written.dropped == len(suspects) - len(confident)
    relabeled = pd.read_csv(tmp_path / "auto" / "relabeled.csv", dtype=str).set_index("sample_id")
    assert (relabeled.loc[confident["sample_id"], "label"] == confident.set_index("sample_id")["predicted_label"]).all()
    with pytest.raises(BadInputError, match="already exists"):
        export_manifest(run, tmp_path / "auto", policy="auto")
    export_manifest(run, tmp_path / "auto", policy="auto", relabel_confidence=1.0, overwrite=True)
    assert json.loads((tmp_path / "auto" / "summary.json").read_text())["relabeled"] == 0


def test_source_is_never_written(reviewed, noisy_colours, tmp_path):
    from crust_clean.review.manifest import export_manifest

    run, _, _, _ = reviewed
    before = sorted((p.relative_to(noisy_colours), p.stat().st_mtime_ns) for p in noisy_colours.rglob("*"))
    export_manifest(run, tmp_path / "tree", fmt="imagefolder", copy=True, from_fiftyone="review-loop")
    assert sorted((p.relative_to(noisy_colours), p.stat().st_mtime_ns) for p in noisy_colours.rglob("*")) == before
    assert not any(p.is_symlink() for p in (tmp_path / "tree" / "images").rglob("*"))


def test_cli_export_and_manifest(reviewed, tmp_path):
    from click.testing import CliRunner

    from crust_clean.cli import cli

    run, _, _, _ = reviewed
    result = CliRunner().invoke(cli, ["export", "fiftyone", str(run.path), "--name", "review-loop", "--top", "12"])
    assert result.exit_code == 0, result.output
    assert "FiftyOne dataset 'review-loop': 160 samples, 12 tagged crust:suspect" in result.output
    result = CliRunner().invoke(cli, ["export", "manifest", str(run.path), "--from-fiftyone", "review-loop",
                                      "--top", "12", "--format", "jsonl", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "kept 155, relabeled 2, dropped 3; 6 suspects not reviewed" in result.output  # decisions survived
    assert (tmp_path / "m" / "manifest.jsonl").is_file()
    result = CliRunner().invoke(cli, ["export", "manifest", str(run.path), "--from-fiftyone", "nope",
                                      "--out", str(tmp_path / "n")])
    assert result.exit_code == 2 and "no FiftyOne dataset 'nope'" in result.output
    assert not (tmp_path / "n").exists()


def app_state(port: int, subscription: str) -> dict | None:
    """The state the App server hands a browser that opens it (what it shows): its answer to the App's first
    request, a listener with an empty initializer (no dataset or view in the URL, so nothing is changed)."""
    import json
    import urllib.request

    payload = {"initializer": {"dataset": None, "view": None}, "events": ["state_update"],
               "subscription": subscription, "polling": True}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/events", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    events = json.loads(urllib.request.urlopen(request, timeout=10).read())["events"]
    return events[0]["data"]["state"] if events else None


def test_review_serves_the_suspects_view_to_the_app(reviewed):
    import socket
    import time
    import urllib.request

    import fiftyone.core.view as fov
    import psutil
    from fiftyone import ViewField as F

    from crust_clean.review.app import launch_review

    run, dataset, _, _ = reviewed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = launch_review(run, name="review-loop", port=port, remote=True)
    try:
        deadline, page, state = time.monotonic() + 60, None, None
        while page is None or not (state or {}).get("dataset"):  # until the session has given the server its state
            if time.monotonic() > deadline:
                raise AssertionError(f"the App server never reported the session's dataset: {state}")
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                state = app_state(port, f"test-{time.monotonic()}")
            except OSError:  # not serving yet
                pass
            time.sleep(0.2)
        assert "<title>FiftyOne</title>" in page
        assert (state["dataset"], state["view_name"]) == ("review-loop", "to review")
        shown = fov.DatasetView._build(dataset, state["view"])  # the stages the App applies
        assert [type(stage).__name__ for stage in shown._stages] == ["MatchTags", "Match", "SortBy"]
        undecided = dataset.match_tags("crust:suspect").match(~F("crust_decision").exists())
        assert len(shown) == len(undecided) == 6  # exported with top=12, 6 decided
        assert shown.values("crust_score") == sorted(undecided.values("crust_score"), reverse=True)
        listening = {c.laddr.ip for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"}
        assert listening == {"127.0.0.1"}  # this machine only: the App has no login
    finally:
        session.close()
