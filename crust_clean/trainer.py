"""The CRUST training loop (Algorithm 1): warm-up on all data, then per epoch
proxies -> per-class coreset -> weighted mixup SGD on the coreset; ``selector="none"`` trains on all
data with the same bookkeeping (the plain cross-entropy baseline).

``train`` yields one ``EpochResult`` per epoch; the caller (``crust_clean.run.fit``) records the
ledger, metrics and checkpoints. No file I/O, no CLI here.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import MultiStepLRScheduler
from tqdm.auto import tqdm

from .config import RunConfig
from .data import EpochPairs, ImageDataset, PairImages, PairKey
from .distributed import SINGLE, Ranks, batch_plan, broadcast, eval_shards, gather_rows
from .errors import CrustCleanError
from .models import classifier_weight
from .proxies import compute_proxies
from .selection import Selection, select_coreset


@dataclass
class PassOutputs:
    """What the eval pass over the training samples measured (all (n,) arrays, n = training samples)."""

    loss: np.ndarray  # cross-entropy w.r.t. the given label
    predicted: np.ndarray  # argmax class
    prob_given: np.ndarray  # softmax probability of the given label
    proxies: torch.Tensor  # (n, d) gradient proxies (on the training device)
    logits: np.ndarray  # (n, K) float32


@dataclass
class EpochResult:
    epoch: int
    outputs: PassOutputs  # measured after this epoch's training
    selection: Selection | None  # the coreset trained on this epoch; None in warm-up / selector none
    train_loss: float
    val_accuracy: float | None
    val_loss: float | None
    lr: float
    selection_seconds: float  # proxies -> coreset, partners, weights
    eval_seconds: float  # forward pass over all training (and val) samples
    train_seconds: float
    epoch_seconds: float
    data_seconds: float  # of the train and eval seconds, time spent waiting for the next batch


class DataWait:
    """Counts the seconds a pass spends waiting for its DataLoader (decoding, augmenting, collating)."""

    def __init__(self):
        self.seconds = 0.0

    def batches(self, loader):
        iterator = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield batch


@dataclass
class Device:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype on CUDA, None on CPU

    @classmethod
    def resolve(cls, name: str) -> "Device":
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type != "cuda":
            return cls(device, None)
        return cls(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x


class EvalBatches:
    """One dataset's eval batches for this rank, in dataset order, from one DataLoader for the whole fit (its
    workers persist between passes). With several ranks each forwards its shard (``distributed.eval_shards``)."""

    def __init__(self, dataset: ImageDataset, *, cfg: RunConfig, workers: int, device: Device, ranks: Ranks = SINGLE):
        self.dataset = dataset
        batch_size = 2 * cfg.train.batch_size  # no gradients are kept: twice the training batch fits
        self.shards = eval_shards(len(dataset), batch_size, ranks.world) if ranks.active else None
        part = torch.utils.data.Subset(dataset, self.shards[ranks.rank].tolist()) if ranks.active else dataset
        # its own generator: without one, a DataLoader iterator draws a seed from the global torch RNG, which the
        # augmentations use, and a resumed run (one eval pass more) would then augment differently
        self.loader = torch.utils.data.DataLoader(
            part, batch_size=batch_size, shuffle=False, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=device.device.type == "cuda", generator=torch.Generator().manual_seed(0))


class _EpochBatches:
    """The training loader's batch sampler: the current epoch's batches of ``PairKey`` (set before each epoch)."""

    def __init__(self):
        self.batches: list[list[PairKey]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class TrainBatches:
    """Every epoch's training batches from one DataLoader (its workers persist between epochs)."""

    def __init__(self, train_set: ImageDataset, *, workers: int, device: Device):
        self.sampler = _EpochBatches()
        self.loader = torch.utils.data.DataLoader(
            PairImages(train_set), batch_sampler=self.sampler, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=device.device.type == "cuda", generator=torch.Generator().manual_seed(0))

    def epoch(self, pairs: EpochPairs, plan: list[list[int]], seed: int):
        """The loader, set to yield ``plan``'s batches of ``pairs`` (positions), augmented from ``seed``."""
        self.sampler.batches = [[pairs.key(p, seed) for p in batch] for batch in plan]
        return self.loader


@torch.no_grad()
def eval_pass(model, batches: EvalBatches, *, cfg: RunConfig, device: Device, progress: bool, want_proxies: bool,
              desc: str, wait: DataWait | None = None, ranks: Ranks = SINGLE) -> PassOutputs:
    """Forward every sample once in eval mode; losses, predictions, p(given) and gradient proxies.

    With several ranks each forwards its shard and every rank gets all the logits (``distributed``)."""
    model.eval()
    logits_all, labels_all = [], []
    for images, labels, _ in tqdm((wait or DataWait()).batches(batches.loader), total=len(batches.loader), desc=desc,
                                  leave=False, disable=not progress):
        with device.autocast():
            logits_all.append(model(device.images(images)).float())
        labels_all.append(labels.to(device.device))
    empty = torch.empty((0, model.num_classes), device=device.device)  # a rank left without a batch
    logits = gather_rows(torch.cat(logits_all) if logits_all else empty, batches.shards, ranks)
    labels = torch.as_tensor(batches.dataset.labels, device=device.device)
    probs = logits.softmax(1)
    proxies = torch.empty(0)
    if want_proxies:
        weight = classifier_weight(model).detach().float() if cfg.crust.proxy == "last-layer" else None
        proxies = compute_proxies(cfg.crust.proxy, probs, labels, weight)
    return PassOutputs(
        loss=F.cross_entropy(logits, labels, reduction="none").cpu().numpy(),
        predicted=logits.argmax(1).cpu().numpy(),
        prob_given=probs.gather(1, labels[:, None])[:, 0].cpu().numpy(),
        proxies=proxies,
        logits=logits.cpu().numpy(),
    )


def train_one_epoch(model, batches: TrainBatches, pairs: EpochPairs, optimizer, scaler, *, cfg: RunConfig,
                    device: Device, seed: int, progress: bool, desc: str, wait: DataWait | None = None,
                    ranks: Ranks = SINGLE) -> float:
    """One pass of weighted mixup SGD over ``pairs``; returns the mean weighted loss (this rank's samples).

    Batches follow ``distributed.batch_plan``: the same order for any number of ranks. A rank's loss is its
    share of the batch's summed loss over the batch size, so the gradient (averaged over ranks by DDP) is the
    batch mean's."""
    model.train()
    random.seed(seed)  # timm's crop/flip draw from Python's random; workers reseed it per epoch (PairImages)
    plan, batch_sizes = batch_plan(len(pairs), cfg.train.batch_size, seed, ranks)
    loaded = (wait or DataWait()).batches(batches.epoch(pairs, plan, seed))
    total, count = 0.0, 0
    for (x_m, y_m, x_p, y_p, lam, weight), batch_size in tqdm(zip(loaded, batch_sizes), total=len(plan), desc=desc,
                                                               leave=False, disable=not progress):
        y_m, y_p = y_m.to(device.device), y_p.to(device.device)
        lam, weight = lam.to(device.device), weight.to(device.device)
        x = lam[:, None, None, None] * x_m + (1 - lam[:, None, None, None]) * x_p
        with device.autocast():
            logits = model(device.images(x)).float()
        per_sample = lam * F.cross_entropy(logits, y_m, reduction="none") + (1 - lam) * F.cross_entropy(
            logits, y_p, reduction="none"
        )
        weighted = weight * per_sample
        loss = weighted.sum() * (ranks.world / batch_size)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(weighted.detach().sum())
        count += len(y_m)
    return total / max(count, 1)


@dataclass
class Optimisation:
    """What SGD carries from epoch to epoch besides the weights (checkpointed with them)."""

    optimizer: torch.optim.Optimizer
    scheduler: MultiStepLRScheduler
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, model, cfg: RunConfig, device: Device) -> "Optimisation":
        """Put ``model`` on the device, then build SGD with momentum (timm), the step schedule and the scaler."""
        t = cfg.train
        model.to(device.device)
        if device.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        optimizer = create_optimizer_v2(model, "momentum", lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum)
        scheduler = MultiStepLRScheduler(
            optimizer, decay_t=sorted({max(1, int(round(f * t.epochs))) for f in t.lr_decay_at}), decay_rate=0.1
        )
        scaler = torch.amp.GradScaler(device.device.type, enabled=device.amp_dtype == torch.float16)
        return cls(optimizer, scheduler, scaler)


def train(model, train_set: ImageDataset, eval_set: ImageDataset, val_set: ImageDataset | None, *,
          cfg: RunConfig, device: Device, workers: int, optimisation: Optimisation, start_epoch: int = 0,
          progress: bool = True, ranks: Ranks = SINGLE) -> Iterator[EpochResult]:
    """Run Algorithm 1 from ``start_epoch`` to ``cfg.train.epochs``, yielding after each epoch.

    ``train_set`` and ``eval_set`` hold the same training samples with the train and eval transforms;
    ``optimisation`` was made by ``Optimisation.create`` for ``model`` (and, when resuming, loaded from a
    checkpoint with the model and the global RNG). Randomness (loader order, augmentation, partners,
    mixup) derives from ``cfg.train.seed``, the epoch number and the global torch RNG, so a CPU run is
    repeatable, resumed or not. With several ``ranks`` (torchrun) the model trains wrapped in DDP and rank 0's
    coreset is used by all (see ``crust_clean.distributed``).
    """
    c, t = cfg.crust, cfg.train
    optimizer, scheduler, scaler = optimisation.optimizer, optimisation.scheduler, optimisation.scaler
    selecting = c.selector != "none"
    trained = evaluated = model
    if ranks.active:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.device.index] if device.device.type == "cuda"
                                          else None)
    if t.compile:  # the same module's weights: the caller's model stays the plain one (saved, checkpointed)
        trained, evaluated = (torch.compile(m, backend=t.compile) for m in (trained, model))
    train_batches = TrainBatches(train_set, workers=workers, device=device)
    eval_batches = EvalBatches(eval_set, cfg=cfg, workers=workers, device=device, ranks=ranks)
    val_batches = EvalBatches(val_set, cfg=cfg, workers=workers, device=device, ranks=ranks) \
        if val_set is not None and len(val_set) else None
    outputs = None
    if selecting and start_epoch >= c.warmup_epochs:  # the proxies that choose the first coreset
        outputs = eval_pass(evaluated, eval_batches, cfg=cfg, device=device, progress=progress, want_proxies=True,
                            desc="initial pass" if start_epoch == 0 else "resuming: proxies", ranks=ranks)

    for epoch in range(start_epoch, t.epochs):
        start = time.perf_counter()
        wait = DataWait()
        rng = np.random.default_rng([t.seed, epoch])
        selection = None
        if selecting and epoch >= c.warmup_epochs:
            if ranks.is_main:  # the others wait for its coreset: one selection, never two that drift apart
                groups = outputs.predicted if c.class_split == "predicted" else train_set.labels
                selection = select_coreset(
                    outputs.proxies, groups, fraction=c.coreset_fraction, selector=c.selector, rng=rng,
                    greedy=c.greedy, chunk_size=c.chunk_size, epsilon=c.stochastic_epsilon,
                    max_weight=c.max_weight, partition_size=c.partition_size,
                )
                lambdas = rng.beta(c.mixup_alpha, c.mixup_alpha, len(selection.medoids)) if c.mixup_alpha > 0 \
                    else 1.0
                lambdas = np.broadcast_to(lambdas, selection.medoids.shape)
            selection, lambdas = broadcast((selection, lambdas) if ranks.is_main else None, ranks)
            pairs = EpochPairs(selection.medoids, selection.partners, lambdas, selection.weights)
        else:
            pairs = EpochPairs.full_data(len(train_set))
        selected_at = time.perf_counter()

        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(trained, train_batches, pairs, optimizer, scaler, cfg=cfg, device=device,
                                     seed=t.seed * 100_003 + epoch, progress=progress, desc=f"epoch {epoch} train",
                                     wait=wait, ranks=ranks)
        if not np.isfinite(train_loss):
            raise CrustCleanError(f"training diverged in epoch {epoch} (loss is not finite): lower --lr")
        scheduler.step(epoch + 1)
        trained_at = time.perf_counter()

        outputs = eval_pass(evaluated, eval_batches, cfg=cfg, device=device, progress=progress,
                            want_proxies=selecting, desc=f"epoch {epoch} eval", wait=wait, ranks=ranks)
        val_accuracy = val_loss = None
        if val_batches is not None:
            val = eval_pass(evaluated, val_batches, cfg=cfg, device=device, progress=False,
                            want_proxies=False, desc="val", wait=wait, ranks=ranks)
            val_accuracy = float((val.predicted == val_set.labels).mean())
            val_loss = float(val.loss.mean())
        end = time.perf_counter()
        yield EpochResult(
            epoch=epoch, outputs=outputs, selection=selection, train_loss=train_loss,
            val_accuracy=val_accuracy, val_loss=val_loss, lr=lr,
            selection_seconds=selected_at - start, eval_seconds=end - trained_at,
            train_seconds=trained_at - selected_at, epoch_seconds=end - start, data_seconds=wait.seconds,
        )
