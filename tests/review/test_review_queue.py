"""Review as a team lives in it (real mongod): a queue that empties, no accidental whole-view edits, decisions that
carry into the next round (not onto a changed image), decisions through CSV and back, an App bound to this machine."""

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import crust_clean
from crust_clean.errors import BadInputError, CrustCleanWarning

from ..conftest import QUICK, write_colour_dataset

PLUGIN = "@crust-clean/review"


@pytest.fixture(scope="module")
def round_one(fiftyone, tmp_path_factory):
    """Round 1 on its own images (content no other test's dataset shares): a run, its export, a plan."""
    root = tmp_path_factory.mktemp("rounds")
    images = write_colour_dataset(root / "data", per_class=30, noise=0.25, seed=11)
    run = crust_clean.fit(images, out=root / "round1", **{**QUICK, "epochs": 3, "warmup_epochs": 1})
    from crust_clean.review.fiftyone import export_to_fiftyone

    dataset = export_to_fiftyone(run, top=20, visualization="none").dataset
    return SimpleNamespace(images=images, run=run, dataset=dataset, root=root)


def execute(dataset, name, selected=(), view=None, **params):
    import fiftyone.operators as foo

    return foo.execute_operator(f"{PLUGIN}/{name}", ctx={
        "dataset": dataset, "view": view if view is not None else dataset.load_saved_view("to review"),
        "selected": list(selected), "params": params})


def triggered(result) -> list[str]:
    return [request["operator_uri"] for request in result.executor.to_json()["requests"]]


def test_the_queue_empties_as_decisions_are_made(round_one):
    from crust_clean.review.decision_store import clear_decisions, queue_counts

    dataset = round_one.dataset
    queue = dataset.load_saved_view("to review")
    assert len(queue) == 20 and queue_counts(dataset) == (0, 20)
    first = queue.values("id")[:4]
    result = execute(dataset, "mark_mislabeled", first[:3])
    assert result.error is None, result.error
    assert result.result["message"] == "3 samples marked drop: 3 decided, 17 left to review"
    assert triggered(result) == ["clear_selected_samples", "reload_dataset", "notify"]  # the next click starts afresh
    assert len(dataset.load_saved_view("to review")) == 17 and not set(first[:3]) & set(
        dataset.load_saved_view("to review").values("id"))
    assert dataset.load_saved_view("decided").values("id") == first[:3][::-1] or set(
        dataset.load_saved_view("decided").values("id")) == set(first[:3])
    assert execute(dataset, "relabel", first[3:4], new_label="red").result["left"] == 16
    assert execute(dataset, "clear_decision", first[:4], view=dataset.load_saved_view("decided")).result["left"] == 20
    tags = dataset.count_sample_tags()
    assert tags["crust:suspect"] == 20 and not [t for t in tags if t.startswith("crust:decided")]  # went with them
    assert len(dataset.exists("crust_review")) == 0  # and the badges
    clear_decisions(dataset)


def test_nothing_selected_means_no_action_unless_apply_to_all_is_ticked(round_one):
    from fiftyone.operators.executor import ExecutionError

    from crust_clean.review.decision_store import clear_decisions

    dataset = round_one.dataset
    for operator, params in (("mark_correct", {}), ("mark_mislabeled", {}), ("relabel", {"new_label": "red"}),
                             ("clear_decision", {})):
        with pytest.raises(ExecutionError) as refused:
            execute(dataset, operator, **params)
        assert str(refused.value) == ("Validation error. Path: apply_to_all. Reason: Nothing is selected: select "
                                      "samples, or tick 'apply to all 20 samples in the view'"), operator
    assert len(dataset.exists("crust_decision")) == 0  # refused: nothing written
    view = dataset.load_saved_view("to review").limit(5)
    ids = view.values("id")
    result = execute(dataset, "mark_correct", view=view, apply_to_all=True)
    assert result.error is None and result.result["message"] == "5 samples marked keep: 5 decided, 15 left to review"
    assert sorted(dataset.match_tags("crust:decided:keep").values("id")) == sorted(ids)
    clear_decisions(dataset)


def test_the_forms_name_their_targets_and_prefill_the_suggestion(round_one):
    from importlib import import_module

    from fiftyone.operators.executor import ExecutionError

    plugin = import_module("crust_clean.resources.plugins.crust_clean")
    dataset = round_one.dataset
    queue = dataset.load_saved_view("to review")
    one = queue.first()
    ctx = SimpleNamespace(dataset=dataset, view=queue, selected=[one.id], params={})
    form = plugin.Relabel().resolve_input(ctx).type.properties
    assert form["targets"].view.label == "Relabel 1 sample (selected)"
    assert form["new_label"].default == one.crust_prediction.label
    assert form["new_label"].type.values == ["blue", "green", "red", "yellow"]
    three = SimpleNamespace(dataset=dataset, view=queue, selected=queue.values("id")[:3], params={})
    predictions = queue.limit(3).values("crust_prediction.label")
    assert plugin.Relabel().resolve_input(three).type.properties["new_label"].default == max(
        predictions, key=predictions.count)
    taken = round_one.root / "taken"
    (taken / "x").mkdir(parents=True)
    ctx = SimpleNamespace(dataset=dataset, view=queue, selected=[], params={"out": str(taken)})
    out = plugin.ExportCleanedManifest().resolve_input(ctx).type.properties["out"]
    assert out.invalid and "tick 'Replace an existing output folder'" in out.error_message
    with pytest.raises(ExecutionError, match="Path: out. Reason: .* tick 'Replace an existing output folder'"):
        execute(dataset, "export_cleaned_manifest", out=str(taken), policy="reviewed", format="csv")
    assert (taken / "x").is_dir()


def changed(path) -> None:
    """Change an image's pixels (same file name, so the same sample id)."""
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)


def test_decisions_carry_into_the_next_round_but_not_onto_a_changed_image(round_one, tmp_path):
    from crust_clean.review.decision_store import clear_decisions, record_decision
    from crust_clean.review.fiftyone import export_to_fiftyone
    from crust_clean.review.manifest import export_manifest

    first = round_one.dataset
    queue = first.load_saved_view("to review")
    ids = queue.values("crust_sample_id")
    plan = {"drop": ids[0:4], "relabel": ids[4:6], "keep": ids[6:12]}
    for decision, sample_ids in plan.items():
        record_decision(first.select_by("crust_sample_id", sample_ids), decision,
                        "red" if decision == "relabel" else None)
    copy = tmp_path / "images"
    shutil.copytree(round_one.images, copy)
    edited = [plan["drop"][0], plan["keep"][0]]
    for sample_id in edited:
        changed(copy / sample_id)
    second_run = crust_clean.fit(copy, out=tmp_path / "round2", **{**QUICK, "epochs": 3, "warmup_epochs": 1, "seed": 1})
    written = export_to_fiftyone(second_run, top=20, visualization="none")
    second = written.dataset
    carried = dict(zip(*second.exists("crust_decision").values(["crust_sample_id", "crust_decision"])))
    expected = {s: d for d, sample_ids in plan.items() for s in sample_ids if s not in edited}
    scores_then = dict(zip(*first.exists("crust_decision").values(["crust_sample_id", "crust_decided_score"])))
    scores_now = second_run.review_table().set_index("sample_id")["score"]  # NaN for val samples: no rise
    reopened = {s for s in plan["keep"] if s not in edited and scores_now[s] > scores_then[s] + 0.05}
    assert carried == {s: d for s, d in expected.items() if s not in reopened}
    assert (written.carried, written.reopened) == (len(expected) - len(reopened), len(reopened))
    assert set(second.exists("crust_decision").values("crust_decided_in")) == {first.name}  # where they were made
    assert not set(edited) & set(carried)  # a changed image inherits nothing
    suspects = set(second.match_tags("crust:suspect").values("crust_sample_id"))
    run_suspects = set(second_run.review_table(top=20).query("suspect")["sample_id"])
    kept = {s for s, d in carried.items() if d == "keep"}
    assert suspects == run_suspects - kept  # marked correct: not a suspect again unless its score rose
    assert not set(second.load_saved_view("to review").values("crust_sample_id")) & set(carried)

    cleaned = export_manifest(second_run, tmp_path / "cleaned", from_fiftyone=second.name, top=20)
    dropped = set(pd.read_csv(tmp_path / "cleaned" / "dropped.csv", dtype=str)["sample_id"])
    assert dropped == {s for s, d in carried.items() if d == "drop"} and cleaned.dropped == 3

    again = export_to_fiftyone(second_run, name="round2-reopen", top=20, visualization="none", reopen_margin=-1.0)
    fresh = export_to_fiftyone(second_run, name="round2-fresh", top=20, visualization="none", carry_forward=False)
    assert (fresh.carried, fresh.decided, fresh.to_review) == (0, 0, 20)  # a review from scratch, when asked for
    fresh.dataset.delete()
    notes = again.dataset.exists("crust_reopened")
    scored = [s for s in plan["keep"] if s not in edited and not np.isnan(scores_now[s])]  # val samples: none
    assert sorted(notes.values("crust_sample_id")) == sorted(scored) and len(scored) >= 3
    assert notes.first().crust_reopened.startswith(f"kept in {first.name} at ")  # back in the queue, with why
    cleared = next(s for s, d in carried.items() if d == "drop")
    clear_decisions(second.select_by("crust_sample_id", [cleared]))
    rerun = export_to_fiftyone(second_run, top=20, visualization="none")  # the same dataset, exported again
    assert rerun.carried == 0 and second.select_by("crust_sample_id", [cleared]).first().crust_decision is None
    assert second.select_by("crust_sample_id", [cleared]).first().crust_reopened.startswith("decision cleared in")
    for dataset in (second, again.dataset):
        dataset.delete()
    clear_decisions(first)


def test_decisions_travel_through_csv_and_back(round_one, tmp_path):
    from click.testing import CliRunner

    from crust_clean.cli import cli
    from crust_clean.review.decision_store import clear_decisions, record_decision

    run, dataset = round_one.run, round_one.dataset
    ids = dataset.load_saved_view("to review").values("crust_sample_id")
    record_decision(dataset.select_by("crust_sample_id", ids[:3]), "drop")
    record_decision(dataset.select_by("crust_sample_id", ids[3:5]), "relabel", "green")
    record_decision(dataset.select_by("crust_sample_id", ids[5:6]), "keep")
    fields = ["crust_sample_id", "crust_decision", "crust_new_label", "crust_decided_at", "crust_decided_score",
              "crust_decided_content_hash", "crust_decided_in"]
    before = sorted(zip(*dataset.exists("crust_decision").values(fields)))
    file = tmp_path / "decisions.csv"
    result = CliRunner().invoke(cli, ["decisions", "export", str(run.path), str(file)])
    assert result.exit_code == 0 and f"6 decisions of FiftyOne dataset {dataset.name!r}" in result.output
    table = pd.read_csv(file, dtype=str)
    assert len(table) == 6 and table["decided_at"].str.endswith("+00:00").all()
    clear_decisions(dataset)
    result = CliRunner().invoke(cli, ["decisions", "import", str(run.path), str(file)])
    assert result.exit_code == 0, result.output
    after = sorted(zip(*dataset.exists("crust_decision").values(fields)))
    assert [row[:3] + row[4:] for row in after] == [row[:3] + row[4:] for row in before]
    assert all(abs((a[3] - b[3]).total_seconds()) < 0.001 for a, b in zip(after, before))  # ms as Mongo keeps them
    assert dataset.count_sample_tags()["crust:decided:relabel"] == 2

    spreadsheet = tmp_path / "edited.csv"
    pd.DataFrame({
        "sample_id": [ids[6], "nope.png", ids[7], ids[8], ids[9], ids[6], ids[10], ids[11]],
        "decision": ["keep", "drop", "delete", "relabel", "drop", "drop", "relabel", ""],
        "new_label": ["", "", "", "purple", "red", "", "blue", ""],
        "content_hash": ["", "", "", "", "", "", "0" * 64, ""],
    }).to_csv(spreadsheet, index=False)
    result = CliRunner().invoke(cli, ["decisions", "import", str(run.path), str(spreadsheet)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[0] == "Error: 6 bad rows, nothing imported:"
    assert [line.split(": ", 1)[0] for line in lines[1:]] == [f"{spreadsheet}:{n}" for n in (3, 4, 5, 6, 7, 8)]
    assert "'nope.png' is not in the run" in lines[1] and "'delete' is not one of" in lines[2]
    assert "one of the classes: blue, green, red, yellow (got 'purple')" in lines[3]
    assert "goes with decision relabel only" in lines[4] and "is given twice" in lines[5]
    assert "has changed since the decision" in lines[6]
    assert len(dataset.exists("crust_decision")) == 6  # nothing imported
    with pytest.raises(BadInputError, match="needs columns sample_id,decision"):
        pd.DataFrame({"id": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
        crust_clean.import_decisions(run, tmp_path / "bad.csv")
    clear_decisions(dataset)


def test_the_app_is_bound_to_this_machine_unless_told_otherwise(round_one, monkeypatch, tmp_path):
    import fiftyone as fo
    from click.testing import CliRunner

    from crust_clean.cli import cli
    from crust_clean.config import PLUGIN_DIR
    from crust_clean.review.app import launch_review, prepare_app_environment

    with pytest.warns(CrustCleanWarning, match=r"listens on 0\.0\.0\.0:5151 without a login"), \
            pytest.raises(BadInputError, match="no FiftyOne dataset 'missing'"):
        launch_review(round_one.run, name="missing", address="0.0.0.0")  # warned, then refused: nothing served
    result = CliRunner().invoke(cli, ["review", "--help"])
    assert "--address TEXT" in result.output and "[default: 127.0.0.1]" in result.output
    result = CliRunner().invoke(cli, ["review", str(round_one.run.path), "--name", "missing", "--address", "10.1.2.3"])
    assert result.exit_code == 2
    assert result.output.splitlines()[0].startswith("Warning: the App listens on 10.1.2.3:5151 without a login")
    monkeypatch.setattr(fo.config, "plugins_dir", fo.config.plugins_dir)  # restored afterwards
    monkeypatch.setattr(fo.config, "do_not_track", fo.config.do_not_track)
    monkeypatch.delenv("FIFTYONE_PLUGINS_DIR")
    monkeypatch.delenv("FIFTYONE_DO_NOT_TRACK")
    prepare_app_environment()  # what `review` does for a user who set neither
    assert os.environ["FIFTYONE_PLUGINS_DIR"] == fo.config.plugins_dir == str(PLUGIN_DIR)
    assert os.environ["FIFTYONE_DO_NOT_TRACK"] == "true" and fo.config.do_not_track is True
    monkeypatch.setenv("FIFTYONE_PLUGINS_DIR", str(tmp_path))  # a plugins folder of the user's, without ours
    with pytest.warns(CrustCleanWarning, match=f"the review plugin is not in FIFTYONE_PLUGINS_DIR={tmp_path}"):
        prepare_app_environment()
