"""Out-of-fold scores (``train.folds: K``, with ``--train head`` or ``last-stages``): after the run's own fit, K
more fits of the trained part on the same cached features, fit k on the training split less fold k (folds
stratified by the given label). Each training sample is then scored by the fit that never trained on it.

Why: the run's own score is in-sample. The model that scores a sample has trained on its label, and the more it
learns a wrong label, the less doubt it casts on it. A model that never saw the sample cannot learn its label
(cleanlab's out-of-sample recipe, with CRUST as the learner). Measured on all of CIFAR-10N with 1 % label errors
(benchmarks/results/stages.md, seed 0): AUROC 0.990 out of fold against 0.988 in-sample, at about five times a
fit's time. Fold fits of 4 of the run's 10 epochs kept almost none of the gain (0.9885), so each runs them all.

A sample's out-of-fold score uses the run's definition (``method.scores.score``): the mean over its fold fit's
epochs of 1 - p(given). The suspects follow the run's rule, counted out of fold: as many as there are samples
whose fold model's final prediction differs from the given label. A fold fit has no validation split (it
scores with its last epoch) and keeps nothing but its held-out fold's scores and predictions. Each is written to
``RUN/folds/fold-<k>.npz`` as soon as it ends, so a killed run resumes at the next fold.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import BadInputError
from ..method.scores import score
from .folder import RunFolder


@dataclass(frozen=True)
class OutOfFold:
    """Per training sample (the run's training order): ``score``, ``predicted`` (the final class of the fold
    model that held it out) and ``fold``; ``seconds`` the K fits took in this process."""

    score: np.ndarray
    predicted: np.ndarray
    fold: np.ndarray
    seconds: float

    @property
    def count(self) -> int:
        return int(self.fold.max()) + 1


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(n,) the fold, 0..folds-1, of each of ``labels``' samples: stratified by label, shuffled by ``seed``
    (scikit-learn's StratifiedKFold). Raises BadInputError when there are fewer samples than folds."""
    from sklearn.model_selection import StratifiedKFold

    if len(labels) < folds:
        raise BadInputError(f"train.folds={folds} needs at least {folds} training samples (there are {len(labels)})")
    fold = np.empty(len(labels), dtype=np.int64)
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    for k, (_, held) in enumerate(splits):
        fold[held] = k
    return fold


def out_of_fold(subject, initial: dict, train_idx: np.ndarray, ctx, folder: RunFolder) -> OutOfFold:
    """The K fold fits of ``subject``'s module (``train.trainable.Trainable``), each from its ``initial`` state,
    on the rows ``train_idx`` of its store; finished folds are read back from ``folder``."""
    folds, seed = ctx.cfg.train.folds, ctx.cfg.train.seed
    given = subject.samples.labels[train_idx]
    fold = fold_of(given, folds, seed)
    scores, predicted = np.empty(len(train_idx)), np.empty(len(train_idx), dtype=np.int64)
    started = time.perf_counter()
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        result = folder.read_fold(k)
        if result is None or not np.array_equal(result["held"], held):
            torch.manual_seed(seed * 1000 + k + 1)  # each fold's own draws, the same when a resumed run redoes it
            result = _fit_fold(subject, initial, train_idx[fold != k], train_idx[held], ctx, name=f"fold {k + 1}")
            folder.write_fold(k, held=held, **result)
            if ctx.progress:
                print(f"fold {k + 1}/{folds}: {len(held)} samples scored out of fold, "
                      f"{time.perf_counter() - started:.1f}s so far", file=sys.stderr)
        scores[held], predicted[held] = result["score"], result["predicted"]
    return OutOfFold(scores, predicted, fold, time.perf_counter() - started)


def _fit_fold(subject, initial: dict, fit_rows: np.ndarray, held_rows: np.ndarray, ctx, *, name: str) -> dict:
    """One fold fit on ``fit_rows``: the held-out rows' score (mean 1 - p(given) over its epochs) and final
    predictions."""
    from ..data.torch_datasets import ImageDataset, TrainingData
    from ..train.trainer import EvalBatches, Optimisation, eval_pass, train

    labels, model = subject.samples.labels, subject.module
    model.load_state_dict(initial)
    data = TrainingData.split(subject.store, labels, fit_rows, np.empty(0, dtype=np.int64),
                              train_transform=subject.train_transform, eval_transform=subject.eval_transform)
    held = EvalBatches(ImageDataset(subject.store.take(held_rows), labels[held_rows], subject.eval_transform), ctx)
    prob_given = []
    for result in train(model, data, Optimisation.create(model, ctx), ctx):
        outputs = eval_pass(model, held, ctx, want_proxies=False, desc=f"{name} epoch {result.epoch} held out")
        prob_given.append(outputs.prob_given)
    return {"score": score(np.mean(prob_given, axis=0)), "predicted": outputs.predicted}
