"""``fit``: the public entry point that runs CRUST on a dataset and writes a run folder; ``Run``: reads one.

Run folder contract (``RUN/``):
  config.yaml        fully resolved configuration (``crust-clean fit --config RUN/config.yaml`` re-runs it)
  source.json        where the samples came from (kind, path or hub name, split, columns)
  samples.csv        every usable sample: sample_id, path (empty for HF rows), row (HF rows), given_label,
                     split (train/val)
  skipped.csv        sample_id,reason of every sample left out: unreadable or undecodable image, missing
                     file, no label (only when there are any)
  ledger.parquet     one row per training sample per epoch (see ``crust_clean.ledger``)
  scores.csv         one row per training sample, sorted by score, higher = more likely mislabeled
  metrics.json       per-epoch metrics and a summary (rewritten after every epoch)
  model.safetensors  weights of the model chosen on validation accuracy (else the last epoch)
  predictions.parquet  that model on every sample (train and val): predicted_label, confidence, logits
  model.json         what timm needs to rebuild it: model name, num_classes, class_names, img_size, mean/std
  report/            index.html + PNGs, when asked for (``crust_clean.report``)
While it trains (removed when it finishes): checkpoint.safetensors (see ``crust_clean.checkpoint``) and
ledger/epoch-NNNN.parquet, the ledger rows of each finished epoch; ``resume`` continues from them.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_text
from .config import RunConfig, apply_options, dump_yaml, from_dict, load_yaml
from .checkpoint import CHECKPOINT
from .distributed import SINGLE, Ranks, barrier, broadcast, from_environment
from .errors import BadInputError, CrustCleanError, Interrupted
from .scores import SUSPECT_RULE, flag_suspects, is_suspect, margins, score_samples, top_scores
from .sources import Samples, load_source, read_true_labels, stratified_split

RUN_OUTPUTS = ("config.yaml", "source.json", "samples.csv", "ledger.parquet", "scores.csv", "metrics.json",
               "model.safetensors", "model.json", "predictions.parquet")
#: Columns of the run's CSV files that hold text even when every value looks like a number.
_TEXT_COLUMNS = {"sample_id": str, "path": str, "given_label": str, "predicted_label": str}


def resolve_config(config: RunConfig | Mapping[str, Any] | str | os.PathLike | None = None,
                   **options: Any) -> RunConfig:
    """Defaults < ``config`` (a RunConfig, a mapping or a YAML path) < ``options``; validated."""
    if config is None:
        resolved = RunConfig()
    elif isinstance(config, RunConfig):
        resolved = copy.deepcopy(config)
    elif isinstance(config, Mapping):
        resolved = from_dict(config)
    else:
        resolved = from_dict(load_yaml(config))
    return apply_options(resolved, {k: v for k, v in options.items() if v is not None}).validate()


def fit(source: str | os.PathLike, *, out: str | os.PathLike | None = None,
        config: RunConfig | Mapping[str, Any] | str | os.PathLike | None = None,
        overwrite: bool = False, progress: bool = True, **options: Any) -> "Run":
    """Train a noise-robust model with CRUST on ``source`` and write a run folder with the ledger and scores.

    Parameters
    ----------
    source : path
        An ImageFolder tree: ``source/<class>/**/<image>`` (jpg, jpeg, png, bmp, webp, tif), sample
        ids = paths relative to ``source``; or a ``.csv`` / ``.jsonl`` manifest of ``path,label`` rows,
        paths relative to the manifest's folder. The source is only read.
    out : path, optional
        Run folder; default ``runs/<timestamp>-<model>-<dataset folder name>``. An existing non-empty
        folder is an error unless ``overwrite=True``.
    config : RunConfig, mapping or YAML path, optional
        Base configuration (e.g. ``configs/cpu-quick.yaml`` or an earlier ``RUN/config.yaml``).
    progress : bool
        Show progress bars and a line per epoch on stderr.
    **options
        Any config field by name, overriding ``config``: ``epochs=10``, ``selector="facility-location"``,
        ``model="resnet18"``, ``crust={"proxy": "logits"}``, ``"train.lr"=0.05`` (see ``crust_clean.config``).

    Returns
    -------
    Run
        The finished run; ``run.scores`` is the suspect ranking (higher score = more likely mislabeled).

    Examples
    --------
    >>> run = crust_clean.fit("images/", out="runs/first", epochs=20)      # doctest: +SKIP
    >>> run.scores.head(10)[["sample_id", "given_label", "predicted_label", "score"]]  # doctest: +SKIP
    """
    cfg = resolve_config(config, **options)
    ranks = from_environment(cfg.train.device)  # several processes under torchrun, else one
    samples = load_source(source, **cfg.data.source_options())
    truth = read_true_labels(cfg.data.true_labels, samples) if cfg.data.true_labels else None
    out = broadcast(Path(out) if out is not None else _default_run_dir(cfg, samples), ranks)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BadInputError(f"run folder {out} already exists and is not empty (use --resume to continue it, "
                            "--overwrite to replace it)")
    if samples.root is not None and out.resolve().is_relative_to(samples.root.resolve()):
        raise BadInputError(f"run folder {out} is inside the dataset {samples.root}: choose another --out")
    barrier(ranks)  # every rank has looked at the folder before rank 0 writes into it
    if ranks.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CHECKPOINT).unlink(missing_ok=True)  # an overwritten run's resume state must not survive
        for stale in ("ledger", "report"):  # nor its per-epoch rows, nor a report of the old run
            shutil.rmtree(out / stale, ignore_errors=True)
    barrier(ranks)
    return _train_run(source, samples, truth, cfg, out, progress=progress, resume=False, ranks=ranks)


def resume(run: str | os.PathLike, *, progress: bool = True) -> "Run":
    """Continue a fit that was killed or interrupted, from the checkpoint of its last finished epoch.

    The run's own ``config.yaml`` and ``source.json`` are used; the epoch in progress when it stopped is
    trained again. On CPU the finished run's ledger, scores and weights equal those of a run that was never
    interrupted.

    Raises BadInputError when ``run`` is not a run folder, has already finished, has no finished epoch yet
    (start it again with ``overwrite=True``), or its source no longer holds the same samples.
    """
    out = Path(run)
    if not (out / "config.yaml").is_file() or not (out / "source.json").is_file():
        raise BadInputError(f"{out} is not a crust-clean run folder (no config.yaml / source.json)")
    if (out / "model.safetensors").is_file() and (out / "scores.csv").is_file():
        raise BadInputError(f"run {out} has already finished: nothing to resume")
    if not (out / CHECKPOINT).is_file():
        raise BadInputError(f"run {out} stopped before its first epoch ended: nothing to resume "
                            "(start it again with --overwrite)")
    cfg = from_dict(load_yaml(out / "config.yaml")).validate()
    ranks = from_environment(cfg.train.device)
    source = json.loads((out / "source.json").read_text())["source"]
    samples = load_source(source, **cfg.data.source_options())
    truth = read_true_labels(cfg.data.true_labels, samples) if cfg.data.true_labels else None
    return _train_run(source, samples, truth, cfg, out, progress=progress, resume=True, ranks=ranks)


def _train_run(source, samples: Samples, truth: np.ndarray | None, cfg: RunConfig, out: Path, *,
               progress: bool, resume: bool, ranks: Ranks = SINGLE) -> "Run":
    """Decode, split, train (from the checkpoint when resuming) and write every output of a run.
    With several ranks all of them train and rank 0 alone writes (``crust_clean.distributed``)."""
    import torch

    from . import models
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import ImageDataset, default_workers
    from .ledger import Ledger
    from .trainer import Device, EvalBatches, Optimisation, eval_pass, train

    started = time.perf_counter()
    device = Device.resolve(_rank_device(cfg.train.device, ranks))
    progress = progress and ranks.is_main
    workers = cfg.data.workers if cfg.data.workers is not None else default_workers(device.device)
    cache = _cache_kind(samples, cfg)
    images, failed = _decoded_images(samples, cache, cfg.model.img_size, out, workers, progress, ranks)
    if failed:  # whole-file decoding found what the header check could not (e.g. a truncated JPEG)
        kept = np.setdiff1d(np.arange(len(samples)), [i for i, _ in failed])
        samples, images = samples.without(failed), images.take(kept)
        truth = truth[kept] if truth is not None else None

    train_idx, val_idx = stratified_split(samples.labels, cfg.data.val_fraction, cfg.train.seed)
    if resume:
        recorded = pd.read_csv(out / "samples.csv", dtype=_TEXT_COLUMNS)["sample_id"].tolist()
        if recorded != samples.sample_ids:
            raise BadInputError(f"the source of {out} no longer holds the samples the run started with: "
                                "start it again with --overwrite")
    elif ranks.is_main:
        write_text(out / "config.yaml", dump_yaml(cfg))
        _write_json(out / "source.json", {"source": _resolved_source(source), **samples.origin})
        _write_samples(out, samples, train_idx, val_idx)

    torch.manual_seed(cfg.train.seed)
    model = models.create_model(cfg.model, samples.num_classes)
    if ranks.active and device.device.type == "cuda":  # BatchNorm over the whole batch, as in one process
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    data_cfg = models.data_config(model, cfg.model)
    train_tf, eval_tf = models.build_transforms(data_cfg, cfg.train)
    labels = samples.labels

    def subset(idx, transform):
        return ImageDataset(images.take(idx), labels[idx], transform)

    train_set, eval_set = subset(train_idx, train_tf), subset(train_idx, eval_tf)
    val_set = subset(val_idx, eval_tf) if len(val_idx) else None
    is_noisy = truth[train_idx] != labels[train_idx] if truth is not None else None
    optimisation = Optimisation.create(model, cfg, device)

    epochs: list[dict] = []
    best_accuracy, best_epoch, best_state = -1.0, None, None
    ledger = Ledger([samples.sample_ids[i] for i in train_idx])
    start_epoch = 0
    if resume:
        resumed = load_checkpoint(out / CHECKPOINT, model=model, optimizer=optimisation.optimizer,
                                  scheduler=optimisation.scheduler, scaler=optimisation.scaler)
        start_epoch = resumed.epoch + 1
        best_accuracy, best_epoch, best_state = resumed.best_accuracy, resumed.best_epoch, resumed.best_state
        ledger.read_parts(out / "ledger", through_epoch=resumed.epoch)
        epochs = json.loads((out / "metrics.json").read_text())["epochs"][:start_epoch]
    sum_doubt = ledger.sum_of_doubt()  # running sum of 1 - p(given): the score, as in scores.score_samples
    try:
        for result in train(model, train_set, eval_set, val_set, cfg=cfg, device=device, workers=workers,
                            optimisation=optimisation, start_epoch=start_epoch, progress=progress, ranks=ranks):
            o = result.outputs
            ledger.append(result.epoch, loss=o.loss, predicted=o.predicted, prob_given=o.prob_given,
                          margin=margins(o.logits, labels[train_idx]), selection=result.selection)
            sum_doubt += 1.0 - o.prob_given
            row = _epoch_metrics(result, labels[train_idx], sum_doubt / (result.epoch + 1), is_noisy)
            epochs.append(row)
            if result.val_accuracy is not None and result.val_accuracy > best_accuracy:
                best_accuracy, best_epoch = result.val_accuracy, result.epoch
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            # ledger rows and metrics first, checkpoint last: a checkpoint never names an epoch without them
            if ranks.is_main:
                ledger.write_part(out / "ledger")
                _write_json(out / "metrics.json", {"epochs": epochs})
                save_checkpoint(out / CHECKPOINT, epoch=result.epoch, model=model,
                                optimizer=optimisation.optimizer, scheduler=optimisation.scheduler,
                                scaler=optimisation.scaler, best_epoch=best_epoch, best_accuracy=best_accuracy,
                                best_state=best_state)
            if progress:
                _print_epoch(row)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; resume with: crust-clean fit --resume {out} (the epoch in progress is "
                          "trained again)" if (out / CHECKPOINT).exists() else
                          "interrupted before the first epoch ended (nothing to resume)") from None

    if best_state is None:  # no validation split: keep the last epoch
        best_epoch = cfg.train.epochs - 1
        best_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    everything = EvalBatches(ImageDataset(images, labels, eval_tf), cfg=cfg, workers=workers, device=device,
                             ranks=ranks)
    robust = eval_pass(model, everything, cfg=cfg, device=device, progress=progress, want_proxies=False,
                       desc="robust model", ranks=ranks)
    if ranks.is_main:
        run_facts = {"n_val": len(val_idx), "wall_seconds": round(time.perf_counter() - started, 2),
                     "resumed": resume, "cache": cache, "device": str(device.device),
                     "device_name": _device_name(device.device), "processes": ranks.world}
        _write_outputs(out, samples, cfg=cfg, data_cfg=data_cfg, model_state=best_state, model_epoch=best_epoch,
                       robust=robust, ledger=ledger, train_idx=train_idx, is_noisy=is_noisy, epochs=epochs,
                       run_facts=run_facts)
    barrier(ranks)  # the others return the run once rank 0 has written it
    if cache == "disk" and ranks.is_main:
        shutil.rmtree(out / "cache", ignore_errors=True)  # pixels only: the source still has every image
    return Run(out)


def _write_outputs(out: Path, samples: Samples, *, cfg: RunConfig, data_cfg: dict, model_state: dict,
                   model_epoch: int, robust, ledger, train_idx: np.ndarray, is_noisy: np.ndarray | None,
                   epochs: list[dict], run_facts: dict) -> None:
    """Everything a finished run holds: the saved model (``model_state`` of ``model_epoch``), its pass over all
    samples (``robust``), the ledger and scores of the training rows (``train_idx``; ``is_noisy`` per training
    row when true labels are known) and the metrics; ``run_facts`` go into the summary as they are."""
    from .evaluation import detection_metrics
    from .ledger import write_ledger

    labels = samples.labels
    _save_model(out, model_state, {
        "architecture": cfg.model.name,
        "num_classes": samples.num_classes,
        "class_names": samples.class_names,
        "img_size": cfg.model.img_size,
        "mean": list(data_cfg["mean"]),
        "std": list(data_cfg["std"]),
        "interpolation": data_cfg["interpolation"],
        "epoch": model_epoch,
        "chosen_by": "val_accuracy" if run_facts["n_val"] else "last_epoch",
    })
    _write_predictions(out, samples, robust)
    ledger_frame = ledger.frame()
    write_ledger(ledger_frame, out / "ledger.parquet")
    scores = _scores_table(ledger_frame, samples, train_idx, robust.predicted[train_idx] != labels[train_idx])
    with atomic_path(out / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)

    summary = {
        "n_train": len(train_idx), "n_skipped": len(samples.skipped),
        "empty_classes": samples.empty_classes,
        "num_classes": samples.num_classes, "best_epoch": model_epoch,
        "val_accuracy": epochs[model_epoch]["val_accuracy"],
        "never_selected": int(scores["never_selected"].sum()),
        "suspects": int(scores["suspect"].sum()), "suspect_rule": SUSPECT_RULE,
        **run_facts, **_versions(), "python": platform.python_version(),
    }
    if is_noisy is not None:  # the final scores and suspects against the truth
        noisy_by_id = dict(zip((samples.sample_ids[i] for i in train_idx), is_noisy))
        summary["detection"] = detection_metrics(scores["score"].to_numpy(),
                                                 [noisy_by_id[s] for s in scores["sample_id"]], scores["suspect"])
    _write_json(out / "metrics.json", {"summary": summary, "epochs": epochs})
    # every output is written: the resume state is no longer needed
    (out / CHECKPOINT).unlink(missing_ok=True)
    shutil.rmtree(out / "ledger", ignore_errors=True)


def _rank_device(name: str, ranks: Ranks) -> str:
    """The configured device; with several ranks on CUDA, this rank's GPU (torchrun's LOCAL_RANK)."""
    import torch

    if ranks.active and (name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())):
        torch.cuda.set_device(ranks.local_rank)
        return f"cuda:{ranks.local_rank}"
    return name


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def _versions() -> dict:
    from importlib.metadata import version

    import torch

    from . import __version__

    return {"torch": torch.__version__, "timm": version("timm"), "datasets": version("datasets"),
            "crust_clean": __version__}


def describe(source: str | os.PathLike, config: RunConfig | None = None, *, check: bool = False,
             progress: bool = False) -> dict:
    """What ``fit`` would train on: classes, counts per class, image sizes seen, skipped files and why,
    classes without images.

    ``check=True`` also decodes every image in full, as ``fit`` does before training (a truncated file
    passes the header check), and finds duplicates: groups of samples with byte-identical images
    (``labels_differ`` when the copies carry different labels). Nothing is written.

    Raises BadInputError for a source ``fit`` would refuse (missing, no images, one class, no label column).
    """
    from collections import Counter

    config = config or RunConfig()
    samples = load_source(source, **config.data.source_options())
    duplicates = []
    if check:
        from .images import undecodable

        workers = config.data.workers if config.data.workers is not None else 0
        samples = samples.without(undecodable(samples.images, workers=workers, progress=progress))
        duplicates = _duplicates(samples)
    sizes = Counter(f"{w}x{h}" for w, h in samples.sizes)
    return {
        "source": str(source), "kind": samples.origin["kind"], "origin": samples.origin,
        "samples": len(samples), "classes": samples.num_classes,
        "counts_per_class": samples.class_counts(),
        "image_sizes": dict(sizes.most_common(5)), "distinct_image_sizes": len(sizes),
        "skipped": [{"sample_id": s, "reason": r} for s, r in samples.skipped],
        "empty_classes": samples.empty_classes,
        **({"duplicates": duplicates} if check else {}),
    }


def _duplicates(samples: Samples) -> list[dict]:
    """Groups of samples whose encoded images are byte-identical (sha256), largest first."""
    import hashlib

    groups: dict[str, list[int]] = {}
    for i in range(len(samples)):
        groups.setdefault(hashlib.sha256(samples.images.encoded(i)).hexdigest(), []).append(i)
    found = [{"sample_ids": [samples.sample_ids[i] for i in members],
              "labels": [samples.class_names[samples.labels[i]] for i in members],
              "labels_differ": len({int(samples.labels[i]) for i in members}) > 1}
             for members in groups.values() if len(members) > 1]
    return sorted(found, key=lambda g: -len(g["sample_ids"]))


def _resolved_source(source: str | os.PathLike) -> str:
    """The source as ``load_source`` takes it, with a local path made absolute (exporters re-open it later,
    possibly from another working directory)."""
    spec = os.fspath(source)
    return spec if spec.startswith(("hf:", "fo:")) else str(Path(spec).resolve())


def _default_run_dir(cfg: RunConfig, samples: Samples) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model.name}-{samples.name}"


#: ``--cache auto`` holds decoded pixels in memory up to this many bytes.
AUTO_CACHE_BYTES = 2 * 1024**3


def _cache_kind(samples: Samples, cfg: RunConfig) -> str:
    """``cfg.data.cache``, with ``auto`` resolved: memory when no image is downscaled and the pixels fit."""
    if cfg.data.cache != "auto":
        return cfg.data.cache
    size = cfg.model.img_size
    lossless = all(min(w, h) <= size for w, h in samples.sizes)
    return "memory" if lossless and sum(w * h * 3 for w, h in samples.sizes) <= AUTO_CACHE_BYTES else "none"


def _decoded_images(samples: Samples, cache: str, img_size: int, out: Path, workers: int, progress: bool,
                    ranks: Ranks = SINGLE):
    """(the image store training reads: the source's or its decoded cache, (index, reason) of the images that
    cannot be decoded). Every image is decoded once here, by the cache build or by a check pass; a disk cache
    is one file per rank (each rank reads every sample in the eval passes)."""
    from .images import DecodedCache, undecodable

    if cache == "none":
        return samples.images, undecodable(samples.images, workers=workers, progress=progress)
    file = out / "cache" / f"rank{ranks.rank}" / f"pixels-{img_size}.u8" if cache == "disk" else None
    decoded = DecodedCache.build(samples.images, img_size, file=file, workers=workers, progress=progress)
    return decoded, decoded.failed


def _save_model(out: Path, state: dict, info: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    _write_json(out / "model.json", info)


def _write_predictions(out: Path, samples: Samples, outputs) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    probs = np.exp(outputs.logits - outputs.logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    table = pa.table({
        "sample_id": samples.sample_ids,
        "predicted_label": [samples.class_names[c] for c in outputs.predicted],
        "confidence": probs.max(1).astype(np.float32),
        "logits": pa.FixedSizeListArray.from_arrays(outputs.logits.astype(np.float32).reshape(-1),
                                                    samples.num_classes),
    })
    with atomic_path(out / "predictions.parquet") as tmp:
        pq.write_table(table, tmp)


def _write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def _write_samples(out: Path, samples: Samples, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    split = np.full(len(samples), "train", dtype=object)
    split[val_idx] = "val"
    table = pd.DataFrame({
        "sample_id": samples.sample_ids,
        "path": _absolute(samples.paths),
        "row": pd.array(samples.rows, dtype="Int64"),
        "given_label": [samples.class_names[c] for c in samples.labels],
        "split": split,
    })
    with atomic_path(out / "samples.csv") as tmp:
        table.to_csv(tmp, index=False)
    skipped = out / "skipped.csv"
    skipped.unlink(missing_ok=True)  # an overwritten run's list would be stale
    if samples.skipped:
        with atomic_path(skipped) as tmp:
            pd.DataFrame(samples.skipped, columns=["sample_id", "reason"]).to_csv(tmp, index=False)


def _absolute(paths: list[Path | None]) -> list[str | None]:
    return [None if p is None else str(p.resolve()) for p in paths]


def _epoch_metrics(result, given: np.ndarray, score: np.ndarray, is_noisy: np.ndarray | None) -> dict:
    from .evaluation import detection_metrics

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


def _print_epoch(row: dict) -> None:
    import sys

    parts = [f"epoch {row['epoch']:3d}", f"loss {row['train_loss']:.3f}"]
    if row["val_accuracy"] is not None:
        parts.append(f"val acc {row['val_accuracy']:.3f}")
    parts.append(f"coreset {row['coreset_size']}")
    if "detection" in row and row["detection"]["auroc"] is not None:
        parts.append(f"AUROC {row['detection']['auroc']:.3f}")
    parts.append(f"{row['epoch_seconds']:.1f}s (selection {row['selection_seconds']:.2f}s)")
    print(" | ".join(parts), file=sys.stderr)


def _scores_table(ledger: pd.DataFrame, samples: Samples, train_idx: np.ndarray,
                  disagrees: np.ndarray) -> pd.DataFrame:
    """scores.csv: ``score_samples`` per training sample (ledger order = ``train_idx`` order), the suspects
    by ``flag_suspects`` with ``disagrees`` (the saved model's prediction differs from the given label)."""
    per_sample = score_samples(ledger)
    names = np.asarray(samples.class_names, dtype=object)
    table = pd.DataFrame({
        "sample_id": per_sample.index,
        "path": _absolute([samples.paths[i] for i in train_idx]),
        "given_label": names[samples.labels[train_idx]],
        "predicted_label": names[per_sample["predicted_label"].to_numpy()],
        "score": per_sample["score"].to_numpy(),
        "suspect": flag_suspects(per_sample["score"], disagrees),
        "selection_rate": per_sample["selection_rate"].to_numpy(),
        "never_selected": per_sample["never_selected"].to_numpy(),
        "epochs_selected": per_sample["epochs_selected"].to_numpy(),
        "prob_given": per_sample["prob_given"].to_numpy(),
        "mean_loss": per_sample["mean_loss"].to_numpy(),
        "aum": per_sample["aum"].to_numpy(),
    })
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


class Run:
    """A finished run folder (see the module docstring for its files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        missing = [name for name in RUN_OUTPUTS if not (self.path / name).exists()]
        if missing:
            raise CrustCleanError(f"{self.path} is not a finished crust-clean run (missing {', '.join(missing)})")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def config(self) -> RunConfig:
        return from_dict(load_yaml(self.path / "config.yaml"))

    @property
    def scores(self) -> pd.DataFrame:
        """One row per training sample, sorted by ``score`` descending (higher = more likely mislabeled)."""
        return pd.read_csv(self.path / "scores.csv", dtype=_TEXT_COLUMNS)

    @property
    def samples(self) -> pd.DataFrame:
        """Every usable sample (train and val), in source order."""
        return pd.read_csv(self.path / "samples.csv", dtype={**_TEXT_COLUMNS, "row": "Int64"})

    @property
    def source(self) -> dict:
        """Where the samples came from (``source.json``): kind, source, split, columns."""
        return json.loads((self.path / "source.json").read_text())

    def predictions(self) -> pd.DataFrame:
        """The saved model on every sample: sample_id, predicted_label, confidence, logits (an array per row)."""
        return pd.read_parquet(self.path / "predictions.parquet")

    def review_table(self, *, top: int | None = None, threshold: float | None = None) -> pd.DataFrame:
        """Every sample (samples.csv order) with its scores (train samples), the saved model's prediction
        (``predicted_label`` = the robust model's, ``confidence``, ``logits``) and ``suspect``: the ``top``
        highest scores, score > ``threshold``, or by default the run's own rule (``scores.flag_suspects``, the
        ``suspect`` column of scores.csv). What exporters and manifests work from."""
        if top is not None and threshold is not None:
            raise BadInputError("give --top or --threshold, not both")
        if top is not None and top < 0:
            raise BadInputError("--top must be >= 0")
        table = self.samples.merge(self.predictions(), on="sample_id", how="left", validate="one_to_one")
        scores = self.scores.drop(columns=["path", "given_label", "predicted_label"])
        table = table.merge(scores, on="sample_id", how="left", validate="one_to_one")
        if top is not None:
            table["suspect"] = top_scores(table["score"], top)
        elif threshold is not None:
            table["suspect"] = is_suspect(table["score"], threshold)
        else:
            table["suspect"] = table["suspect"].fillna(False).astype(bool)  # val samples have no score
        return table

    def open_samples(self) -> Samples:
        """The run's samples re-read from their source, in ``samples.csv`` order (exporters read images from it).

        Raises CrustCleanError when a sample of the run is no longer in the source.
        """
        source = self.source
        options = self.config.data.source_options()
        samples = load_source(source["source"], **options)
        position = {sample_id: i for i, sample_id in enumerate(samples.sample_ids)}
        wanted = self.samples["sample_id"].tolist()
        missing = [s for s in wanted if s not in position]
        if missing:
            raise CrustCleanError(f"{len(missing)} samples of {self.path} are no longer in {source['source']}, "
                                  f"e.g. {missing[0]!r}")
        return samples.subset([position[s] for s in wanted])

    @property
    def metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text())

    @property
    def model_info(self) -> dict:
        return json.loads((self.path / "model.json").read_text())

    def ledger(self) -> pd.DataFrame:
        from .ledger import read_ledger

        return read_ledger(self.path / "ledger.parquet")

    def load_model(self):
        """The saved model as a timm model in eval mode (weights read with safetensors, no pickle)."""
        import timm

        info = self.model_info
        model = timm.create_model(
            info["architecture"], pretrained=True, num_classes=info["num_classes"],
            pretrained_cfg_overlay=dict(file=str(self.path / "model.safetensors"), num_classes=info["num_classes"]),
        )
        return model.eval()

    def predict_probs(self, images, *, batch_size: int = 256) -> np.ndarray:
        """(n, K) softmax of the saved model on an image store (``crust_clean.images``), eval transform."""
        import torch
        from timm.data import create_transform

        from .data import ImageDataset

        info = self.model_info
        transform = create_transform(
            input_size=(3, info["img_size"], info["img_size"]), mean=tuple(info["mean"]), std=tuple(info["std"]),
            interpolation=info["interpolation"], crop_pct=1.0, is_training=False,
        )
        model = self.load_model()
        dataset = ImageDataset(images, np.zeros(len(images), dtype=np.int64), transform)
        with torch.no_grad():
            return torch.cat([model(x).softmax(1) for x, _, _ in
                              torch.utils.data.DataLoader(dataset, batch_size=batch_size)]).numpy()

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
