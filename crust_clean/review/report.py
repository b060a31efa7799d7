"""Run report: how dirty the dataset is, where, and whether to trust the run, for a labeling lead.

``write_report(run)`` writes ``RUN/report/``: ``index.html`` (self-contained: every picture is embedded,
no network) and the same pictures as PNG files beside it (matplotlib), and returns a ``Report`` whose
``text()`` is the terminal summary. Everything comes from the run folder: the scores and suspects
(``scores.csv``), the saved model's predictions, the per-epoch metrics and the config. Parts that need
true labels (coreset label accuracy, clean vs mislabeled selection rates, detection figures) exist only
for runs fitted with ``--true-labels``; without them they are left out and the report says so.

The estimate of "how many labels are wrong" is the number of suspects under the run's rule (or ``top`` /
``threshold``, as for the exports); the suggested label of a sample is the saved model's prediction.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import staged_folder
from ..errors import CrustCleanError
from ..method.scores import SuspectRule
from ..run.folder import CONFIG, REPORT, Run

#: The figures of a report, in page order; ``coreset.png`` also when true labels are unknown (sizes); the last
#: three (``ISSUE_FIGURES``) for runs with checks (``run.checks``).
ISSUE_FIGURES = ("duplicates.png", "outliers.png", "quality.png")
FIGURES = ("classes.png", "scores.png", "training.png", "coreset.png", "suspects.png", *ISSUE_FIGURES)
#: How many near-duplicate groups, and members of each, the report pictures; outliers and quality issues pictured.
DUPLICATE_GROUPS_SHOWN, GROUP_MEMBERS_SHOWN, ISSUES_SHOWN = 6, 6, 16
THUMBNAIL_PX = 96


# ------------------------------------------------------------------------------------------ the numbers
def class_health(table: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Per given class of the training samples (``table``: scores.csv rows with a ``suspect`` column):
    samples, suspects, their share, never-selected samples, the mean score, and the label the model
    most often suggests for the class's suspects (with its count). Sorted by suspect share, highest first."""
    rows = []
    for name in class_names:
        part = table[table["given_label"] == name]
        suspects = part[part["suspect"]]
        suggested = suspects.loc[suspects["predicted_label"] != name, "predicted_label"].value_counts()
        rows.append({
            "class": name, "samples": len(part), "suspects": len(suspects),
            "suspect_share": len(suspects) / len(part) if len(part) else np.nan,
            "never_selected": int(part["never_selected"].sum()),
            "mean_score": part["score"].mean() if len(part) else np.nan,
            "top_suggested": f"{suggested.index[0]} ({suggested.iloc[0]})" if len(suggested) else "",
        })
    out = pd.DataFrame(rows)
    return out.sort_values(["suspect_share", "class"], ascending=[False, True], kind="stable",
                           na_position="last").reset_index(drop=True)


def confused_pairs(table: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The ``top`` (given label -> suggested label) pairs among the suspects the model relabels, by count."""
    relabeled = table[table["suspect"] & (table["predicted_label"] != table["given_label"])]
    counts = relabeled.groupby(["given_label", "predicted_label"]).size().rename("suspects").reset_index()
    counts = counts.rename(columns={"given_label": "given", "predicted_label": "suggested"})
    return counts.sort_values(["suspects", "given", "suggested"], ascending=[False, True, True],
                              kind="stable").head(top).reset_index(drop=True)


def key_figures(table: pd.DataFrame, summary: dict, *, own_rule: bool = True) -> dict:
    """The headline numbers: training samples, suspects (the estimate of wrong labels) and their share,
    never-selected samples, the robust model's validation accuracy, and the detection figures when true
    labels were given: AUROC and average precision of the ranking, and precision / recall / F1 of the
    suspects when they are the run's own (``own_rule``; the summary measured those, not other cuts)."""
    n = len(table)
    figures = {
        "training samples": n,
        "estimated mislabeled": int(table["suspect"].sum()),
        "estimated mislabeled share": float(table["suspect"].mean()) if n else 0.0,
        "never selected": int(table["never_selected"].sum()),
        "never selected share": float(table["never_selected"].mean()) if n else 0.0,
        "skipped (unreadable)": summary.get("n_skipped", 0),
        "val accuracy (noisy labels)": summary.get("val_accuracy"),
    }
    detection = summary.get("detection")
    if detection:
        figures["mislabeled (true labels)"] = detection.get("noisy")
        kept = ("auroc", "average_precision") + (("precision", "recall", "f1") if own_rule else ())
        figures.update({f"vs truth: {k.replace('_', ' ')}": detection[k] for k in kept})
    return figures


# ----------------------------------------------------------------------------------------- the report
@dataclass
class Report:
    path: Path  # RUN/report/index.html
    figures: dict[str, float | int | None]
    per_class: pd.DataFrame
    confusions: pd.DataFrame
    rule: str
    has_truth: bool
    images: list[Path] = field(default_factory=list)  # the PNGs beside index.html
    missing_thumbnails: list[str] = field(default_factory=list)  # suspects whose image could not be read
    issue_counts: pd.DataFrame | None = None  # samples per issue type (``run.checks``); None: not checked

    def text(self) -> str:
        """The key figures, the per-class table and the confused pairs as plain text (the terminal's)."""
        lines = [f"report: {self.path}", f"suspects = {self.rule}", ""]
        width = max(len(k) for k in self.figures)
        lines += [f"{k:<{width}}  {_format_value(k, v)}" for k, v in self.figures.items()]
        lines += ["", "per class (given label):", _table_text(self.per_class)]
        if len(self.confusions):
            lines += ["", "most confused (given -> suggested, suspects):", _table_text(self.confusions)]
        if self.issue_counts is not None:
            lines += ["", "other issues (samples, train and val):", _table_text(self.issue_counts)]
        if self.missing_thumbnails:
            n = len(self.missing_thumbnails)
            lines += ["", f"{n} image{'s' if n > 1 else ''} could not be read for the thumbnails, "
                          f"e.g. {self.missing_thumbnails[0]}"]
        return "\n".join(lines)


def write_report(run: Run | str | Path, *, top: int | None = None, threshold: float | None = None,
                 thumbnails: int = 24) -> Report:
    """Write ``RUN/report/`` (index.html + PNGs) for a finished run (a ``Run`` or its folder).

    ``top`` / ``threshold`` choose the suspects as for the exports (``method.scores.SuspectRule``; default: the
    run's own rule); ``thumbnails``: how many of the highest-scoring suspects the picture grid shows. The folder
    is built aside and moved into place, so a report is either the old one or the new one, never half written.
    """
    run = Run.of(run)
    rule = SuspectRule(top, threshold)
    metrics = run.metrics
    summary, epochs = metrics.get("summary", {}), metrics["epochs"]
    review = run.review_table(top=top, threshold=threshold)
    table = review[review["split"] == "train"].sort_values("score", ascending=False, kind="stable")
    has_truth = "detection" in summary
    target = run.path / REPORT
    report = Report(target / "index.html", key_figures(table, summary, own_rule=rule.is_own),
                    class_health(table, run.model_info["class_names"]), confused_pairs(table), rule.describe(),
                    has_truth)
    suspects = table[table["suspect"]].head(thumbnails)
    thumbs, report.missing_thumbnails = _thumbnails(run, suspects)
    issues = run.issues
    if issues is not None:
        report.issue_counts = issue_counts(issues)
        shown = _issue_examples(issues, review)
        issue_thumbs, missing = _thumbnails(run, pd.concat(shown.values()))
        report.missing_thumbnails += [s for s in missing if s not in report.missing_thumbnails]
    with staged_folder(target) as build:
        _plot_classes(report.per_class, build / "classes.png")
        _plot_scores(table, threshold, build / "scores.png")
        _plot_training(epochs, build / "training.png")
        _plot_coreset(epochs, has_truth, build / "coreset.png")
        _plot_suspects(suspects, thumbs, build / "suspects.png")
        if issues is not None:
            starts = np.cumsum([0] + [len(frame) for frame in shown.values()])
            for (name, frame), start, end in zip(shown.items(), starts, starts[1:]):
                _plot_issue_examples(name, frame, issue_thumbs[start:end], build / name)
        (build / "index.html").write_text(_html(run, report, summary, epochs, build), encoding="utf-8")
    report.images = [target / name for name in FIGURES if (target / name).is_file()]
    return report


def issue_counts(issues: pd.DataFrame) -> pd.DataFrame:
    """Samples per issue type (``run.checks.ISSUE_TYPES``, all of them, 0 where none), in train and val, and for
    near-duplicates the number of groups."""
    from ..config import ISSUE_TYPES

    counts = issues.groupby(["issue", "split"]).size().unstack(fill_value=0).reindex(ISSUE_TYPES, fill_value=0)
    out = pd.DataFrame({"issue": ISSUE_TYPES, "train": counts.get("train", 0), "val": counts.get("val", 0)})
    out["groups"] = [issues.loc[issues["issue"] == "near-duplicate", "group"].nunique() if issue == "near-duplicate"
                     else pd.NA for issue in ISSUE_TYPES]
    return out.reset_index(drop=True)


def _issue_examples(issues: pd.DataFrame, review: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows each issue figure shows (sample_id, path, given_label, split, issue, score, group), in order: the
    first near-duplicate groups (a few members each), the worst outliers, the worst of each quality kind in turn."""
    paths = review.set_index("sample_id")["path"]
    with_paths = issues.assign(path=issues["sample_id"].map(paths).to_numpy())
    duplicates = with_paths[with_paths["issue"] == "near-duplicate"]
    first_groups = duplicates["group"].drop_duplicates().head(DUPLICATE_GROUPS_SHOWN)
    duplicates = duplicates[duplicates["group"].isin(first_groups)].groupby("group", sort=False).head(
        GROUP_MEMBERS_SHOWN)
    outliers = with_paths[with_paths["issue"] == "outlier"].head(ISSUES_SHOWN)
    quality = with_paths[with_paths["issue"].str.startswith("quality:")]
    quality = quality.assign(rank=quality.groupby("issue").cumcount()).sort_values(["rank"], kind="stable")
    return {"duplicates.png": duplicates, "outliers.png": outliers,
            "quality.png": quality.head(ISSUES_SHOWN).drop(columns="rank")}


def _thumbnails(run, suspects: pd.DataFrame) -> tuple[list, list[str]]:
    """A small RGB image per row of ``suspects`` (sample_id, path; None where it cannot be read) and the ids of
    those that could not."""
    from ..data.images import open_rgb

    images, missing = [], []
    store, position = None, None
    for sample_id, path in zip(suspects["sample_id"], suspects["path"]):
        try:
            if isinstance(path, str) and path:
                image = open_rgb(Path(path), sample_id)
            else:  # a Hugging Face row: read from the source, which the run opens again
                if store is None:
                    store = run.open_samples().images
                    position = {s: i for i, s in enumerate(run.samples["sample_id"])}
                image = store[position[sample_id]]
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            images.append(image)
        except CrustCleanError:
            images.append(None)
            missing.append(sample_id)
    return images, missing


# ---------------------------------------------------------------------------------------------- plots
def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plot_classes(per_class: pd.DataFrame, path: Path) -> None:
    ordered = per_class.sort_values("suspect_share", kind="stable")
    fig = _figure(7, 0.3 * len(ordered) + 1.2)
    ax = fig.subplots()
    bars = ax.barh(ordered["class"].astype(str), ordered["suspect_share"].fillna(0), color="#c0392b")
    ax.bar_label(bars, labels=[f"{s} / {n}" for s, n in zip(ordered["suspects"], ordered["samples"])], padding=3,
                 fontsize=8)
    ax.set_xlabel("share of the class's samples suspected mislabeled (by given label)")
    ax.set_xlim(0, max(0.05, float(ordered["suspect_share"].max() or 0) * 1.25))
    fig.savefig(path)


def _plot_scores(table: pd.DataFrame, threshold: float | None, path: Path) -> None:
    fig = _figure(7, 3.2)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    ax.hist([table.loc[~table["suspect"], "score"], table.loc[table["suspect"], "score"]], bins=bins, stacked=True,
            color=["#7f8c8d", "#c0392b"], label=["not suspected", "suspect"])
    cut = threshold if threshold is not None else (table.loc[table["suspect"], "score"].min()
                                                   if table["suspect"].any() else None)
    if cut is not None:
        ax.axvline(cut, color="black", linestyle="--", linewidth=1,
                   label=f"threshold {cut:.2f}" if threshold is not None else f"lowest suspect score {cut:.2f}")
    ax.set_xlabel("score: mean over epochs of 1 - p(given label)")
    ax.set_ylabel("training samples")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.savefig(path)


def _plot_training(epochs: list[dict], path: Path) -> None:
    fig = _figure(10, 3.2)
    left, right = fig.subplots(1, 2)
    x = [e["epoch"] for e in epochs]
    left.plot(x, [e["train_loss"] for e in epochs], marker=".", color="#2c3e50", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("train loss (weighted, on the coreset)")
    val = [e.get("val_accuracy") for e in epochs]
    if any(v is not None for v in val):
        twin = left.twinx()
        twin.plot(x, [np.nan if v is None else v for v in val], marker=".", color="#27ae60", label="val accuracy")
        twin.set_ylabel("val accuracy (noisy labels)")
        twin.set_ylim(0, 1)
        twin.legend(loc="upper right", fontsize=8)
    left.legend(loc="upper left", fontsize=8)
    selection = np.array([e["selection_seconds"] for e in epochs])
    rest = np.array([e["epoch_seconds"] for e in epochs]) - selection
    right.bar(x, rest, color="#95a5a6", label="training + eval pass")
    right.bar(x, selection, bottom=rest, color="#e67e22", label="coreset selection")
    right.set_xlabel("epoch")
    right.set_ylabel("seconds")
    right.legend(fontsize=8)
    fig.savefig(path)


def _plot_coreset(epochs: list[dict], has_truth: bool, path: Path) -> None:
    fig = _figure(10, 3.2)
    left, right = fig.subplots(1, 2)
    x = [e["epoch"] for e in epochs]
    left.plot(x, [e["coreset_size"] for e in epochs], marker=".", color="#2980b9")
    left.set_xlabel("epoch")
    left.set_ylabel("samples trained on (coreset size)")
    left.set_ylim(bottom=0)
    selected = [e for e in epochs if "coreset_label_accuracy" in e]
    if selected:
        sx = [e["epoch"] for e in selected]
        for key, colour, label in (("coreset_label_accuracy", "#27ae60", "coreset label accuracy"),
                                   ("selection_rate_clean", "#7f8c8d", "selection rate, clean samples"),
                                   ("selection_rate_noisy", "#c0392b", "selection rate, mislabeled samples")):
            right.plot(sx, [np.nan if e.get(key) is None else e[key] for e in selected], marker=".", color=colour,
                       label=label)
        right.set_ylim(0, 1.02)
        right.set_xlabel("epoch")
        right.legend(fontsize=8)
    else:
        right.axis("off")
        right.text(0.5, 0.5, "coreset label accuracy needs true labels\n(fit with --true-labels)" if not has_truth
                   else "no coreset was selected in this run", ha="center", va="center", color="#7f8c8d")
    fig.savefig(path)


def _plot_suspects(suspects: pd.DataFrame, thumbs: list, path: Path) -> None:
    columns = 8
    rows = max(1, -(-len(thumbs) // columns))
    fig = _figure(1.35 * columns, 1.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, (_, row) in zip(axes, thumbs, suspects.iterrows()):
        if image is None:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7)
        else:
            ax.imshow(np.asarray(image))
        ax.set_title(f"{_short(row['given_label'])} \u2192 {_short(row['predicted_label'])}\n{row['score']:.3f}",
                     fontsize=7)
    if not thumbs:
        axes[0].text(0, 0.5, "no suspects", fontsize=9)
    fig.savefig(path)


def _plot_issue_examples(name: str, shown: pd.DataFrame, thumbs: list, path: Path) -> None:
    """Thumbnails of ``shown`` (``_issue_examples``): a row per near-duplicate group, else a grid of 8 a row."""
    if name == "duplicates.png":  # the members of a group are next to each other in ``shown``
        sizes = shown.groupby("group", sort=False).size().to_numpy()
        rows = [list(range(start, start + size)) for start, size in zip(np.cumsum(sizes) - sizes, sizes)]
        columns = max([len(r) for r in rows] + [1])
    else:
        columns = 8 if len(shown) else 2  # "none found" needs no wide figure
        rows = [list(range(len(shown)))[start:start + columns] for start in range(0, len(shown), columns)]
    fig = _figure(1.35 * columns, 1.6 * max(1, len(rows)))
    axes = np.atleast_2d(fig.subplots(max(1, len(rows)), columns))
    for ax in axes.ravel():
        ax.axis("off")
    for r, members in enumerate(rows):
        for c, i in enumerate(members):
            row, ax = shown.iloc[i], axes[r, c]
            if thumbs[i] is None:
                ax.text(0.5, 0.5, "unreadable", ha="center", va="center", fontsize=7)
            else:
                ax.imshow(np.asarray(thumbs[i]))
            what = (f"group {row['group']}" if name == "duplicates.png" else
                    "outlier" if name == "outliers.png" else row["issue"].removeprefix("quality:"))
            ax.set_title(f"{_short(row['given_label'])} ({row['split']})\n{what} {row['score']:.2f}", fontsize=7)
    if not len(shown):
        axes[0, 0].text(0, 0.5, "none found", fontsize=9)
    fig.savefig(path)


def _short(label: str, width: int = 12) -> str:
    label = str(label)
    return label if len(label) <= width else label[:width - 1] + "\u2026"


# ----------------------------------------------------------------------------------------------- HTML
def _environment(run: Run, summary: dict, epochs: list[dict]) -> dict:
    """How the run ran: device, times, model, source, versions."""
    from .. import __version__

    selection = sum(e["selection_seconds"] for e in epochs)
    total = sum(e["epoch_seconds"] for e in epochs)
    info = run.model_info
    return {
        "device": summary.get("device_name") or summary.get("device"), "wall time": f"{summary.get('wall_seconds')} s",
        "epochs": len(epochs), "coreset selection": f"{selection:.1f} s of {total:.1f} s of epochs "
                                                    f"({selection / total:.1%})" if total else "n/a",
        "model": f"{info['architecture']} at {info['img_size']} px, epoch {info.get('epoch')} "
                 f"({info.get('chosen_by')})",
        "source": run.source.get("source"), "resumed": summary.get("resumed"),
        **{name: summary.get(name, "not recorded") for name in ("python", "torch", "timm", "datasets")},
        "crust-clean": summary.get("crust_clean", f"not recorded (now {__version__})"),
    }


def _html(run: Run, report: Report, summary: dict, epochs: list[dict], build: Path) -> str:
    def picture(name: str, alt: str) -> str:
        data = base64.b64encode((build / name).read_bytes()).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'

    def table(frame: pd.DataFrame) -> str:
        return frame.to_html(index=False, border=0, float_format=lambda x: f"{x:.3f}", na_rep="", escape=True)

    figures = pd.DataFrame({"figure": list(report.figures),
                            "value": [_format_value(k, v) for k, v in report.figures.items()]})
    environment = _environment(run, summary, epochs)
    environment_table = pd.DataFrame({"": list(environment), "value": [str(v) for v in environment.values()]})
    no_truth = "" if report.has_truth else (
        '<p class="note">True labels were not given (fit with <code>--true-labels</code>): the coreset label '
        "accuracy, the clean vs mislabeled selection rates and the detection figures are left out.</p>")
    config = (run.path / CONFIG).read_text(encoding="utf-8")
    missing = (f'<p class="note">{len(report.missing_thumbnails)} suspect images could not be read, e.g. '
               f"{html.escape(report.missing_thumbnails[0])}.</p>") if report.missing_thumbnails else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>crust-clean report: {html.escape(run.path.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
.note {{ color: #666; font-style: italic; }}
pre {{ background: #f6f6f6; padding: 1em; font-size: 0.8em; overflow-x: auto; }}
</style></head><body>
<h1>crust-clean report: {html.escape(run.path.name)}</h1>
<section id="health"><h2>Dataset health</h2>
<p>Suspects (the estimate of wrong labels) = {html.escape(report.rule)}.
The suggested label is the saved model's prediction.</p>
{table(figures)}{no_truth}</section>
<section id="classes"><h2>Per class</h2>
{picture("classes.png", "share of each class suspected mislabeled")}
{table(report.per_class)}</section>
<section id="confusions"><h2>Most confused labels</h2>
<p>Suspects whose given label the model replaces, by pair.</p>
{table(report.confusions) if len(report.confusions) else '<p class="note">No suspect is relabeled.</p>'}</section>
<section id="scores"><h2>Scores</h2>
{picture("scores.png", "histogram of the scores")}
<p>{report.figures["never selected"]} training samples ({report.figures["never selected share"]:.1%}) never entered
a coreset.</p></section>
<section id="training"><h2>Training</h2>
{picture("training.png", "train loss, val accuracy and seconds per epoch")}</section>
<section id="coreset"><h2>Coreset composition</h2>
{picture("coreset.png", "coreset size and label accuracy per epoch")}</section>
<section id="suspects"><h2>Top suspects</h2>
<p>Given label &rarr; suggested label, and the score.</p>
{picture("suspects.png", "thumbnails of the highest-scoring suspects")}{missing}</section>
{_issues_html(report, picture, table)}
<section id="run"><h2>Run</h2>
{table(environment_table)}
<pre>{html.escape(config)}</pre></section>
</body></html>
"""


def _issues_html(report: Report, picture, table) -> str:
    """The sections of the other issues (``run.checks``), or a note for a run written before they were checked."""
    if report.issue_counts is None:
        return ('<section id="issues"><h2>Other issues</h2><p class="note">This run was written before crust-clean '
                "checked near-duplicates, outliers and image quality: fit again to see them.</p></section>")
    from ..data.quality import THRESHOLDS
    from ..method.issues import NEAR_DUPLICATE_SIMILARITY, OUTLIER_SPREAD

    return f"""<section id="issues"><h2>Other issues</h2>
<p>Every sample, train and validation, from the same embeddings and the same decoding pass as the fit
(<code>issues.csv</code> lists each sample and issue; <code>checks.parquet</code> every score).</p>
{table(report.issue_counts)}</section>
<section id="duplicates"><h2>Near-duplicates</h2>
<p>Embeddings with cosine similarity of at least {NEAR_DUPLICATE_SIMILARITY}; groups whose members carry different
labels first, then groups that cross the train / validation split. A row per group: given label (split), the
similarity to its nearest member.</p>
{picture("duplicates.png", "near-duplicate groups")}</section>
<section id="outliers"><h2>Outliers</h2>
<p>Far from every other sample (1 - mean cosine similarity to the 10 nearest) or from every class (1 - cosine
similarity to the nearest class centroid) by at least {OUTLIER_SPREAD} robust standard deviations above the median;
the score is that number of deviations.</p>
{picture("outliers.png", "the strongest outliers")}</section>
<section id="quality"><h2>Image quality</h2>
<p>Scores and thresholds: {html.escape(", ".join(f"{k} {v:g}" for k, v in THRESHOLDS.items()))}
(<code>crust_clean.data.quality</code>).</p>
{picture("quality.png", "the worst images of each quality issue")}</section>"""


def _format_value(key: str, value) -> str:
    if value is None:
        return "n/a"
    if "share" in key:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table_text(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="")


def open_in_browser(report: Report) -> None:
    import webbrowser

    webbrowser.open(report.path.resolve().as_uri())

