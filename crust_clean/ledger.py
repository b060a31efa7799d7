"""The selection ledger: one row per training sample per epoch.

Columns (the contract exporters and checks rely on):

=============== =======  ==========================================================================
epoch           int64    0-based; warm-up epochs included
sample_id       string   stable sample key (see ``crust_clean.sources``)
selected        boolean  in this epoch's weighted coreset; null in warm-up / full-data epochs
weight          float64  normalised medoid weight (0 when not selected); null when no selection
medoid          string   sample_id of the medoid whose cluster holds the sample; null when no selection
loss            float32  cross-entropy w.r.t. the given label, after this epoch's training
predicted_label int64    argmax class after this epoch's training
prob_given      float32  softmax probability of the given label after this epoch's training
margin          float32  logit of the given label minus the largest other logit (AUM's margin)
=============== =======  ==========================================================================

Selection columns describe the coreset trained on *in* epoch e; the other columns the eval pass at
the *end* of epoch e (the pass whose proxies choose epoch e+1's coreset). No scoring here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import BadInputError
from .selection import Selection


class Ledger:
    """Append-only in memory, one frame per epoch; ``frame`` joins them for ``write_ledger``."""

    def __init__(self, sample_ids: list[str]):
        self.sample_ids = pd.array(sample_ids, dtype="string")
        self._epochs: list[pd.DataFrame] = []

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
        self._epochs.append(pd.DataFrame({
            "epoch": np.full(n, epoch, dtype=np.int64),
            "sample_id": self.sample_ids,
            "selected": selected,
            "weight": weight,
            "medoid": medoid,
            "loss": np.asarray(loss, dtype=np.float32),
            "predicted_label": np.asarray(predicted, dtype=np.int64),
            "prob_given": np.asarray(prob_given, dtype=np.float32),
            "margin": np.asarray(margin, dtype=np.float32),
        }))

    def frame(self) -> pd.DataFrame:
        return pd.concat(self._epochs, ignore_index=True)

    def sum_of_doubt(self) -> np.ndarray:
        """(n,) sum over the recorded epochs of 1 - prob_given (the running total behind ``score``)."""
        total = np.zeros(len(self.sample_ids))
        for part in self._epochs:
            total += 1.0 - part["prob_given"].to_numpy(np.float64)
        return total

    def write_part(self, folder: Path) -> None:
        """Write the last appended epoch to ``folder/epoch-NNNN.parquet`` (atomically), for a resume."""
        part = self._epochs[-1]
        write_ledger(part, folder / f"epoch-{int(part['epoch'].iloc[0]):04d}.parquet")

    def read_parts(self, folder: Path, *, through_epoch: int) -> None:
        """Append the parts ``write_part`` wrote for epochs 0..through_epoch (a resumed run's history)."""
        for epoch in range(through_epoch + 1):
            path = folder / f"epoch-{epoch:04d}.parquet"
            if not path.is_file():
                raise BadInputError(f"cannot resume: the ledger of epoch {epoch} is missing ({path})")
            part = read_ledger(path)
            if part["sample_id"].tolist() != self.sample_ids.tolist():
                raise BadInputError(f"cannot resume: {path} holds other samples than the run")
            self._epochs.append(part)


def write_ledger(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Store a ledger frame as one parquet file, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_ledger(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_parquet(path)
