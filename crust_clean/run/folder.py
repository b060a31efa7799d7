"""The run folder: the contract between a fit and everything that reads it. ``RunFolder`` writes it (file
names, writers), ``Run`` reads a finished one. Reading a run needs no torch: exporters, manifests and reports
read it through ``Run``; only ``Run.load_model`` / ``predict_probs`` / ``evaluate`` load the model.

``RUN/``:
  config.yaml        fully resolved configuration (``crust-clean fit --config RUN/config.yaml`` re-runs it)
  source.json        where the samples came from (kind, path or hub name, split, columns)
  samples.csv        every usable sample: sample_id, path (empty for HF rows), row (HF rows), given_label,
                     split (train/val)
  skipped.csv        sample_id,reason of every sample left out: unreadable or undecodable image, missing
                     file, no label (only when there are any)
  ledger.parquet     one row per training sample per epoch (see ``crust_clean.run.ledger``)
  scores.csv         one row per training sample, sorted by score, higher = more likely mislabeled (with
                     ``train.folds``: scored out of fold, see ``crust_clean.run.folds``)
  metrics.json       per-epoch metrics and a summary (rewritten after every epoch)
  model.safetensors  weights of the model chosen on validation accuracy (else the last epoch)
  predictions.parquet  that model on every sample (train and val): predicted_label, confidence, logits
  model.json         what timm needs to rebuild it: model name, num_classes, class_names, img_size, mean/std
  embeddings.npy     (N, D) float16: that model's pooled features (the classifier's input) of every sample, in
                     samples.csv order (for --train head: the frozen backbone's, as cached)
  checks.parquet     every sample (samples.csv order): near-duplicate group, outlier score, image quality scores
                     (see ``crust_clean.run.checks``)
  issues.csv         one row per sample and issue it has: near-duplicate, outlier, quality:<kind>
  report/            index.html + PNGs, when asked for (``crust_clean.review.report``)
  media/             an image file per Hugging Face row, written once when an exporter needs files
While it trains (removed when it finishes): checkpoint.safetensors (see ``crust_clean.train.checkpoint``),
ledger/epoch-NNNN.parquet, the ledger rows of each finished epoch (``fit --resume`` continues from them), with
``train.folds`` folds/fold-K.npz, each finished fold fit's held-out scores (``crust_clean.run.folds``), and with
``data.cache: disk`` the decoded pixels in cache/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from ..atomic import atomic_path, write_text
from ..config import RunConfig, dump_yaml, from_dict, load_yaml
from ..data.sources import Samples, load_source
from ..errors import BadInputError, CrustCleanError
from ..method.scores import SuspectRule

if TYPE_CHECKING:
    from .folds import OutOfFold

CONFIG, SOURCE, SAMPLES, SKIPPED = "config.yaml", "source.json", "samples.csv", "skipped.csv"
LEDGER, SCORES, METRICS = "ledger.parquet", "scores.csv", "metrics.json"
MODEL, MODEL_INFO, PREDICTIONS = "model.safetensors", "model.json", "predictions.parquet"
EMBEDDINGS, REPORT, MEDIA = "embeddings.npy", "report", "media"
CHECKS, ISSUES = "checks.parquet", "issues.csv"
CHECKPOINT, LEDGER_PARTS, FOLDS, CACHE = "checkpoint.safetensors", "ledger", "folds", "cache"
#: What a finished run holds.
RUN_OUTPUTS = (CONFIG, SOURCE, SAMPLES, LEDGER, SCORES, METRICS, MODEL, MODEL_INFO, PREDICTIONS)
#: Columns of the run's CSV files that hold text even when every value looks like a number.
_TEXT_COLUMNS = {"sample_id": str, "path": str, "given_label": str, "predicted_label": str}


def default_run_dir(model_name: str, dataset_name: str) -> Path:
    """``runs/<timestamp>-<model>-<dataset>``."""
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model_name}-{dataset_name}"


class RunFolder:
    """A run folder as a fit writes it. Every file is written atomically (temporary file, then rename)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def ledger_parts(self) -> Path:
        return self.path / LEDGER_PARTS

    def cache_file(self, rank: int, img_size: int) -> Path:
        """The decoded pixels of ``data.cache: disk``: one file per rank (each rank reads every sample)."""
        return self.path / CACHE / f"rank{rank}" / f"pixels-{img_size}.u8"

    # -------------------------------------------------------------------------------------- starting a run
    def check_new(self, *, overwrite: bool, dataset_root: Path | None) -> None:
        """Refuse a folder that holds something (unless ``overwrite``) or lies inside the dataset."""
        if self.path.exists() and any(self.path.iterdir()) and not overwrite:
            raise BadInputError(f"run folder {self.path} already exists and is not empty (use --resume to continue "
                                "it, --overwrite to replace it)")
        if dataset_root is not None and self.path.resolve().is_relative_to(dataset_root.resolve()):
            raise BadInputError(f"run folder {self.path} is inside the dataset {dataset_root}: choose another --out")

    def clear_stale(self) -> None:
        """Create the folder; an overwritten run's resume state, per-epoch rows and report must not survive."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint.unlink(missing_ok=True)
        for stale in (LEDGER_PARTS, FOLDS, REPORT):
            shutil.rmtree(self.path / stale, ignore_errors=True)

    def check_resumable(self) -> None:
        if not (self.path / CONFIG).is_file() or not (self.path / SOURCE).is_file():
            raise BadInputError(f"{self.path} is not a crust-clean run folder (no {CONFIG} / {SOURCE})")
        if (self.path / MODEL).is_file() and (self.path / SCORES).is_file():
            raise BadInputError(f"run {self.path} has already finished: nothing to resume")
        if not self.checkpoint.is_file():
            raise BadInputError(f"run {self.path} stopped before its first epoch ended: nothing to resume "
                                "(start it again with --overwrite)")

    def read_config(self) -> RunConfig:
        return from_dict(load_yaml(self.path / CONFIG)).validate()

    def read_source(self) -> dict:
        return json.loads((self.path / SOURCE).read_text())

    def write_start(self, cfg: RunConfig, source: str, samples: Samples, train_idx: np.ndarray,
                    val_idx: np.ndarray) -> None:
        """What a run records before its first epoch: the config, the source and the samples with their split."""
        write_text(self.path / CONFIG, dump_yaml(cfg))
        self.write_json(SOURCE, {"source": source, **samples.origin})
        split = np.full(len(samples), "train", dtype=object)
        split[val_idx] = "val"
        self.write_csv(SAMPLES, pd.DataFrame({
            "sample_id": samples.sample_ids,
            "path": _absolute(samples.paths),
            "row": pd.array(samples.rows, dtype="Int64"),
            "given_label": [samples.class_names[c] for c in samples.labels],
            "split": split,
        }))
        (self.path / SKIPPED).unlink(missing_ok=True)  # an overwritten run's list would be stale
        if samples.skipped:
            self.write_csv(SKIPPED, pd.DataFrame(samples.skipped, columns=["sample_id", "reason"]))

    def check_same_samples(self, samples: Samples) -> None:
        """A resumed run's source must still hold the samples it started with, in the same order."""
        recorded = pd.read_csv(self.path / SAMPLES, dtype=_TEXT_COLUMNS)["sample_id"].tolist()
        if recorded != samples.sample_ids:
            raise BadInputError(f"the source of {self.path} no longer holds the samples the run started with: "
                                "start it again with --overwrite")

    # -------------------------------------------------------------------------------------------- writers
    def write_json(self, name: str, data: Any) -> None:
        write_text(self.path / name, json.dumps(data, indent=2) + "\n")

    def write_csv(self, name: str, table: pd.DataFrame) -> None:
        with atomic_path(self.path / name) as tmp:
            table.to_csv(tmp, index=False)

    def read_epochs(self) -> list[dict]:
        """The per-epoch metrics written so far."""
        return json.loads((self.path / METRICS).read_text())["epochs"]

    def write_metrics(self, epochs: list[dict], summary: dict | None = None) -> None:
        self.write_json(METRICS, {"epochs": epochs} if summary is None else {"summary": summary, "epochs": epochs})

    def write_model(self, state: dict, info: dict) -> None:
        """The saved model: its weights (safetensors) and ``model.json``."""
        from safetensors.torch import save_file

        with atomic_path(self.path / MODEL) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        self.write_json(MODEL_INFO, info)

    def write_predictions(self, samples: Samples, logits: np.ndarray, predicted: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        table = pa.table({
            "sample_id": samples.sample_ids,
            "predicted_label": [samples.class_names[c] for c in predicted],
            "confidence": probs.max(1).astype(np.float32),
            "logits": pa.FixedSizeListArray.from_arrays(logits.astype(np.float32).reshape(-1), samples.num_classes),
        })
        with atomic_path(self.path / PREDICTIONS) as tmp:
            pq.write_table(table, tmp)

    def write_scores(self, per_sample: pd.DataFrame, samples: Samples, train_idx: np.ndarray,
                     disagrees: np.ndarray, neighbour_agreement: np.ndarray, *,
                     out_of_fold: OutOfFold | None = None) -> pd.DataFrame:
        """Write and return scores.csv: ``per_sample``, the ledger's ``score_samples`` (rows in ``train_idx``
        order), the suspects by the run's own rule with ``disagrees`` (the model that scores a sample predicts
        another label than the given one) and ``neighbour_agreement`` (``method.neighbours``), sorted by score,
        highest first. With ``out_of_fold`` (``run.folds``) ``score`` is its score, the ledger's is kept as
        ``in_sample_score``, and ``fold`` says which fold held the sample out."""
        scored = per_sample["score"].to_numpy() if out_of_fold is None else out_of_fold.score
        names = np.asarray(samples.class_names, dtype=object)
        paths = samples.paths  # a list built on each access: once, not once a row
        table = pd.DataFrame({
            "sample_id": per_sample.index,
            "path": _absolute([paths[i] for i in train_idx]),
            "given_label": names[samples.labels[train_idx]],
            "predicted_label": names[per_sample["predicted_label"].to_numpy()],
            "score": scored,
            "suspect": SuspectRule().flag(scored, disagrees),
            "selection_rate": per_sample["selection_rate"].to_numpy(),
            "never_selected": per_sample["never_selected"].to_numpy(),
            "epochs_selected": per_sample["epochs_selected"].to_numpy(),
            "prob_given": per_sample["prob_given"].to_numpy(),
            "mean_loss": per_sample["mean_loss"].to_numpy(),
            "aum": per_sample["aum"].to_numpy(),
            "held_out_score": per_sample["held_out_score"].to_numpy(),
            "neighbour_agreement": neighbour_agreement,
        })
        if out_of_fold is not None:
            table["in_sample_score"], table["fold"] = per_sample["score"].to_numpy(), out_of_fold.fold
        table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        self.write_csv(SCORES, table)
        return table

    def write_checks(self, checks: pd.DataFrame, issues: pd.DataFrame) -> None:
        """checks.parquet (every sample) and issues.csv (the issues they have), ``run.checks``."""
        with atomic_path(self.path / CHECKS) as tmp:
            checks.to_parquet(tmp, index=False)
        self.write_csv(ISSUES, issues)

    def write_fold(self, k: int, **arrays: np.ndarray) -> None:
        """A finished fold fit's arrays (``crust_clean.run.folds``), kept until the run finishes."""
        with atomic_path(self.path / FOLDS / f"fold-{k}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    def read_fold(self, k: int) -> dict[str, np.ndarray] | None:
        """What ``write_fold`` wrote for fold ``k``, or None before it ends."""
        path = self.path / FOLDS / f"fold-{k}.npz"
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    @contextmanager
    def embeddings_writer(self, shape: tuple[int, int], ranks) -> Iterator[np.ndarray]:
        """An (N, D) float16 array on disk (a memory map) to fill; when the block ends without error it becomes
        embeddings.npy (atomically: a killed run leaves no half-written one). Under torchrun rank 0 creates it,
        every rank writes its own rows into it (``ranks``: ``train.distributed.Ranks``)."""
        from ..train.distributed import barrier, staged_on_main

        with staged_on_main(atomic_path(self.path / EMBEDDINGS), ranks) as tmp:
            if ranks.is_main:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape).flush()
            barrier(ranks)  # the file exists before any rank maps it
            array = np.load(tmp, mmap_mode="r+")
            yield array
            array.flush()
            del array
            barrier(ranks)  # every rank's rows are in the file

    def finish(self) -> None:
        """Every output is written: the resume state is no longer needed."""
        self.checkpoint.unlink(missing_ok=True)
        shutil.rmtree(self.ledger_parts, ignore_errors=True)
        shutil.rmtree(self.path / FOLDS, ignore_errors=True)

    def remove_cache(self) -> None:
        shutil.rmtree(self.path / CACHE, ignore_errors=True)  # pixels only: the source still has every image


def _absolute(paths: list[Path | None]) -> list[str | None]:
    return [None if p is None else str(p.resolve()) for p in paths]


class Run:
    """A finished run folder (see the module docstring for its files). What every reader of a run uses."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        missing = [name for name in RUN_OUTPUTS if not (self.path / name).exists()]
        if missing:
            raise CrustCleanError(f"{self.path} is not a finished crust-clean run (missing {', '.join(missing)})")

    @classmethod
    def of(cls, run: "Run | str | os.PathLike") -> "Run":
        """``run`` itself when it is a Run, else the run in that folder."""
        return run if isinstance(run, Run) else cls(run)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def config(self) -> RunConfig:
        return from_dict(load_yaml(self.path / CONFIG))

    @property
    def scores(self) -> pd.DataFrame:
        """One row per training sample, sorted by ``score`` descending (higher = more likely mislabeled)."""
        return pd.read_csv(self.path / SCORES, dtype=_TEXT_COLUMNS)

    @property
    def samples(self) -> pd.DataFrame:
        """Every usable sample (train and val), in source order."""
        return pd.read_csv(self.path / SAMPLES, dtype={**_TEXT_COLUMNS, "row": "Int64"})

    @property
    def source(self) -> dict:
        """Where the samples came from (``source.json``): kind, source, split, columns."""
        return json.loads((self.path / SOURCE).read_text())

    @property
    def metrics(self) -> dict:
        return json.loads((self.path / METRICS).read_text())

    @property
    def model_info(self) -> dict:
        return json.loads((self.path / MODEL_INFO).read_text())

    def predictions(self) -> pd.DataFrame:
        """The saved model on every sample: sample_id, predicted_label, confidence, logits (an array per row)."""
        return pd.read_parquet(self.path / PREDICTIONS)

    def embeddings(self) -> np.ndarray | None:
        """(N, D) float16 pooled features of the saved model, samples.csv order (memory-mapped); None for runs
        written before crust-clean kept them."""
        path = self.path / EMBEDDINGS
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def checks(self) -> pd.DataFrame | None:
        """Every sample's near-duplicate group, outlier score and image quality (``run.checks``), samples.csv order;
        None for runs written before crust-clean checked them."""
        path = self.path / CHECKS
        return pd.read_parquet(path) if path.is_file() else None

    @property
    def issues(self) -> pd.DataFrame | None:
        """One row per sample and issue it has (``run.checks.issue_rows``); None for runs written before."""
        path = self.path / ISSUES
        return pd.read_csv(path, dtype={**_TEXT_COLUMNS, "group": "Int64"}) if path.is_file() else None

    def ledger(self) -> pd.DataFrame:
        from .ledger import read_ledger

        return read_ledger(self.path / LEDGER)

    def review_table(self, *, top: int | None = None, threshold: float | None = None) -> pd.DataFrame:
        """Every sample (samples.csv order) with its scores (train samples), the saved model's prediction
        (``predicted_label`` = the robust model's, ``confidence``, ``logits``) and ``suspect``: the ``top``
        highest scores, score > ``threshold``, or by default the run's own rule, what scores.csv's ``suspect``
        column holds (``method.scores.SuspectRule``). What exporters and reports work from."""
        rule = SuspectRule(top, threshold)
        table = self.samples.merge(self.predictions(), on="sample_id", how="left", validate="one_to_one")
        scores = self.scores.drop(columns=["path", "given_label", "predicted_label"])
        table = table.merge(scores, on="sample_id", how="left", validate="one_to_one")
        own = table["suspect"].astype("boolean").fillna(False).to_numpy(dtype=bool)  # as the fit counted them
        table["suspect"] = own if rule.is_own else rule.flag(table["score"], own)
        return table

    def open_samples(self) -> Samples:
        """The run's samples re-read from their source, in ``samples.csv`` order (exporters read images from it).

        Raises CrustCleanError when a sample of the run is no longer in the source.
        """
        source = self.source
        samples = load_source(source["source"], **self.config.data.source_options())
        position = {sample_id: i for i, sample_id in enumerate(samples.sample_ids)}
        wanted = self.samples["sample_id"].tolist()
        missing = [s for s in wanted if s not in position]
        if missing:
            raise CrustCleanError(f"{len(missing)} samples of {self.path} are no longer in {source['source']}, "
                                  f"e.g. {missing[0]!r}")
        return samples.subset([position[s] for s in wanted])

    def image_files(self, *, progress: bool = False) -> list[Path]:
        """The image file of each sample, in ``samples.csv`` order (exporters need files). Samples read from files
        keep them; rows of a Hugging Face dataset are written once, encoded bytes unchanged, into ``RUN/media/``
        (the source is never written)."""
        from tqdm.auto import tqdm

        from ..data.images import DatasetImages

        table = self.samples
        if table["path"].notna().all():
            return [Path(p) for p in table["path"]]
        samples = self.open_samples()
        if not isinstance(samples.images, DatasetImages):  # paths are missing only for HF rows
            raise CrustCleanError(f"{self.path}/{SAMPLES} lacks paths for samples that are files")
        return [samples.images.save(i, self.path / MEDIA)
                for i in tqdm(range(len(samples)), desc="writing images to RUN/media", disable=not progress)]

    def load_model(self):
        """The saved model as a timm model in eval mode (weights read with safetensors, no pickle)."""
        from ..train.models import load_saved_model

        return load_saved_model(self.model_info, self.path / MODEL)

    def predict_probs(self, images, *, batch_size: int = 256) -> np.ndarray:
        """(n, K) softmax of the saved model on an image store (``crust_clean.data.images``), eval transform;
        on a GPU when there is one."""
        from ..data.torch_datasets import ImageDataset
        from ..train.models import eval_transform, saved_data_config
        from ..train.trainer import TrainContext, predict_probs

        transform = eval_transform(saved_data_config(self.model_info))
        dataset = ImageDataset(images, np.zeros(len(images), dtype=np.int64), transform)
        config = self.config
        config.train.device = "auto"  # where the model is read, not where it was trained
        return predict_probs(self.load_model(), dataset, TrainContext.create(config), batch_size=batch_size)

    def evaluate(self, source: str | os.PathLike, *, batch_size: int = 256, **source_options: Any) -> float:
        """Accuracy of the saved model on a labelled source (any ``load_source`` takes) using this run's class names."""
        info = self.model_info
        samples = load_source(source, **source_options)
        unknown = sorted(set(samples.class_names) - set(info["class_names"]))
        if unknown:
            raise BadInputError(f"classes not in the run: {', '.join(unknown)}")
        index = {name: i for i, name in enumerate(info["class_names"])}
        labels = np.array([index[samples.class_names[c]] for c in samples.labels])
        predicted = self.predict_probs(samples.images, batch_size=batch_size).argmax(1)
        return float((predicted == labels).mean())
