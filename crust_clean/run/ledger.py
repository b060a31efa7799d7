"""The selection ledger: one row per training sample per epoch.

Columns (the contract exporters and checks rely on):

=============== =======  ==========================================================================
epoch           int64    0-based; warm-up epochs included
sample_id       string   stable sample key (see ``crust_clean.data.sources``)
selected        boolean  in this epoch's weighted coreset; null in warm-up / full-data epochs
weight          float64  normalised medoid weight (0 when not selected); null when no selection
medoid          string   sample_id of the medoid whose cluster holds the sample; null when no selection
loss            float32  cross-entropy w.r.t. the given label, after this epoch's training
predicted_label int64    argmax class after this epoch's training
prob_given      float32  softmax probability of the given label after this epoch's training
margin          float32  logit of the given label minus the largest other logit (AUM's margin)
trained         boolean  the epoch's training saw the sample: a medoid or a medoid's mixup partner (every
                         sample in warm-up / full-data epochs)
=============== =======  ==========================================================================

Selection columns describe the coreset trained on *in* epoch e; the other columns the eval pass at
the *end* of epoch e (the pass whose proxies choose epoch e+1's coreset). No scoring here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import BadInputError

if TYPE_CHECKING:  # the ledger is read without torch
    from ..method.selection import Selection


class Ledger:
    """The ledger of a fit, one epoch at a time: each epoch's rows are written to a part file (``write_part``, what
    a resume reads back) and added to running per-sample totals (``method.scores.ScoreTotals``, what the scores are
    made of); only the last epoch's rows stay in memory, whatever the number of epochs. ``join_parts`` writes the
    whole ledger from the parts, an epoch at a time."""

    def __init__(self, sample_ids: list[str]):
        from ..method.scores import ScoreTotals

        self.sample_ids = pd.array(sample_ids, dtype="string")
        self.totals = ScoreTotals(len(sample_ids))
        self._last: pd.DataFrame | None = None

    def _keep(self, part: pd.DataFrame) -> None:
        self._last = part
        self.totals.add(part)

    def append(self, epoch: int, *, loss: np.ndarray, predicted: np.ndarray, prob_given: np.ndarray,
               margin: np.ndarray, selection: Selection | None) -> None:
        n = len(self.sample_ids)
        if selection is None:
            selected = pd.array([pd.NA] * n, dtype="boolean")
            weight = pd.array([pd.NA] * n, dtype="Float64")
            medoid = pd.array([pd.NA] * n, dtype="string")
        else:
            selected = pd.array(selection.selected_mask(n), dtype="boolean")
            weight = pd.array(selection.weight_per_row(n), dtype="Float64")
            medoid = self.sample_ids[selection.medoid_of]
        self._keep(pd.DataFrame({
            "epoch": np.full(n, epoch, dtype=np.int64),
            "sample_id": self.sample_ids,
            "selected": selected,
            "weight": weight,
            "medoid": medoid,
            "loss": np.asarray(loss, dtype=np.float32),
            "predicted_label": np.asarray(predicted, dtype=np.int64),
            "prob_given": np.asarray(prob_given, dtype=np.float32),
            "margin": np.asarray(margin, dtype=np.float32),
            "trained": np.ones(n, dtype=bool) if selection is None else selection.trained_mask(n),
        }))

    @property
    def epochs(self) -> int:
        """How many epochs the ledger holds."""
        return self.totals.epochs

    def mean_prob_given(self) -> np.ndarray:
        """(n,) mean over the recorded epochs of prob_given (``method.scores.score`` makes it the score)."""
        return self.totals.mean_prob_given()

    def per_sample(self) -> pd.DataFrame:
        """``method.scores.score_samples`` of the whole ledger, from the running totals."""
        return self.totals.per_sample(self.sample_ids)

    def write_part(self, folder: Path) -> None:
        """Write the last appended epoch to ``folder/epoch-NNNN.parquet`` (atomically), for a resume."""
        write_ledger(self._last, _part_path(folder, int(self._last["epoch"].iloc[0])))

    def read_parts(self, folder: Path, *, through_epoch: int) -> None:
        """Add the parts ``write_part`` wrote for epochs 0..through_epoch (a resumed run's history)."""
        for epoch in range(through_epoch + 1):
            path = _part_path(folder, epoch)
            if not path.is_file():
                raise BadInputError(f"cannot resume: the ledger of epoch {epoch} is missing ({path})")
            part = read_ledger(path)
            if part["sample_id"].tolist() != self.sample_ids.tolist():
                raise BadInputError(f"cannot resume: {path} holds other samples than the run")
            self._keep(part)

    def join_parts(self, folder: Path, path: str | os.PathLike) -> None:
        """Write the ledger of every epoch held, read back from ``folder``'s parts one at a time, as one parquet
        file (a row group per epoch), atomically."""
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            writer = None
            try:
                for epoch in range(self.epochs):
                    table = pq.read_table(_part_path(folder, epoch))
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
            finally:
                if writer is not None:
                    writer.close()


def _part_path(folder: Path, epoch: int) -> Path:
    return folder / f"epoch-{epoch:04d}.parquet"


def write_ledger(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Store a ledger frame as one parquet file, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_ledger(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_parquet(path)
