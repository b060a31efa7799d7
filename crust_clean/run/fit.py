"""``fit`` and ``resume``: assemble a fit from its parts and run it, writing a run folder (``run.folder``).

The path of the data: source (``data.sources``) -> decoded images (``data.images``) -> timm model
(``train.models``) -> epochs of CRUST (``train.trainer``: proxies, coreset, weighted mixup SGD) -> the books of
each epoch (``run.recorder``: ledger, metrics, checkpoint) -> the saved model's pass over every sample -> with
``train.folds``, the fold fits that score every training sample out of fold (``run.folds``) -> the finished run
folder (``run.folder.Run``), which the exporters and the report read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

from ..config import RunConfig, resolve_config
from ..data.sources import Samples, load_source, read_true_labels, source_spec, stratified_split
from ..train.distributed import SINGLE, Ranks, barrier, broadcast, from_environment, leave_group
from .folder import Run, RunFolder, default_run_dir


def fit(source: str | os.PathLike, *, out: str | os.PathLike | None = None,
        config: RunConfig | Mapping[str, Any] | str | os.PathLike | None = None,
        overwrite: bool = False, progress: bool = True, **options: Any) -> Run | None:
    """Train a noise-robust model with CRUST on ``source`` and write a run folder with the ledger and scores.

    Parameters
    ----------
    source : path or str
        Any source ``crust_clean.load_source`` reads: an ImageFolder tree ``source/<class>/**/<image>``
        (sample ids = paths relative to ``source``), a ``.csv`` / ``.jsonl`` manifest of ``path,label`` rows,
        a Hugging Face dataset (folder, parquet, ``hf:OWNER/NAME``), a FiftyOne dataset (``fo:NAME``). The
        source is only read.
    out : path, optional
        Run folder; default ``runs/<timestamp>-<model>-<dataset name>``. An existing non-empty
        folder is an error unless ``overwrite=True``.
    config : RunConfig, mapping, YAML path or shipped config name, optional
        Base configuration (e.g. ``"cpu-quick"`` or an earlier ``RUN/config.yaml``).
    progress : bool
        Show progress bars and a line per epoch on stderr.
    **options
        Any config field by name, overriding ``config``: ``epochs=10``, ``selector="facility-location"``,
        ``model="resnet18"``, ``crust={"proxy": "logits"}``, ``"train.lr"=0.05`` (see ``crust_clean.config``).

    Returns
    -------
    Run
        The finished run; ``run.scores`` is the suspect ranking (higher score = more likely mislabeled). Under
        torchrun, None on ranks other than 0 when they are done (on cached features: after the feature pass).

    Examples
    --------
    >>> run = crust_clean.fit("images/", out="runs/first", epochs=20)      # doctest: +SKIP
    >>> run.scores.head(10)[["sample_id", "given_label", "predicted_label", "score"]]  # doctest: +SKIP
    """
    from ..train.models import prepare

    cfg = resolve_config(config, **options)
    prepare(cfg.model)  # before any work: the model exists, its pretrained weights are at hand
    ranks = from_environment(cfg.train.device)  # several processes under torchrun, else one
    samples = load_source(source, **cfg.data.source_options())
    folder = RunFolder(broadcast(Path(out) if out is not None else default_run_dir(cfg.model.name, samples.name),
                                 ranks))
    folder.check_new(overwrite=overwrite, dataset_root=samples.root)
    barrier(ranks)  # every rank has looked at the folder before rank 0 writes into it
    if ranks.is_main:
        folder.clear_stale()
    barrier(ranks)
    return _fit(source_spec(source), samples, folder, cfg, ranks, progress=progress, resume=False)


def resume(run: str | os.PathLike, *, progress: bool = True) -> Run | None:
    """Continue a fit that was killed or interrupted, from the checkpoint of its last finished epoch.

    The run's own ``config.yaml`` and ``source.json`` are used; the epoch in progress when it stopped is
    trained again. On CPU the finished run's ledger, scores and weights equal those of a run that was never
    interrupted.

    Raises BadInputError when ``run`` is not a run folder, has already finished, has no finished epoch yet
    (start it again with ``overwrite=True``), or its source no longer holds the same samples.
    """
    folder = RunFolder(run)
    folder.check_resumable()
    cfg = folder.read_config()
    ranks = from_environment(cfg.train.device)
    source = folder.read_source()["source"]
    samples = load_source(source, **cfg.data.source_options())
    return _fit(source, samples, folder, cfg, ranks, progress=progress, resume=True)


def _fit(source: str, samples: Samples, folder: RunFolder, cfg: RunConfig, ranks: Ranks, *, progress: bool,
         resume: bool) -> Run | None:
    """Read the samples (images, or a frozen backbone's features), split, train (from the checkpoint when
    resuming) and write every output of a run. With several ranks all of them train and rank 0 alone writes
    (``crust_clean.train.distributed``); on cached features (``--train head`` / ``last-stages``) the ranks share
    the feature pass, then rank 0 trains alone (the head costs a fraction of the pass) and the others return None."""
    from dataclasses import replace

    from ..data.torch_datasets import ImageDataset, TrainingData
    from ..train import models, trainable
    from ..train.checkpoint import state_copy
    from ..train.trainer import EvalBatches, Optimisation, TrainContext, eval_pass, pooled_width, train
    from .folds import out_of_fold
    from .recorder import Recorder

    started = time.perf_counter()
    ctx = TrainContext.create(cfg, ranks=ranks, progress=progress)
    truth = read_true_labels(cfg.data.true_labels, samples) if cfg.data.true_labels else None
    subject = trainable.prepare(samples, truth, cfg, ctx, cache_file=folder.cache_file(ranks.rank, cfg.model.img_size))
    samples, labels, truth, model = subject.samples, subject.samples.labels, subject.truth, subject.module
    if ranks.active and cfg.model.train != "all":
        leave_group(ranks)
        if not ranks.is_main:
            return None
        ranks = SINGLE
        ctx = replace(ctx, ranks=SINGLE)
    initial = state_copy(model) if cfg.train.folds else None
    train_idx, val_idx = stratified_split(labels, cfg.data.val_fraction, cfg.train.seed)
    if resume:
        folder.check_same_samples(samples)
    elif ranks.is_main:
        folder.write_start(cfg, source, samples, train_idx, val_idx)
    data = TrainingData.split(subject.store, labels, train_idx, val_idx, train_transform=subject.train_transform,
                              eval_transform=subject.eval_transform)
    optimisation = Optimisation.create(model, ctx)
    recorder = Recorder(folder, [samples.sample_ids[i] for i in train_idx], labels[train_idx],
                        is_noisy=truth[train_idx] != labels[train_idx] if truth is not None else None,
                        writes=ranks.is_main, progress=ctx.progress, device=ctx.device.device)
    start_epoch = recorder.resume(model, optimisation) if resume else 0
    with recorder.interruptible():
        for result in train(model, data, optimisation, ctx, start_epoch=start_epoch, fractions=recorder.fractions):
            recorder.record(result, model, optimisation)

    saved = recorder.saved_model(model, last_epoch=cfg.train.epochs - 1)
    model.load_state_dict(saved.state)
    everything = EvalBatches(ImageDataset(subject.store, labels, subject.eval_transform), ctx)
    with folder.embeddings_writer((len(labels), pooled_width(model, everything.dataset, ctx)), ranks) as embeddings:
        robust = eval_pass(model, everything, ctx, want_proxies=False, desc="robust model", embed_into=embeddings)
    with recorder.interruptible():
        scored_out_of_fold = out_of_fold(subject, initial, train_idx, ctx, folder) if cfg.train.folds else None
    if ranks.is_main:
        info = models.saved_model_info(cfg.model, subject.data_cfg, samples.class_names, epoch=saved.epoch,
                                       chosen_by="val_accuracy" if len(val_idx) else "last_epoch", **subject.info)
        facts = {"n_val": len(val_idx), "wall_seconds": round(time.perf_counter() - started, 2), "resumed": resume,
                 **subject.facts, "device": str(ctx.device.device), "device_name": ctx.device.name,
                 "processes": ranks.world}
        recorder.finish(samples, train_idx, robust, measures=subject.measures,
                        saved=replace(saved, state=subject.saved_state(saved.state)), model_info=info,
                        run_facts=facts, out_of_fold=scored_out_of_fold)
    barrier(ranks)  # the others return the run once rank 0 has written it
    if subject.facts["cache"] == "disk" and ranks.is_main:
        folder.remove_cache()
    return Run(folder.path)
