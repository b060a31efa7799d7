"""Export a run into FiftyOne for review: one sample per run sample, crust-clean's opinion in fields,
FiftyOne Brain's mistakenness beside it, and saved views that make a review queue.

Fields written (the reviewer's decision fields, ``review.decisions.FIELDS``, are written by the plugin and by
carrying decisions forward, never by a re-export, so they survive one):
  given_label            Classification, the label the data gives (datasets crust-clean creates; a ``fo:`` source
                         keeps its own label field)
  crust_prediction       Classification from the saved robust model, with confidence and logits
  crust_score            mean over epochs of 1 - p(given label); None for val samples
  crust_selection_rate, crust_never_selected   how often the sample was in the coreset (train samples)
  crust_suggested_label  the prediction where it differs from the given label, else None
  crust_neighbour_agreement  share of the sample's 10 nearest neighbours (embeddings) with its given label
  crust_split            train / val
  crust_sample_id        the run's sample id (the key a re-export updates by)
  crust_content_hash     SHA-256 of the image file now (a decision is about this content)
  crust_review           Classification: the decision on the tile ("drop", "keep", "relabel to <class>")
  crust_reopened         why a sample is back in the queue: kept earlier and its score rose, or decision cleared
  mistakenness           FiftyOne Brain's compute_mistakenness on crust_prediction
  crust_map, crust_embedding   the sample's point on the embeddings map and its embedding (float32), when the
                         run has embeddings (below)
  crust_duplicate_group  the sample's near-duplicate group (``run.checks``: 0 is the first to review), else None
  crust_nearest_similarity, crust_outlier_score   cosine similarity to its nearest sample; how many robust
                         standard deviations it is farther than usual from its neighbours or the nearest class
  crust_issues           the issues it has besides its label: near-duplicate, outlier, quality:<kind>
  metadata               FiftyOne's image metadata (size, type, width, height), computed at export
Tag ``crust:suspect`` marks the suspects (``--top`` K by score, or score above ``--threshold``), except samples
kept in an earlier round whose score did not rise (``review.decisions``); ``crust:decided:<decision>`` shows a
decision on its tile; ``crust:near-duplicate``, ``crust:outlier`` and ``crust:quality:<kind>`` mark the other
issues (``RUN/issues.csv``). Saved views: ``to review`` (the queue: suspects without a decision, highest score
first), ``decided``, ``crust suspects``, ``never selected``, ``disagreements``, and for runs with checks
``near-duplicates`` (group by group, the groups with different labels first), ``outliers`` (farthest first) and
``image quality``.

With the run's embeddings (``RUN/embeddings.npy``) two FiftyOne Brain runs: ``crust_embeddings``, a 2-D map for
the App's Embeddings panel (UMAP when umap-learn is installed, as the fiftyone extra installs it, else PCA; fit on
at most ``MAP_FIT_ROWS`` samples, every sample placed, its point in ``crust_map``; colour it by crust_score), and
``crust_similarity``, a similarity index (scikit-learn backend, cosine, on the float32 embeddings in
``crust_embedding``) for "sort by similarity" from a suspect to its neighbours, up to ``SIMILARITY_UP_TO`` samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.images import content_hash
from ..errors import BadInputError
from ..run.folder import MODEL, Run
from . import decisions
from .decision_store import (
    BADGE_FIELD,
    CONTENT_HASH_FIELD,
    REOPENED_FIELD,
    SUSPECT_TAG,
    carry_decisions_forward,
    queue_counts,
    save_queue_views,
)

VISUALIZATION_KEY, SIMILARITY_KEY = "crust_embeddings", "crust_similarity"
#: A saved workspace: the samples grid beside the Embeddings panel.
EMBEDDINGS_WORKSPACE = "crust embeddings"
SUSPECTS_VIEW, NEVER_SELECTED_VIEW, DISAGREEMENTS_VIEW = "crust suspects", "never selected", "disagreements"
DUPLICATES_VIEW, OUTLIERS_VIEW, QUALITY_VIEW = "near-duplicates", "outliers", "image quality"
#: The tag of each issue besides the label (``run.checks.ISSUE_TYPES``): ``crust:<issue>``.
ISSUE_TAG_PREFIX = "crust:"
DUPLICATE_GROUP_FIELD = "crust_duplicate_group"
#: The given label's field in datasets crust-clean creates.
GIVEN_LABEL_FIELD = "given_label"
#: Samples whose fields are built and written per database call (``_write_fields``).
WRITE_BLOCK = 10_000
#: The map's fit (``map_points``): at most this many rows, reduced to this many dimensions by PCA first. On the
#: 50,000 Lite2 features of CIFAR-10 this maps all of them in 16.7 s against 62.1 s for UMAP fit on all, and 53.8 %
#: of each image's 10 nearest on the map are of its class against 56.2 % (benchmarks/results/fiftyone-map.md).
MAP_FIT_ROWS, MAP_PCA_DIMS = 20_000, 50
#: The similarity index holds every embedding as float32 in the App's memory (scikit-learn backend): above this
#: many samples (1 GB of 1,280-d embeddings) the export leaves it out and says so.
SIMILARITY_UP_TO = 200_000
#: The embeddings the similarity index reads (float32 arrays), and the map's point of each sample (with a 2-D
#: index: the App's lasso queries it).
EMBEDDING_FIELD, MAP_FIELD = "crust_embedding", "crust_map"
#: Tile colours: the given label and the prediction by field, a decision by its kind.
_COLOURS = {GIVEN_LABEL_FIELD: "#2b8cbe", "crust_prediction": "#f28e2b", BADGE_FIELD: "#59a14f",
            "keep": "#59a14f", "drop": "#e15759", "relabel": "#edc948"}


def default_dataset_name(run: Run) -> str:
    """The FiftyOne dataset a run exports to: its ``fo:`` source, else ``crust-<run folder name>-<6 hex digits of
    the folder's path>`` (two runs both named ``run`` get two datasets)."""
    source = run.source
    if source["kind"] == "fiftyone":
        return source["dataset"]
    path = run.path.resolve()
    return f"crust-{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"


@dataclass
class Export:
    """What ``export_to_fiftyone`` wrote: the dataset, its queue, and the decisions carried from earlier rounds."""

    dataset: object  # fiftyone.core.dataset.Dataset
    suspects: int
    carried: int  # decisions carried forward from earlier datasets
    reopened: int  # kept earlier, score rose since: back in the queue
    decided: int
    to_review: int
    similarity_left_out: str | None  # why there is no similarity index though the map was made, else None


def export_to_fiftyone(run: Run | str | Path, *, name: str | None = None, persistent: bool = True,
                       top: int | None = None, threshold: float | None = None, overwrite: bool = False,
                       visualization: str | None = None, carry_forward: bool = True,
                       reopen_margin: float = decisions.REOPEN_MARGIN, progress: bool = False) -> Export:
    """Write ``run`` into a FiftyOne dataset (see the module docstring for the fields and views).

    A new dataset is created unless the run's source is a FiftyOne dataset: then the scores go into that
    dataset. Re-exporting the same run updates fields in place (no duplicate samples; reviewer tags and
    decisions kept). A dataset that holds another run, or that crust-clean did not create, is only
    written with ``overwrite=True`` (a dataset crust-clean created for another run is then replaced).
    Decisions made on the same samples (id and image content) in other crust-clean datasets are carried forward
    unless ``carry_forward=False`` (``review.decisions``; ``reopen_margin``: how far a kept sample's score must rise
    to re-open it).
    The suspects (tag ``crust:suspect``) are the run's own, the ``top`` K scores or those above ``threshold``.
    ``visualization``: how the embeddings are drawn in 2-D, ``umap``, ``pca`` or ``tsne`` (default: umap when
    umap-learn is installed, else pca), or ``none`` (neither the visualization nor the similarity index).
    """
    import fiftyone as fo
    from fiftyone import ViewField as F

    run = Run.of(run)
    name = name or default_dataset_name(run)
    source = run.source
    into_source = source["kind"] == "fiftyone" and name == source["dataset"]
    table = run.review_table(top=top, threshold=threshold)
    dataset, created = _target_dataset(run, name, into_source=into_source, overwrite=overwrite)
    files = run.image_files(progress=progress)
    if created:  # a generator: FiftyOne adds it in batches, so no list of every Sample is held
        dataset.add_samples((
            fo.Sample(filepath=str(file), crust_sample_id=sample_id, given_label=fo.Classification(label=label))
            for file, sample_id, label in zip(files, table["sample_id"], table["given_label"])
        ), num_samples=len(table), progress=progress)
    key = "id" if into_source else "crust_sample_id"
    samples = dataset.select_by(key, table["sample_id"].tolist(), ordered=True)
    if len(samples) != len(table):
        raise BadInputError(f"FiftyOne dataset {name!r} lacks {len(table) - len(samples)} samples of the run")
    label_field = source["label_field"] if into_source else dataset.info.get("crust_label_field", GIVEN_LABEL_FIELD)
    declare_fields(dataset)
    _write_fields(samples, table, into_source, [content_hash(Path(file).read_bytes()) for file in files])
    dataset.compute_metadata(progress=progress)
    moved = (carry_decisions_forward(dataset, samples, reopen_margin=reopen_margin) if carry_forward
             else {"carried": 0, "reopened": 0})
    kept_earlier = set(samples.match((F(decisions.DECISION_FIELD) == "keep") & (F(decisions.DECIDED_IN_FIELD) != name))
                       .values("crust_sample_id"))
    suspects = [s for s in table.loc[table["suspect"], "sample_id"] if s not in kept_earlier]
    dataset.untag_samples(SUSPECT_TAG)
    dataset.select_by(key, suspects).tag_samples(SUSPECT_TAG)
    checks = run.checks()
    _write_checks(dataset, samples, key, checks, run.issues)
    _mistakenness(samples, label_field)
    similarity_left_out = _brain_runs(dataset, samples, run.embeddings(), visualization or default_visualization())
    _save_views(dataset, label_field, checked=checks is not None)
    if dataset.info.get("crust_created", created):  # a user's own fo: dataset keeps its App settings
        _app_config(dataset, label_field)
    dataset.info.update({
        "crust_run": str(run.path.resolve()), "crust_config": run.config.to_dict(),
        "crust_model": str((run.path / MODEL).resolve()), "crust_label_field": label_field,
        "crust_classes": sorted(set(run.samples["given_label"])),
        "crust_created": bool(dataset.info.get("crust_created", created)),
        "crust_exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    dataset.persistent = persistent
    dataset.save()
    decided, left = queue_counts(dataset)
    return Export(dataset=dataset, suspects=len(suspects), carried=moved["carried"], reopened=moved["reopened"],
                  decided=decided, to_review=left, similarity_left_out=similarity_left_out)


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


def _write_fields(samples, table: pd.DataFrame, into_source: bool, content_hashes: list[str]) -> None:
    """crust's fields of ``samples`` (ordered as ``table``) from ``table``, ``WRITE_BLOCK`` samples at a time: the
    field values of one block are built at once (a Classification per sample), not the whole dataset's."""
    ids = samples.values("id")
    for start in range(0, len(table), WRITE_BLOCK):
        block = slice(start, start + WRITE_BLOCK)
        for field, values in _field_values(table.iloc[block], into_source, content_hashes[block]).items():
            samples.set_values(field, dict(zip(ids[block], values)), key_field="id")


def issue_tags() -> list[str]:
    """The tags of every issue type besides the label."""
    from ..config import ISSUE_TYPES

    return [ISSUE_TAG_PREFIX + issue for issue in ISSUE_TYPES]


def _write_checks(dataset, samples, key: str, checks: pd.DataFrame | None, issues: pd.DataFrame | None) -> None:
    """The near-duplicate, outlier and quality fields and tags (``run.checks``) of ``samples`` (ordered as
    ``checks``), anew: a re-export leaves no stale tag. A run without checks gets none."""
    dataset.untag_samples(issue_tags())
    if checks is None:
        return
    ids = samples.values("id")
    listed = issues.groupby("sample_id", sort=False)["issue"].agg(list)
    group = checks["near_duplicate_group"].to_numpy()
    values = {DUPLICATE_GROUP_FIELD: [int(g) if g >= 0 else None for g in group],
              "crust_nearest_similarity": [None if np.isnan(v) else float(v) for v in checks["nearest_similarity"]],
              "crust_outlier_score": [None if np.isnan(v) else float(v) for v in checks["outlier_score"]],
              "crust_issues": [listed.get(s) for s in checks["sample_id"]]}
    for start in range(0, len(ids), WRITE_BLOCK):
        block = slice(start, start + WRITE_BLOCK)
        for field, column in values.items():
            samples.set_values(field, dict(zip(ids[block], column[block])), key_field="id")
    for issue, part in issues.groupby("issue", sort=False):
        dataset.select_by(key, part["sample_id"].tolist()).tag_samples(ISSUE_TAG_PREFIX + issue)


def _field_values(table: pd.DataFrame, into_source: bool, content_hashes: list[str]) -> dict[str, list]:
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
        CONTENT_HASH_FIELD: content_hashes,
    }
    if into_source:
        values["crust_sample_id"] = table["sample_id"].tolist()
    return values


def declare_fields(dataset) -> None:
    """Give every crust field its type up front: values may all be None (no selection epoch, no decision yet)."""
    import fiftyone as fo

    types = {
        "crust_prediction": (fo.EmbeddedDocumentField, fo.Classification), "crust_score": (fo.FloatField, None),
        BADGE_FIELD: (fo.EmbeddedDocumentField, fo.Classification),
        "crust_selection_rate": (fo.FloatField, None), "crust_never_selected": (fo.BooleanField, None),
        "crust_neighbour_agreement": (fo.FloatField, None),
        "crust_suggested_label": (fo.StringField, None), "crust_split": (fo.StringField, None),
        "crust_sample_id": (fo.StringField, None), CONTENT_HASH_FIELD: (fo.StringField, None),
        REOPENED_FIELD: (fo.StringField, None), decisions.DECISION_FIELD: (fo.StringField, None),
        decisions.NEW_LABEL_FIELD: (fo.StringField, None), decisions.DECIDED_AT_FIELD: (fo.DateTimeField, None),
        decisions.DECIDED_SCORE_FIELD: (fo.FloatField, None), decisions.DECIDED_HASH_FIELD: (fo.StringField, None),
        decisions.DECIDED_IN_FIELD: (fo.StringField, None),
        DUPLICATE_GROUP_FIELD: (fo.IntField, None), "crust_nearest_similarity": (fo.FloatField, None),
        "crust_outlier_score": (fo.FloatField, None), "crust_issues": (fo.ListField, fo.StringField),
    }
    schema = dataset.get_field_schema()
    for field, (kind, embedded) in types.items():
        if field not in schema:
            dataset.add_sample_field(field, kind, embedded_doc_type=embedded)


def default_visualization() -> str:
    """UMAP when umap-learn is installed (the fiftyone extra installs it), else PCA (t-SNE is slow at scale)."""
    import importlib.util

    return "umap" if importlib.util.find_spec("umap") else "pca"


def map_points(embeddings: np.ndarray, method: str, *, fit_rows: int = MAP_FIT_ROWS, block_rows: int = 50_000,
               seed: int = 0) -> np.ndarray:
    """(n, 2) float32 points of ``embeddings`` (n, D; a memory map is read ``block_rows`` at a time) for the App's
    map: PCA to ``MAP_PCA_DIMS`` then ``method`` (``umap``, ``tsne``; ``pca``: the first two components), both fit on
    at most ``fit_rows`` rows drawn with ``seed`` and then applied to every row a block at a time, so the cost and
    memory of the fit do not grow with n. t-SNE cannot place rows it was not fit on: up to ``fit_rows`` only."""
    from sklearn.decomposition import PCA

    n = len(embeddings)
    if method not in ("umap", "pca", "tsne"):
        raise BadInputError(f"visualization {method!r} is not one of umap, pca, tsne, none")
    if method == "tsne" and n > fit_rows:
        raise BadInputError(f"t-SNE cannot map {n:,} samples (it places only the {fit_rows:,} it is fit on): "
                            "use --visualization umap or pca")
    fitted = np.arange(n) if n <= fit_rows else np.sort(np.random.default_rng(seed).choice(n, fit_rows, replace=False))
    sample = np.asarray(embeddings[fitted], dtype=np.float32)
    pca = PCA(min(2 if method == "pca" else MAP_PCA_DIMS, *sample.shape), random_state=seed).fit(sample)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(2, random_state=seed).fit_transform(pca.transform(sample)).astype(np.float32)
    reducer = None
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed)
        if n <= fit_rows:  # every row in the fit: its own embedding (a transform would place them again)
            return reducer.fit_transform(pca.transform(sample)).astype(np.float32)
        reducer.fit(pca.transform(sample))
    points = np.empty((n, 2), dtype=np.float32)
    for start in range(0, n, block_rows):
        block = pca.transform(np.asarray(embeddings[start:start + block_rows], dtype=np.float32))
        points[start:start + len(block)] = block if reducer is None else reducer.transform(block)
    return points


def _brain_runs(dataset, samples, embeddings, method: str) -> str | None:
    """The map and the similarity index of the run's embeddings (rows in ``samples`` order), anew: the map's points
    from ``map_points``; the similarity index (up to ``SIMILARITY_UP_TO`` samples) reads the embeddings from the
    samples' ``EMBEDDING_FIELD``, written a block at a time (in the brain run's own record they would be one JSON
    list: for 50,000 of them 56 s and a 5.3 GB heap to build, 23 s for the App's first sort, against 20 s, 2.5 GB
    and 5 s; benchmarks/results/fiftyone-map.md). Returns why the similarity index was left out where the map was
    made, else None."""
    import fiftyone as fo
    import fiftyone.brain as fob

    for key in (VISUALIZATION_KEY, SIMILARITY_KEY):
        if key in dataset.list_brain_runs():
            dataset.delete_brain_run(key)
    if dataset.has_workspace(EMBEDDINGS_WORKSPACE):
        dataset.delete_workspace(EMBEDDINGS_WORKSPACE)
    if dataset.has_sample_field(EMBEDDING_FIELD):
        dataset.delete_sample_field(EMBEDDING_FIELD)
    if embeddings is None or method == "none":
        return None
    fob.compute_visualization(samples, points=map_points(embeddings, method), brain_key=VISUALIZATION_KEY,
                              create_index=True, points_field=MAP_FIELD, progress=False)
    left_out = None
    if len(samples) > SIMILARITY_UP_TO:
        left_out = (f"no similarity index above {SIMILARITY_UP_TO:,} samples: it would hold every embedding in the "
                    "App's memory (sort by similarity at this size needs one of FiftyOne Brain's vector database "
                    "backends)")
    else:
        ids = samples.values("id")
        for start in range(0, len(ids), WRITE_BLOCK):
            block = np.asarray(embeddings[start:start + WRITE_BLOCK], dtype=np.float32)
            samples.select(ids[start:start + len(block)], ordered=True).set_values(EMBEDDING_FIELD, list(block))
        fob.compute_similarity(samples, embeddings=EMBEDDING_FIELD, brain_key=SIMILARITY_KEY, backend="sklearn",
                               metric="cosine", progress=False)
    # the panel opens on its list of maps: FiftyOne 1.22 keeps the open map and its colouring in the browser only
    panels = [fo.Panel(type="Samples", pinned=True), fo.Panel(type="Embeddings")]
    dataset.save_workspace(EMBEDDINGS_WORKSPACE, fo.Space(children=panels, orientation="horizontal"),
                           description=f"the samples beside the Embeddings panel: open {VISUALIZATION_KEY}, colour by "
                                       "crust_score")
    return left_out


def _mistakenness(samples, label_field: str) -> None:
    import fiftyone.brain as fob

    fob.compute_mistakenness(samples, "crust_prediction", label_field=label_field, use_logits=True)


def _save_views(dataset, label_field: str, *, checked: bool) -> None:
    from fiftyone import ViewField as F

    quality_tags = [tag for tag in issue_tags() if tag.startswith(ISSUE_TAG_PREFIX + "quality:")]
    checks = {
        DUPLICATES_VIEW: dataset.match_tags(ISSUE_TAG_PREFIX + "near-duplicate").sort_by(
            [(DUPLICATE_GROUP_FIELD, 1), ("crust_nearest_similarity", -1)]),
        OUTLIERS_VIEW: dataset.match_tags(ISSUE_TAG_PREFIX + "outlier").sort_by("crust_outlier_score", reverse=True),
        QUALITY_VIEW: dataset.match_tags(quality_tags),
    }
    views = {
        SUSPECTS_VIEW: dataset.match_tags(SUSPECT_TAG).sort_by("crust_score", reverse=True),
        NEVER_SELECTED_VIEW: dataset.match(F("crust_never_selected") == True).sort_by("crust_score", reverse=True),  # noqa: E712
        DISAGREEMENTS_VIEW: dataset.exists("crust_prediction")
        .match(F("crust_prediction.label") != F(f"{label_field}.label")).sort_by("crust_score", reverse=True),
    }
    save_queue_views(dataset)  # first in the App's list of saved views
    for view_name, view in views.items():
        dataset.save_view(view_name, view, overwrite=True)
    for view_name, view in checks.items():
        if checked:
            dataset.save_view(view_name, view, overwrite=True)
        elif dataset.has_saved_view(view_name):
            dataset.delete_saved_view(view_name)


def _app_config(dataset, label_field: str) -> None:
    """Tiles that say what they show: the given label, the prediction and a decision in fixed colours (named in the
    sidebar), and a near-duplicate's group; the decision tags in their colours where sample tags are shown."""
    import fiftyone as fo
    from fiftyone.core.odm.dataset import ActiveFields

    colours = [{"path": label_field, "fieldColor": _COLOURS[GIVEN_LABEL_FIELD]},
               {"path": "crust_prediction", "fieldColor": _COLOURS["crust_prediction"]},
               {"path": BADGE_FIELD, "fieldColor": _COLOURS[BADGE_FIELD]},
               {"path": "tags", "valueColors": [{"value": decisions.DECIDED_TAG + d, "color": _COLOURS[d]}
                                                for d in ("keep", "drop", "relabel")]}]
    dataset.app_config.color_scheme = fo.ColorScheme(color_by="field", fields=colours)
    dataset.app_config.active_fields = ActiveFields(paths=[label_field, "crust_prediction", BADGE_FIELD,
                                                           DUPLICATE_GROUP_FIELD])  # shown only where a group is
    dataset.save()

