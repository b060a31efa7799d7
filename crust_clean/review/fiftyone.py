"""Export a run into FiftyOne for review: one sample per run sample, crust-clean's opinion in fields,
FiftyOne Brain's mistakenness beside it, and saved views that put the suspects first.

Fields written (the reviewer's decision fields, ``review.decisions.FIELDS``, written by the plugin, are never
touched, so they survive a re-export):
  ground_truth           Classification, the given label (datasets crust-clean creates; a ``fo:`` source keeps
                         its own label field)
  crust_prediction       Classification from the saved robust model, with confidence and logits
  crust_score            mean over epochs of 1 - p(given label); None for val samples
  crust_selection_rate, crust_never_selected   how often the sample was in the coreset (train samples)
  crust_suggested_label  the prediction where it differs from the given label, else None
  crust_neighbour_agreement  share of the sample's 10 nearest neighbours (embeddings) with its given label
  crust_split            train / val (also a sample tag on datasets crust-clean creates)
  crust_sample_id        the run's sample id (the key a re-export updates by)
  mistakenness           FiftyOne Brain's compute_mistakenness on crust_prediction
Tag ``crust:suspect`` marks the suspects (``--top`` K by score, or score above ``--threshold``).

With the run's embeddings (``RUN/embeddings.npy``) two FiftyOne Brain runs: ``crust_embeddings``, a 2-D
visualization for the App's Embeddings panel (UMAP when umap-learn is installed, as the fiftyone extra installs
it, else PCA; colour it by crust_score), and ``crust_similarity``, a similarity index (scikit-learn backend, cosine)
for "sort by similarity" from a suspect to its neighbours.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BadInputError
from ..run.folder import MODEL, Run
from .decisions import DECIDED_AT_FIELD, DECISION_FIELD, FIELDS, NEW_LABEL_FIELD, check_decision, check_decisions

SUSPECT_TAG = "crust:suspect"
VISUALIZATION_KEY, SIMILARITY_KEY = "crust_embeddings", "crust_similarity"
#: A saved workspace: the samples grid beside the Embeddings panel.
EMBEDDINGS_WORKSPACE = "crust embeddings"
SUSPECTS_VIEW, NEVER_SELECTED_VIEW, DISAGREEMENTS_VIEW = "crust suspects", "never selected", "disagreements"


def default_dataset_name(run: Run) -> str:
    """The FiftyOne dataset a run exports to: its ``fo:`` source, else ``crust-<run folder name>``."""
    source = run.source
    if source["kind"] == "fiftyone":
        return source["dataset"]
    return f"crust-{run.path.resolve().name}"


def export_to_fiftyone(run: Run | str | Path, *, name: str | None = None, persistent: bool = True,
                       top: int | None = None, threshold: float | None = None, overwrite: bool = False,
                       visualization: str | None = None, progress: bool = False):
    """Write ``run`` into a FiftyOne dataset and return it (see the module docstring for the fields).

    A new dataset is created unless the run's source is a FiftyOne dataset: then the scores go into that
    dataset. Re-exporting the same run updates fields in place (no duplicate samples; reviewer tags and
    decisions kept). A dataset that holds another run, or that crust-clean did not create, is only
    written with ``overwrite=True`` (a dataset crust-clean created for another run is then replaced).
    The suspects (tag ``crust:suspect``) are the run's own, the ``top`` K scores or those above ``threshold``.
    ``visualization``: how the embeddings are drawn in 2-D, ``umap``, ``pca`` or ``tsne`` (default: umap when
    umap-learn is installed, else pca), or ``none`` (neither the visualization nor the similarity index).
    """
    import fiftyone as fo

    run = Run.of(run)
    name = name or default_dataset_name(run)
    source = run.source
    into_source = source["kind"] == "fiftyone" and name == source["dataset"]
    table = run.review_table(top=top, threshold=threshold)
    dataset, created = _target_dataset(run, name, into_source=into_source, overwrite=overwrite)
    if created:
        files = run.image_files(progress=progress)
        dataset.add_samples([
            fo.Sample(filepath=str(file), crust_sample_id=sample_id, ground_truth=fo.Classification(label=label),
                      tags=[split])
            for file, sample_id, label, split in zip(files, table["sample_id"], table["given_label"], table["split"])
        ], progress=progress)
    key = "id" if into_source else "crust_sample_id"
    samples = dataset.select_by(key, table["sample_id"].tolist(), ordered=True)
    if len(samples) != len(table):
        raise BadInputError(f"FiftyOne dataset {name!r} lacks {len(table) - len(samples)} samples of the run")
    label_field = source["label_field"] if into_source else "ground_truth"
    _declare_fields(dataset)
    _write_fields(samples, table, into_source)
    dataset.untag_samples(SUSPECT_TAG)
    dataset.select_by(key, table.loc[table["suspect"], "sample_id"].tolist()).tag_samples(SUSPECT_TAG)
    _mistakenness(samples, label_field)
    _brain_runs(dataset, samples, run.embeddings(), visualization or default_visualization())
    _save_views(dataset, label_field)
    dataset.info.update({
        "crust_run": str(run.path.resolve()), "crust_config": run.config.to_dict(),
        "crust_model": str((run.path / MODEL).resolve()), "crust_label_field": label_field,
        "crust_created": bool(dataset.info.get("crust_created", created)),
        "crust_exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    dataset.persistent = persistent
    dataset.save()
    return dataset


def _target_dataset(run: Run, name: str, *, into_source: bool, overwrite: bool):
    """(the dataset to export into, whether it is new). An existing dataset is reused when it holds this run or
    is the run's own ``fo:`` source; otherwise it needs ``overwrite`` (one crust-clean created is then replaced)."""
    import fiftyone as fo

    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else None
    if dataset is not None:
        holder = dataset.info.get("crust_run")
        if holder not in (None, str(run.path.resolve())) or (holder is None and not into_source):
            if not overwrite:
                whose = f"run {holder}" if holder else "data crust-clean did not create"
                raise BadInputError(f"FiftyOne dataset {name!r} holds {whose}: choose another --name or --overwrite")
            if dataset.info.get("crust_created"):
                dataset.delete()
                dataset = None
    return (fo.Dataset(name), True) if dataset is None else (dataset, False)


def _write_fields(samples, table: pd.DataFrame, into_source: bool) -> None:
    import fiftyone as fo

    def column(name):  # None where a value is missing (val samples have no scores)
        return [None if pd.isna(v) else v for v in table[name].tolist()]

    predictions = [fo.Classification(label=label, confidence=float(confidence), logits=np.asarray(logits).tolist())
                   for label, confidence, logits in zip(table["predicted_label"], table["confidence"], table["logits"])]
    suggested = [p if p != g else None for p, g in zip(table["predicted_label"], table["given_label"])]
    never = [None if pd.isna(v) else bool(v) for v in table["never_selected"]]
    values = {
        "crust_prediction": predictions, "crust_score": column("score"),
        "crust_selection_rate": column("selection_rate"), "crust_never_selected": never,
        "crust_neighbour_agreement": column("neighbour_agreement") if "neighbour_agreement" in table else
        [None] * len(table),
        "crust_suggested_label": suggested, "crust_split": table["split"].tolist(),
    }
    if into_source:
        values["crust_sample_id"] = table["sample_id"].tolist()
    for field, field_values in values.items():
        samples.set_values(field, field_values)


def _declare_fields(dataset) -> None:
    """Give every crust field its type up front: values may all be None (no selection epoch, no decision yet)."""
    import fiftyone as fo

    types = {
        "crust_prediction": (fo.EmbeddedDocumentField, fo.Classification), "crust_score": (fo.FloatField, None),
        "crust_selection_rate": (fo.FloatField, None), "crust_never_selected": (fo.BooleanField, None),
        "crust_neighbour_agreement": (fo.FloatField, None),
        "crust_suggested_label": (fo.StringField, None), "crust_split": (fo.StringField, None),
        "crust_sample_id": (fo.StringField, None), DECISION_FIELD: (fo.StringField, None),
        NEW_LABEL_FIELD: (fo.StringField, None), DECIDED_AT_FIELD: (fo.DateTimeField, None),
    }
    schema = dataset.get_field_schema()
    for field, (kind, embedded) in types.items():
        if field not in schema:
            dataset.add_sample_field(field, kind, embedded_doc_type=embedded)


def default_visualization() -> str:
    """UMAP when umap-learn is installed (the fiftyone extra installs it), else PCA (t-SNE is slow at scale)."""
    import importlib.util

    return "umap" if importlib.util.find_spec("umap") else "pca"


def _brain_runs(dataset, samples, embeddings, method: str) -> None:
    """The visualization and the similarity index of the run's embeddings (rows in ``samples`` order), anew."""
    import fiftyone as fo
    import fiftyone.brain as fob

    for key in (VISUALIZATION_KEY, SIMILARITY_KEY):
        if key in dataset.list_brain_runs():
            dataset.delete_brain_run(key)
    if dataset.has_workspace(EMBEDDINGS_WORKSPACE):
        dataset.delete_workspace(EMBEDDINGS_WORKSPACE)
    if embeddings is None or method == "none":
        return
    vectors = np.asarray(embeddings, dtype=np.float32)
    fob.compute_visualization(samples, embeddings=vectors, brain_key=VISUALIZATION_KEY, method=method, seed=0,
                              verbose=False, progress=False)
    fob.compute_similarity(samples, embeddings=vectors, brain_key=SIMILARITY_KEY, backend="sklearn",
                           metric="cosine", progress=False)
    # the panel opens on its list of maps: FiftyOne 1.22 keeps the open map and its colouring in the browser only
    panels = [fo.Panel(type="Samples", pinned=True), fo.Panel(type="Embeddings")]
    dataset.save_workspace(EMBEDDINGS_WORKSPACE, fo.Space(children=panels, orientation="horizontal"),
                           description=f"the samples beside the Embeddings panel: open {VISUALIZATION_KEY}, colour by "
                                       "crust_score")


def _mistakenness(samples, label_field: str) -> None:
    import fiftyone.brain as fob

    fob.compute_mistakenness(samples, "crust_prediction", label_field=label_field, use_logits=True)


def _save_views(dataset, label_field: str) -> None:
    from fiftyone import ViewField as F

    views = {
        SUSPECTS_VIEW: dataset.match_tags(SUSPECT_TAG).sort_by("crust_score", reverse=True),
        NEVER_SELECTED_VIEW: dataset.match(F("crust_never_selected") == True).sort_by("crust_score", reverse=True),  # noqa: E712
        DISAGREEMENTS_VIEW: dataset.exists("crust_prediction")
        .match(F("crust_prediction.label") != F(f"{label_field}.label")).sort_by("crust_score", reverse=True),
    }
    for view_name, view in views.items():
        dataset.save_view(view_name, view, overwrite=True)


def record_decision(samples, decision: str, new_label: str | None = None) -> int:
    """A reviewer's decision on ``samples`` (a FiftyOne view), stored in the decision fields with the time (UTC).
    What the plugin's operators call; returns how many samples it marked."""
    check_decision(decision, new_label)
    n = len(samples)
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # FiftyOne stores naive UTC datetimes
    samples.set_values(DECISION_FIELD, [decision] * n)
    samples.set_values(NEW_LABEL_FIELD, [new_label] * n)
    samples.set_values(DECIDED_AT_FIELD, [now] * n)
    return n


def read_decisions(run: Run, name: str | None = None) -> pd.DataFrame:
    """``sample_id, reviewed_decision, new_label, decided_at`` as the reviewers left them in the FiftyOne
    dataset ``name`` (default: the run's export). Raises BadInputError when there is no such dataset, it holds
    no export, or a stored decision breaks the contract (``decisions.check_decisions``)."""
    import fiftyone as fo

    name = name or default_dataset_name(run)
    if not fo.dataset_exists(name):
        raise BadInputError(f"no FiftyOne dataset {name!r} to read decisions from: run `crust-clean export "
                            f"fiftyone {run.path}` and review first, or use --policy auto")
    dataset = fo.load_dataset(name)
    schema = dataset.get_field_schema()
    if "crust_sample_id" not in schema:
        raise BadInputError(f"FiftyOne dataset {name!r} holds no crust-clean export (no crust_sample_id field)")
    view = dataset.exists("crust_sample_id")
    fields = ["crust_sample_id"] + [f for f in FIELDS if f in schema]
    values = dict(zip(fields, view.values(fields)))
    missing = [None] * len(view)
    frame = pd.DataFrame({
        "sample_id": values["crust_sample_id"],
        "reviewed_decision": values.get(DECISION_FIELD, missing),
        "new_label": values.get(NEW_LABEL_FIELD, missing),
        "decided_at": values.get(DECIDED_AT_FIELD, missing),
    })
    check_decisions(frame, f"FiftyOne dataset {name!r}")
    return frame


def launch_review(run: Run | str | Path, *, name: str | None = None, port: int = 5151, remote: bool = False):
    """Open the FiftyOne App on the run's exported dataset, in the suspects view; returns the session."""
    import fiftyone as fo

    run = Run.of(run)
    name = name or default_dataset_name(run)
    if not fo.dataset_exists(name):
        raise BadInputError(f"no FiftyOne dataset {name!r}: run `crust-clean export fiftyone {run.path}` first")
    dataset = fo.load_dataset(name)
    view = dataset.load_saved_view(SUSPECTS_VIEW) if dataset.has_saved_view(SUSPECTS_VIEW) else dataset
    return fo.launch_app(view, port=port, remote=remote, auto=not remote)
