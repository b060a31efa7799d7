"""The ``crust-clean`` command: a thin click shell over the Python API.

Errors a user can fix print one line (``Error: ...``) and exit 2 for bad input / usage, 1 for a
failure at run time; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

import click

from .cli_options import GroupedCommand, config_options, run_option
from .config import DROPPABLE_ISSUES, MANIFEST_FORMATS, MANIFEST_POLICIES, DataConfig, RunConfig
from .errors import BadInputError, CrustCleanError, CrustCleanWarning
from .train.distributed import torchrun_ranks


def _user_errors(func):
    """Errors a user can fix as one ``Error:`` line and an exit code; crust-clean's warnings as one ``Warning:``
    line (the errors module)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():  # restores the usual warning printer afterwards
            warnings.showwarning = functools.partial(_one_line_warning, warnings.showwarning)
            warnings.simplefilter("default", CrustCleanWarning)  # each one once, whatever the filters say
            return _one_line_errors(func, *args, **kwargs)

    return wrapper


def _one_line_warning(show_other, message, category, filename, lineno, file=None, line=None):
    if not issubclass(category, CrustCleanWarning):
        return show_other(message, category, filename, lineno, file, line)
    if torchrun_ranks().is_main:
        click.echo(f"Warning: {message}", err=True)


def _one_line_errors(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except CrustCleanError as err:
        if torchrun_ranks().is_main:  # under torchrun every rank meets the error: say it once
            click.echo(f"Error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crust-clean")
def cli():
    """Find mislabeled images with CRUST coresets and train a noise-robust timm model."""


@cli.command(cls=GroupedCommand)
@click.argument("source", type=click.Path(), required=False)
@run_option("--resume", "resume_run", type=click.Path(file_okay=False),
             help="continue the killed or interrupted run in this folder (its own config and source)")
@run_option("--out", type=click.Path(file_okay=False), help="run folder [default: runs/<time>-<model>-<data>]")
@run_option("--config", "config_file", type=click.Path(dir_okay=False),
             help="YAML config: a shipped one by name (crust-clean configs) or a file such as an earlier "
                  "RUN/config.yaml; flags override it")
@run_option("--overwrite", is_flag=True, help="write into an existing non-empty run folder")
@run_option("--quiet", "-q", is_flag=True, help="no progress bars or per-epoch lines")
@run_option("--dry-run", is_flag=True, help="print the resolved config and a dataset summary; do not train")
@run_option("--report", "with_report", is_flag=True, help="write RUN/report/ at the end (see: crust-clean report)")
@run_option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
             help="train with this many processes (DDP, one per GPU; gloo on CPU); the same as "
                  "torchrun --nproc-per-node N -m crust_clean fit ...")
@config_options
@_user_errors
def fit(source, resume_run, out, config_file, overwrite, quiet, dry_run, with_report, nproc, **options):
    """Train with CRUST on SOURCE and rank suspected mislabels.

    SOURCE is an ImageFolder (SOURCE/<class>/**/<image>); a .csv / .jsonl manifest of path,label rows;
    a Hugging Face dataset: a save_to_disk folder, a folder of parquet files or of images with a
    metadata.csv, a .parquet file, or hf:OWNER/NAME[/CONFIG] from the HF cache (--split, --image-column,
    --label-column, --id-column); or a FiftyOne dataset fo:NAME[:SAVED_VIEW] (--label-field).
    Writes RUN/config.yaml, ledger.parquet, scores.csv, metrics.json, model.safetensors and model.json.
    A checkpoint is written after every epoch: after a crash or Ctrl-C, `fit --resume RUN` continues.
    """
    from .config import resolve_config
    from .data.inspect import describe
    from .run.fit import fit as fit_run
    from .run.fit import resume

    if nproc > 1 and not torchrun_ranks().active and not dry_run:
        sys.exit(_launch_ranks(nproc))
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items() if v not in (None, ())}
    if resume_run is not None:
        if source or out or config_file or overwrite or dry_run or options:
            raise BadInputError("--resume RUN continues RUN as it was configured: give no SOURCE or other options")
        _print_finished(resume(resume_run, progress=not quiet), with_report)
        return
    if source is None:
        raise BadInputError("give a SOURCE to train on, or --resume RUN")
    if dry_run:
        from .config import dump_yaml
        from .train.models import prepare

        resolved = resolve_config(config_file, **options)
        prepare(resolved.model)
        click.echo(dump_yaml(resolved), nl=False)
        _print_description(describe(source, resolved))
        _print_transforms(resolved)
        return
    run = fit_run(source, out=out, config=config_file, overwrite=overwrite, progress=not quiet, **options)
    _print_finished(run, with_report)


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
@functools.partial(config_options, only=DataConfig().source_options())
@_user_errors
def check(source, quiet, **columns):
    """Validate SOURCE as fit would, without training: decode every image, report counts per class,
    skipped files and why, classes without images, duplicate images (by content hash) and images that are
    dark, light, blurry, nearly blank, grayscale in a colour dataset or of odd size or shape.

    Exit status 0 when fit can use SOURCE (skipped files included), 2 when it cannot.
    """
    from .config import RunConfig, apply_options
    from .data.inspect import describe

    config = apply_options(RunConfig(), {k: v for k, v in columns.items() if v is not None})
    info = describe(source, config, check=True, progress=not quiet)
    _print_description(info, all_skipped=True)
    groups = info["duplicates"]
    conflicting = [g for g in groups if g["labels_differ"]]
    click.echo(f"# duplicates: {len(groups)} groups of identical images ({sum(len(g['sample_ids']) for g in groups)}"
               f" samples), {len(conflicting)} with different labels")
    for group in (conflicting + [g for g in groups if not g["labels_differ"]])[:20]:
        click.echo("#   " + ", ".join(f"{s} [{label}]" for s, label in zip(group["sample_ids"], group["labels"])))
    quality = info["quality"]
    click.echo(f"# image quality: {sum(len(found) for found in quality.values())} issues "
               f"(near-duplicates and outliers need a fit's embeddings: see its report or FiftyOne export)")
    for kind, found in quality.items():
        if found:
            click.echo(f"#   {kind} ({len(found)}): " + ", ".join(f"{f['sample_id']} [{f['label']}]" for f in found[:5])
                       + (", ..." if len(found) > 5 else ""))
    click.echo(f"ok: fit can train on {info['samples']} samples in {info['classes']} classes"
               + (f" ({len(info['skipped'])} skipped)" if info["skipped"] else ""))


@cli.command()
def configs():
    """List the shipped configs (use one with: crust-clean fit SOURCE --config NAME)."""
    from .config import CONFIG_DIR, named_configs

    for name, description in named_configs().items():
        click.echo(f"{name:22s} {description}")
    click.echo(f"\n(in {CONFIG_DIR})")


@cli.group()
def export():
    """Export a run: into FiftyOne for review, or as a cleaned dataset manifest."""


def _suspect_options(command):
    command = click.option("--threshold", type=float, help="suspects: score above this [default: the run's rule: "
                           "the n highest scores, n = samples its model labels differently]")(command)
    return click.option("--top", type=int, help="suspects: the K highest scores (instead of --threshold)")(command)


@export.command("fiftyone")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--name", help="FiftyOne dataset [default: crust-<run folder>-<6 hex digits of its path>, or the "
                               "run's fo: source]")
@click.option("--persistent/--no-persistent", default=True, show_default=True,
              help="keep the dataset after this process exits")
@_suspect_options
@click.option("--overwrite", is_flag=True, help="write into a dataset that holds another run or is not ours")
@click.option("--visualization", type=click.Choice(["umap", "pca", "tsne", "none"]),
              help="the embeddings in 2-D for the App's Embeddings panel [default: umap when umap-learn is installed, "
                   "else pca]; none: no visualization and no similarity index")
@click.option("--carry-forward/--no-carry-forward", default=True, show_default=True,
              help="bring in the decisions made on the same samples (id and image content) in earlier datasets")
@_user_errors
def export_fiftyone(run, name, persistent, top, threshold, overwrite, visualization, carry_forward):
    """Write RUN's samples, scores, predictions and embeddings into a FiftyOne dataset with saved review views."""
    from .review.fiftyone import export_to_fiftyone

    written = export_to_fiftyone(run, name=name, persistent=persistent, top=top, threshold=threshold,
                                 overwrite=overwrite, visualization=visualization, carry_forward=carry_forward,
                                 progress=True)
    dataset = written.dataset
    click.echo(f"FiftyOne dataset {dataset.name!r}: {len(dataset)} samples, {written.suspects} tagged crust:suspect")
    if written.carried or written.reopened:
        click.echo(f"from earlier rounds: {written.carried} decisions carried forward, {written.reopened} kept "
                   "samples re-opened (score rose)")
    click.echo(f"queue: {written.decided} decided, {written.to_review} left to review")
    click.echo(f"saved views: {', '.join(dataset.list_saved_views())}")
    if written.similarity_left_out:
        click.echo(written.similarity_left_out)
    click.echo(f"review it: crust-clean review {run}" + (f" --name {dataset.name}" if name else "")
               + "   (it sets FIFTYONE_PLUGINS_DIR to the review plugin: crust-clean plugin-path)")


@export.command("manifest")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--policy", type=click.Choice(MANIFEST_POLICIES), default="reviewed", show_default=True,
              help="reviewed: the decisions made in FiftyOne; auto: drop / relabel the suspects without review")
@click.option("--format", "fmt", type=click.Choice(MANIFEST_FORMATS), default="csv",
              show_default=True, help="format of the cleaned dataset")
@click.option("--from-fiftyone", help="FiftyOne dataset holding the decisions [default: the run's export]")
@_suspect_options
@click.option("--relabel-confidence", type=float, default=0.9, show_default=True,
              help="auto: the model's smallest confidence to relabel a suspect instead of dropping it")
@click.option("--drop", "drop", multiple=True, type=click.Choice(DROPPABLE_ISSUES),
              help="also drop the samples with this issue where no reviewer decided (repeatable; near-duplicate "
                   "keeps one a group; quality: every quality kind)")
@click.option("--copy", is_flag=True, help="imagefolder: copy the images instead of symlinking them")
@click.option("--overwrite", is_flag=True, help="replace an existing output folder")
@_user_errors
def export_manifest_command(run, out, policy, fmt, from_fiftyone, top, threshold, relabel_confidence, drop, copy,
                            overwrite):
    """Write RUN's cleaned dataset (drop / relabel applied) and the kept / dropped / relabeled lists."""
    from .review.manifest import export_manifest

    written = export_manifest(run, out, policy=policy, fmt=fmt, from_fiftyone=from_fiftyone, top=top,
                              threshold=threshold, relabel_confidence=relabel_confidence, drop=drop, copy=copy,
                              overwrite=overwrite)
    click.echo(f"kept {written.kept}, relabeled {written.relabeled}, dropped {written.dropped}"
               + (f"; {written.unreviewed_suspects} suspects not reviewed (kept, listed in "
                  f"{written.out / 'unreviewed_suspects.csv'})" if written.unreviewed_suspects else ""))
    click.echo(f"cleaned dataset: {written.dataset}")


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@_suspect_options
@click.option("--thumbnails", type=click.IntRange(min=0), default=24, show_default=True,
              help="how many of the top suspects to show as pictures")
@click.option("--open", "open_browser", is_flag=True, help="open the report in a web browser")
@_user_errors
def report(run, top, threshold, thumbnails, open_browser):
    """Write RUN/report/index.html (self-contained) and its PNGs: dataset health per class, the most
    confused labels, the score histogram, training curves, coreset composition and the top suspects.
    Prints the key figures."""
    written = _print_report(run, top=top, threshold=threshold, thumbnails=thumbnails)
    if open_browser:
        from .review.report import open_in_browser

        open_in_browser(written)


def _print_finished(run, with_report: bool) -> None:
    """The summary of a finished fit (and its report when asked for), from rank 0 only."""
    if torchrun_ranks().is_main:
        _print_summary(run)
        if with_report:
            _print_report(run)


def _print_report(run, **options):
    from .review.report import write_report

    written = write_report(run, **options)
    click.echo("\n" + written.text())
    return written


@cli.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--name", help="FiftyOne dataset [default: the run's export]")
@click.option("--port", type=int, default=5151, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="where the App listens; it has no login, so another address warns (reach a server through "
                   "an SSH tunnel instead: see the README)")
@click.option("--remote", is_flag=True, help="serve without opening a browser (a headless server)")
@_user_errors
def review(run, name, port, address, remote):
    """Open the FiftyOne App on RUN's exported dataset, in the "to review" queue (Ctrl-C to stop)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")  # before fiftyone reads its config: no analytics banner
    from .review.app import launch_review

    session = launch_review(run, name=name, port=port, address=address, remote=remote)
    click.echo(f"FiftyOne App: http://{address}:{port}/ (dataset {session.dataset.name!r}, view \"to review\")")
    session.wait(-1)


@cli.group()
def decisions():
    """Move review decisions between FiftyOne and a CSV file (a spreadsheet, another machine, an annotation tool)."""


@decisions.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", help="FiftyOne dataset [default: the run's export]")
@_user_errors
def decisions_export(run, file, name):
    """Write the decisions of RUN's FiftyOne dataset to FILE (CSV: sample_id, decision, new_label, decided_at,
    decided_score, content_hash, decided_in, path, given_label)."""
    from .review.decision_store import export_decisions

    written = export_decisions(run, file, name=name)
    click.echo(f"{written.decisions} decisions of FiftyOne dataset {written.dataset!r} written to {written.path}")


@decisions.command("import")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="FiftyOne dataset [default: the run's export]")
@_user_errors
def decisions_import(run, file, name):
    """Record the decisions in FILE (CSV with sample_id and decision; new_label for relabel; decided_at, UTC when
    it has no offset; content_hash, checked against the image) in RUN's FiftyOne dataset. Every row is checked
    first: one line per bad row, and nothing is imported then. A row with an empty decision is skipped."""
    from .review.decision_store import import_decisions

    written = import_decisions(run, file, name=name)
    click.echo(f"{written.decisions} decisions from {written.path} recorded in FiftyOne dataset {written.dataset!r}")


@cli.command("plugin-path")
def plugin_path():
    """Print the review plugin's folder: set FIFTYONE_PLUGINS_DIR to it (or copy it into your plugins folder)."""
    from .config import PLUGIN_DIR

    click.echo(PLUGIN_DIR)


def _launch_ranks(nproc: int) -> int:
    """This same ``fit`` command line as ``nproc`` processes (``train.distributed.launch``), less ``--nproc``
    (the ranks must not launch again); returns the exit status."""
    from .train.distributed import launch

    args = sys.argv[1:]
    if args[:1] != ["fit"]:
        raise BadInputError("--nproc works from the command line: crust-clean fit SOURCE --nproc N ...")
    for i, arg in enumerate(args):
        if arg == "--nproc":
            return launch(nproc, args[:i] + args[i + 2:])
        if arg.startswith("--nproc="):
            return launch(nproc, args[:i] + args[i + 1:])
    return launch(nproc, args)


def _print_description(info: dict, *, all_skipped: bool = False) -> None:
    click.echo(f"\n# dataset: {info['source']} ({info['kind']})")
    details = {k: v for k, v in info["origin"].items() if k not in ("kind", "source", "path") and v is not None}
    if details:
        click.echo("# " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in details.items()))
    click.echo(f"# {info['samples']} samples, {info['classes']} classes, {len(info['skipped'])} skipped")
    for name, count in info["counts_per_class"].items():
        click.echo(f"#   {name:20s} {count}")
    sizes = ", ".join(f"{size} ({n})" for size, n in info["image_sizes"].items())
    click.echo(f"# image sizes: {sizes}" + (f" and {info['distinct_image_sizes'] - 5} more" if
                                           info["distinct_image_sizes"] > 5 else ""))
    for entry in info["skipped"] if all_skipped else info["skipped"][:10]:
        click.echo(f"# skipped {entry['sample_id']}: {entry['reason']}")
    if len(info["skipped"]) > 10 and not all_skipped:
        click.echo(f"# ... and {len(info['skipped']) - 10} more skipped (crust-clean check lists them all)")
    if info["empty_classes"]:
        click.echo(f"# classes without a readable image (not trained on): {', '.join(info['empty_classes'])}")


def _print_transforms(cfg: RunConfig) -> None:
    from .train.models import describe_transforms

    steps = describe_transforms(cfg)
    where = (f"the {cfg.data.feature_views} augmented feature views (--feature-views)" if cfg.data.feature_views
             else f"nothing: --train {cfg.model.train} reads the eval view only") if cfg.model.train != "all" \
        else "every epoch"
    click.echo(f"# train augmentation, on {where}:")
    for step in steps["train"]:
        click.echo(f"#   {step}")
    click.echo("# eval transform (eval passes, the saved model's pass, embeddings):")
    for step in steps["eval"]:
        click.echo(f"#   {step}")


def _print_summary(run) -> None:
    summary = run.metrics["summary"]
    scores = run.scores
    val = summary["val_accuracy"]
    click.echo(f"\nrun folder:      {run.path}")
    click.echo(f"training samples: {summary['n_train']} (val {summary['n_val']}, skipped {summary['n_skipped']})")
    click.echo(f"val accuracy:    {'n/a' if val is None else f'{val:.3f}'} (model from epoch {summary['best_epoch']})")
    click.echo(f"suspects:        {summary['suspects']} ({summary['suspect_rule']})")
    click.echo(f"never selected:  {summary['never_selected']}")
    if "issues" in summary:  # runs written before the other checks have none
        found = ", ".join(f"{issue} {count}" for issue, count in summary["issues"].items()) or "none"
        click.echo(f"other issues:    {found} (samples; issues.csv)")
    if "detection" in summary:
        d = summary["detection"]
        click.echo(f"vs true labels:  AUROC {d['auroc']:.3f}  precision {d['precision']:.3f}  recall {d['recall']:.3f}")
    click.echo("\ntop 10 suspects (higher score = more likely mislabeled):")
    top = scores.head(10)[["score", "given_label", "predicted_label", "sample_id"]]
    click.echo(top.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def main() -> None:
    cli(prog_name="crust-clean")


if __name__ == "__main__":
    main()
