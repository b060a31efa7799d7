"""The per-epoch books of a fit: the ledger, the metrics of each epoch (with the running score), the best model
so far, and after every epoch what a resume needs; at the end, every output of the run.

A checkpoint never names an epoch whose ledger rows and metrics are not written: they are written first. With
several ranks all of them keep the books (they need the best state) and rank 0 alone writes.
"""

from __future__ import annotations

import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..data.sources import Samples
from ..errors import Interrupted
from ..method.metrics import detection_metrics
from ..method.neighbours import NEIGHBOURS, agreement_of, nearest_neighbours
from ..method.scores import SUSPECT_RULE, flag_suspects, margins, score
from .checks import issue_rows, sample_checks
from .folder import EMBEDDINGS, LEDGER, RunFolder
from .ledger import Ledger

if TYPE_CHECKING:
    from ..train.trainer import EpochResult, Optimisation, PassOutputs
    from .folds import OutOfFold


@dataclass
class Best:
    """The model with the best validation accuracy so far (its weights on the CPU)."""

    accuracy: float = -1.0
    epoch: int | None = None
    state: dict | None = None


class Recorder:
    """Keeps the books of one fit of the training rows ``sample_ids`` (given labels ``given``, (n,); ``is_noisy``
    (n,) when true labels are known) into ``folder``; ``writes`` on rank 0, ``progress`` prints a line per epoch;
    the neighbour search of the scores runs on ``device`` (exact on CUDA, ``method.neighbours``)."""

    def __init__(self, folder: RunFolder, sample_ids: list[str], given: np.ndarray, *, is_noisy: np.ndarray | None,
                 writes: bool, progress: bool, device="cpu"):
        self.folder, self.given, self.is_noisy, self.device = folder, given, is_noisy, device
        self.writes, self.progress = writes, progress
        self.ledger = Ledger(sample_ids)
        self.epochs: list[dict] = []
        self.best = Best()

    def resume(self, model, optimisation: Optimisation) -> int:
        """Load the checkpoint into the model, optimiser and RNGs and read back the books of its epochs;
        returns the epoch to train next."""
        from ..train.checkpoint import load_checkpoint

        resumed = load_checkpoint(self.folder.checkpoint, model=model, optimizer=optimisation.optimizer,
                                  scheduler=optimisation.scheduler, scaler=optimisation.scaler)
        self.best = Best(resumed.best_accuracy, resumed.best_epoch, resumed.best_state)
        self.ledger.read_parts(self.folder.ledger_parts, through_epoch=resumed.epoch)
        self.epochs = self.folder.read_epochs()[:resumed.epoch + 1]
        return resumed.epoch + 1

    @property
    def fractions(self) -> np.ndarray | None:
        """The coreset's per-class shares the books hold (a resumed run sized to its noise), else None."""
        kept = self.epochs[-1].get("coreset_fractions") if self.epochs else None
        return None if kept is None else np.asarray(kept, dtype=np.float64)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Ctrl-C becomes ``Interrupted``, saying how to resume."""
        try:
            yield
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; resume with: crust-clean fit --resume {self.folder.path} (the epoch in progress is "
                "trained again)" if self.folder.checkpoint.exists() else
                "interrupted before the first epoch ended (nothing to resume)") from None

    def record(self, result: EpochResult, model, optimisation: Optimisation) -> None:
        """The books of a finished epoch, then the checkpoint."""
        from ..train.checkpoint import save_checkpoint, state_copy

        o = result.outputs
        self.ledger.append(result.epoch, loss=o.loss, predicted=o.predicted, prob_given=o.prob_given,
                           margin=margins(o.logits, self.given), selection=result.selection)
        row = epoch_metrics(result, self.given, score(self.ledger.mean_prob_given()), self.is_noisy)
        self.epochs.append(row)
        if result.val_accuracy is not None and result.val_accuracy > self.best.accuracy:
            self.best = Best(result.val_accuracy, result.epoch, state_copy(model))
        if self.writes:
            self.ledger.write_part(self.folder.ledger_parts)
            self.folder.write_metrics(self.epochs)
            save_checkpoint(self.folder.checkpoint, epoch=result.epoch, model=model, optimizer=optimisation.optimizer,
                            scheduler=optimisation.scheduler, scaler=optimisation.scaler, best_epoch=self.best.epoch,
                            best_accuracy=self.best.accuracy, best_state=self.best.state)
        if self.progress:
            print_epoch(row)

    def saved_model(self, model, last_epoch: int) -> Best:
        """The model a run saves: the best on validation, else (no validation split) the last epoch's."""
        from ..train.checkpoint import state_copy

        if self.best.state is not None:
            return self.best
        return Best(-1.0, last_epoch, state_copy(model))  # a copy: the fold fits (run.folds) go on to train model

    def finish(self, samples: Samples, train_idx: np.ndarray, robust: PassOutputs, *, measures: np.ndarray,
               saved: Best, model_info: dict, run_facts: dict, out_of_fold: OutOfFold | None = None) -> None:
        """Every output of a finished run: the saved model, its pass over all samples (``robust``: predictions; its
        embeddings are in embeddings.npy already, ``RunFolder.embeddings_writer``), the ledger and scores of the
        training rows (with the neighbour agreement: each sample's nearest among all samples; scored
        ``out_of_fold`` when given), the checks of every sample from the same neighbours and the quality
        ``measures`` of its image (``run.checks``: near-duplicates, outliers, quality) and the metrics with the
        summary (``run_facts`` go into it as they are); then the resume state goes."""
        folder = self.folder
        folder.write_model(saved.state, model_info)
        folder.write_predictions(samples, robust.logits, robust.predicted)
        self.ledger.join_parts(folder.ledger_parts, folder.path / LEDGER)
        given = samples.labels[train_idx]
        disagrees = (robust.predicted[train_idx] if out_of_fold is None else out_of_fold.predicted) != given
        embeddings = np.load(folder.path / EMBEDDINGS, mmap_mode="r")  # written by the robust pass
        started = time.perf_counter()
        neighbours = nearest_neighbours(embeddings, min(NEIGHBOURS, len(samples) - 1), device=self.device)
        neighbour_seconds = time.perf_counter() - started
        agreement = agreement_of(neighbours, samples.labels)[train_idx]
        scores = folder.write_scores(self.ledger.per_sample(), samples, train_idx, disagrees, agreement,
                                     out_of_fold=out_of_fold)
        started = time.perf_counter()
        split = np.full(len(samples), "val", dtype=object)
        split[train_idx] = "train"
        checks = sample_checks(samples.sample_ids, np.asarray(samples.class_names, dtype=object)[samples.labels],
                               split, embeddings, neighbours, measures, np.asarray(samples.sizes).reshape(-1, 2))
        issues = issue_rows(checks)
        folder.write_checks(checks, issues)
        checks_seconds = time.perf_counter() - started
        if out_of_fold is not None:
            run_facts = {**run_facts, "folds": out_of_fold.count, "fold_seconds": round(out_of_fold.seconds, 2)}
        summary = {
            "n_train": len(train_idx), "n_skipped": len(samples.skipped), "empty_classes": samples.empty_classes,
            "num_classes": samples.num_classes, "best_epoch": saved.epoch,
            "val_accuracy": self.epochs[saved.epoch]["val_accuracy"],
            "never_selected": int(scores["never_selected"].sum()),
            "suspects": int(scores["suspect"].sum()),
            "issues": {issue: int(count) for issue, count in issues["issue"].value_counts(sort=False).items()},
            "neighbour_seconds": round(neighbour_seconds, 2), "checks_seconds": round(checks_seconds, 2),
            "suspect_rule": SUSPECT_RULE if out_of_fold is None else f"{SUSPECT_RULE}, scored and counted out of fold",
            **run_facts, **_versions(), "python": platform.python_version(),
        }
        if self.is_noisy is not None:  # the final scores and suspects against the truth
            noisy_by_id = dict(zip((samples.sample_ids[i] for i in train_idx), self.is_noisy))
            summary["detection"] = detection_metrics(scores["score"].to_numpy(),
                                                     [noisy_by_id[s] for s in scores["sample_id"]], scores["suspect"])
        folder.write_metrics(self.epochs, summary)
        folder.finish()


def epoch_metrics(result: EpochResult, given: np.ndarray, score: np.ndarray, is_noisy: np.ndarray | None) -> dict:
    """One epoch's row of metrics.json: losses, accuracies, coreset size, seconds; with true labels also the
    coreset's composition and the detection figures of the score as it stands after this epoch."""
    selection = result.selection
    row = {
        "epoch": result.epoch, "lr": result.lr, "train_loss": result.train_loss,
        "val_accuracy": result.val_accuracy, "val_loss": result.val_loss,
        "train_accuracy_given": float((result.outputs.predicted == given).mean()),
        "coreset_size": int(len(selection.medoids)) if selection is not None else len(given),
        "selection_seconds": round(result.selection_seconds, 4), "eval_seconds": round(result.eval_seconds, 4),
        "train_seconds": round(result.train_seconds, 4), "epoch_seconds": round(result.epoch_seconds, 4),
        "data_seconds": round(result.data_seconds, 4),
    }
    if result.fractions is not None:  # exact: a resumed run selects with these very shares
        row["coreset_fractions"] = [float(f) for f in result.fractions]
    if is_noisy is None:
        return row
    row["noisy_fit_rate"] = float((result.outputs.predicted[is_noisy] == given[is_noisy]).mean()) \
        if is_noisy.any() else None
    if selection is not None:
        clean_medoid = ~is_noisy[selection.medoids]
        mask = selection.selected_mask(len(given))
        row["coreset_label_accuracy"] = float(clean_medoid.mean())
        row["coreset_label_accuracy_weighted"] = float((selection.weights * clean_medoid).sum() / selection.weights.sum())
        row["selection_rate_clean"] = float(mask[~is_noisy].mean()) if (~is_noisy).any() else None
        row["selection_rate_noisy"] = float(mask[is_noisy].mean()) if is_noisy.any() else None
    # the rule as it would stand after this epoch: this epoch's model counts the disagreements
    flagged = flag_suspects(score, result.outputs.predicted != given)
    row["detection"] = detection_metrics(score, is_noisy, flagged)
    return row


def print_epoch(row: dict) -> None:
    parts = [f"epoch {row['epoch']:3d}", f"loss {row['train_loss']:.3f}"]
    if row["val_accuracy"] is not None:
        parts.append(f"val acc {row['val_accuracy']:.3f}")
    parts.append(f"coreset {row['coreset_size']}")
    if "detection" in row and row["detection"]["auroc"] is not None:
        parts.append(f"AUROC {row['detection']['auroc']:.3f}")
    parts.append(f"{row['epoch_seconds']:.1f}s (selection {row['selection_seconds']:.2f}s)")
    print(" | ".join(parts), file=sys.stderr)


def _versions() -> dict:
    from importlib.metadata import version

    import torch

    from .. import __version__

    return {"torch": torch.__version__, "timm": version("timm"), "datasets": version("datasets"),
            "crust_clean": __version__}
