"""The CRUST training loop (Algorithm 1): warm-up on all data, then per epoch
proxies -> per-class coreset -> weighted mixup SGD on the coreset; ``selector="none"`` trains on all
data with the same bookkeeping (the plain cross-entropy baseline).

Every function gets its dependencies: the model, the data, and one ``TrainContext`` (the configuration, the
device, DataLoader workers, the ranks of a multi-process run, progress bars). ``train`` yields one
``EpochResult`` per epoch; the caller (``crust_clean.run``) keeps the books: ledger, metrics, checkpoints.
No file I/O, no CLI here. ``forward`` is the one inference pass: the eval pass of every epoch, the saved
model's pass over all samples, and ``Run.predict_probs`` run through it.
"""

from __future__ import annotations

import contextlib
import os
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

from ..config import RunConfig
from ..data.torch_datasets import EpochPairs, ImageDataset, PairImages, PairKey, TrainingData
from ..errors import CrustCleanError
from ..method.coreset_size import class_fractions, estimate_noise_rates
from ..method.proxies import compute_proxies
from ..method.selection import Selection, select_coreset
from .distributed import SINGLE, Ranks, batch_plan, broadcast, eval_shards, gather_rows
from .models import classifier_weight


@dataclass(frozen=True)
class Device:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype on CUDA, None on CPU
    #: the autocast dtype of a pass that only infers (the feature pass): the AMP dtype on CUDA; bfloat16 on a CPU
    #: that computes it natively (AVX-512 BF16 or AMX: Lite0's forward ran 2.1x faster on 2 cores, and the cached
    #: features are float16 anyway); else None
    inference_dtype: torch.dtype | None = None

    @classmethod
    def resolve(cls, name: str) -> "Device":
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return cls(device, amp, inference_dtype=amp)
        native = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return cls(device, None, inference_dtype=torch.bfloat16 if native else None)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def inference_autocast(self):
        dtype = self.inference_dtype
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device: images or trunk maps (N, C, H, W) channels-last (faster convolutions on a CPU too:
        a resnet10t training step at 64 px 0.53 s instead of 0.83 s on 2 cores); features (N, D) as they are."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    @property
    def name(self) -> str:
        """The hardware in words (run summaries)."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        import platform

        return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


@dataclass(frozen=True)
class TrainContext:
    """What every step of a fit computes with besides the model and the data."""

    cfg: RunConfig
    device: Device
    workers: int  # DataLoader workers
    ranks: Ranks = SINGLE
    progress: bool = False  # progress bars (rank 0 only)

    @classmethod
    def create(cls, cfg: RunConfig, *, ranks: Ranks = SINGLE, progress: bool = False) -> "TrainContext":
        """The configured device (with several ranks on CUDA, this rank's GPU: torchrun's LOCAL_RANK) and
        workers (``data.workers``; default none on CPU, where the model already uses every core, up to 8 with
        a GPU)."""
        name = cfg.train.device
        if ranks.active and (name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())):
            torch.cuda.set_device(ranks.local_rank)
            name = f"cuda:{ranks.local_rank}"
        device = Device.resolve(name)
        workers = cfg.data.workers
        if workers is None:
            workers = 0 if device.device.type == "cpu" else min(8, os.cpu_count() or 1)
        return cls(cfg, device, workers, ranks, progress and ranks.is_main)


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
    fractions: np.ndarray | None  # (K,) the share of each class kept (crust.coreset_from_noise), else None
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


class EvalBatches:
    """One dataset's eval batches for this rank, in dataset order, from one DataLoader for the whole fit (its
    workers persist between passes). With several ranks each forwards its shard (``distributed.eval_shards``).
    The batch size is twice the training batch unless given: no gradients are kept."""

    def __init__(self, dataset: ImageDataset, ctx: TrainContext, *, batch_size: int | None = None):
        self.dataset = dataset
        batch_size = batch_size or 2 * ctx.cfg.train.batch_size
        ranks = ctx.ranks
        self.shards = eval_shards(len(dataset), batch_size, ranks.world) if ranks.active else None
        part = torch.utils.data.Subset(dataset, self.shards[ranks.rank].tolist()) if ranks.active else dataset
        # its own generator: without one, a DataLoader iterator draws a seed from the global torch RNG, which the
        # augmentations use, and a resumed run (one eval pass more) would then augment differently
        self.loader = torch.utils.data.DataLoader(
            part, batch_size=batch_size, shuffle=False, num_workers=ctx.workers, persistent_workers=ctx.workers > 0,
            pin_memory=ctx.device.device.type == "cuda", generator=torch.Generator().manual_seed(0))


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

    def __init__(self, train_set: ImageDataset, ctx: TrainContext):
        self.sampler = _EpochBatches()
        self.loader = torch.utils.data.DataLoader(
            PairImages(train_set), batch_sampler=self.sampler, num_workers=ctx.workers,
            persistent_workers=ctx.workers > 0, pin_memory=ctx.device.device.type == "cuda",
            generator=torch.Generator().manual_seed(0))

    def epoch(self, pairs: EpochPairs, plan: list[list[int]], seed: int):
        """The loader, set to yield ``plan``'s batches of ``pairs`` (positions), augmented from ``seed``."""
        self.sampler.batches = [[pairs.key(p, seed) for p in batch] for batch in plan]
        return self.loader


@torch.no_grad()
def forward(model, batches: EvalBatches, ctx: TrainContext, *, desc: str, wait: DataWait | None = None,
            progress: bool | None = None, embed_into: np.ndarray | None = None) -> torch.Tensor:
    """(n, K) float32 logits of ``model`` in eval mode on every sample of ``batches``, in dataset order, on
    the training device. With ``embed_into`` (an (n, D) float16 array, e.g. a memory map: ``pooled_width`` gives
    D), each batch's pooled features (timm's ``forward_head(pre_logits=True)``, the classifier's input) are written
    into its rows as the batch is done: memory holds one batch of them. With several ranks each forwards its shard,
    writes its own rows, and every rank gets all the logits."""
    model.eval()
    logits = []
    shown = ctx.progress if progress is None else progress
    first = 0  # the dataset row of this rank's next batch (shards deal out whole, contiguous batches)
    rows = batches.shards[ctx.ranks.rank] if batches.shards is not None else None
    for images, _, _ in tqdm((wait or DataWait()).batches(batches.loader), total=len(batches.loader), desc=desc,
                             leave=False, disable=not shown):
        with ctx.device.autocast():
            if embed_into is not None:  # what timm's forward does, in two steps
                features = model.forward_features(ctx.device.images(images))
                pooled = model.forward_head(features, pre_logits=True).half().cpu().numpy()
                start = first if rows is None else int(rows[first])
                embed_into[start:start + len(pooled)] = pooled
                first += len(pooled)
                logits.append(model.forward_head(features).float())
            else:
                logits.append(model(ctx.device.images(images)).float())
    empty = torch.empty((0, model.num_classes), device=ctx.device.device)  # a rank left without a batch
    return gather_rows(torch.cat(logits) if logits else empty, batches.shards, ctx.ranks)


@torch.no_grad()
def pooled_width(model, dataset: ImageDataset, ctx: TrainContext) -> int:
    """D of ``model``'s pooled features (``forward_head(pre_logits=True)``), from one sample of ``dataset``."""
    model.eval()
    with ctx.device.autocast():
        return model.forward_head(model.forward_features(ctx.device.images(dataset[0][0][None])),
                                  pre_logits=True).shape[1]


def eval_pass(model, batches: EvalBatches, ctx: TrainContext, *, want_proxies: bool, desc: str,
              wait: DataWait | None = None, progress: bool | None = None,
              embed_into: np.ndarray | None = None) -> PassOutputs:
    """Forward every sample once in eval mode; losses, predictions, p(given), gradient proxies (``crust.proxy``)
    and, with ``embed_into``, the pooled features written into it (``forward``)."""
    logits = forward(model, batches, ctx, desc=desc, wait=wait, progress=progress, embed_into=embed_into)
    labels = torch.as_tensor(batches.dataset.labels, device=ctx.device.device)
    probs = logits.softmax(1)
    proxies = torch.empty(0)
    if want_proxies:
        weight = classifier_weight(model).detach().float() if ctx.cfg.crust.proxy == "last-layer" else None
        proxies = compute_proxies(ctx.cfg.crust.proxy, probs, labels, weight)
    return PassOutputs(
        loss=F.cross_entropy(logits, labels, reduction="none").cpu().numpy(),
        predicted=logits.argmax(1).cpu().numpy(),
        prob_given=probs.gather(1, labels[:, None])[:, 0].cpu().numpy(),
        proxies=proxies,
        logits=logits.cpu().numpy(),
    )


def predict_probs(model, dataset: ImageDataset, ctx: TrainContext, *, batch_size: int) -> np.ndarray:
    """(n, K) softmax of ``model`` on every sample of ``dataset`` (its transform; labels unused)."""
    model.to(ctx.device.device)
    return forward(model, EvalBatches(dataset, ctx, batch_size=batch_size), ctx, desc="predicting") \
        .softmax(1).cpu().numpy()


@dataclass
class Optimisation:
    """What SGD carries from epoch to epoch besides the weights (checkpointed with them)."""

    optimizer: torch.optim.Optimizer
    scheduler: MultiStepLRScheduler
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, model, ctx: TrainContext) -> "Optimisation":
        """Put ``model`` on the device, then build SGD with momentum (timm), the step schedule and the scaler."""
        t, device = ctx.cfg.train, ctx.device
        model.to(device.device, memory_format=torch.channels_last)  # as the batches (Device.images)
        optimizer = create_optimizer_v2(model, "momentum", lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum)
        scheduler = MultiStepLRScheduler(
            optimizer, decay_t=sorted({max(1, int(round(f * t.epochs))) for f in t.lr_decay_at}), decay_rate=0.1
        )
        scaler = torch.amp.GradScaler(device.device.type, enabled=device.amp_dtype == torch.float16)
        return cls(optimizer, scheduler, scaler)


def train_one_epoch(model, batches: TrainBatches, pairs: EpochPairs, optimisation: Optimisation, ctx: TrainContext,
                    *, seed: int, desc: str, wait: DataWait | None = None) -> float:
    """One pass of weighted mixup SGD over ``pairs``; returns the mean weighted loss (this rank's samples).

    Batches follow ``distributed.batch_plan``: the same order for any number of ranks. A rank's loss is its
    share of the batch's summed loss over the batch size, so the gradient (averaged over ranks by DDP) is the
    batch mean's."""
    model.train()
    optimizer, scaler, device, world = optimisation.optimizer, optimisation.scaler, ctx.device, ctx.ranks.world
    random.seed(seed)  # timm's crop/flip draw from Python's random; workers reseed it per epoch (PairImages)
    plan, batch_sizes = batch_plan(len(pairs), ctx.cfg.train.batch_size, seed, ctx.ranks)
    loaded = (wait or DataWait()).batches(batches.epoch(pairs, plan, seed))
    total, count = 0.0, 0
    for (x_m, y_m, x_p, y_p, lam, weight), batch_size in tqdm(zip(loaded, batch_sizes), total=len(plan), desc=desc,
                                                               leave=False, disable=not ctx.progress):
        y_m, y_p = y_m.to(device.device), y_p.to(device.device)
        lam, weight = lam.to(device.device), weight.to(device.device)
        mix = lam.view(-1, *[1] * (x_m.dim() - 1))  # images or features
        x = mix * x_m + (1 - mix) * x_p
        with device.autocast():
            logits = model(device.images(x)).float()
        per_sample = lam * F.cross_entropy(logits, y_m, reduction="none") + (1 - lam) * F.cross_entropy(
            logits, y_p, reduction="none"
        )
        weighted = weight * per_sample
        loss = weighted.sum() * (world / batch_size)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(weighted.detach().sum())
        count += len(y_m)
    return total / max(count, 1)


def coreset_fractions(outputs: PassOutputs, given: np.ndarray, ctx: TrainContext) -> np.ndarray:
    """(K,) the share of each class the coreset keeps, sized to the noise the model of ``outputs`` estimates."""
    probs = torch.from_numpy(outputs.logits).double().softmax(1).numpy()
    noise = estimate_noise_rates(probs, given, probs.shape[1])
    return class_fractions(noise, margin=ctx.cfg.crust.noise_margin, floor=ctx.cfg.crust.coreset_fraction)


def select_pairs(outputs: PassOutputs, given: np.ndarray, ctx: TrainContext, *, epoch: int,
                 fractions: np.ndarray | None = None) -> tuple[Selection, EpochPairs]:
    """This epoch's coreset from the last eval pass and its training pairs (medoid, partner, mixup lambda,
    weight). Rank 0 selects and broadcasts: one selection, never several that drift apart."""
    c = ctx.cfg.crust
    selection = lambdas = None
    if ctx.ranks.is_main:
        rng = np.random.default_rng([ctx.cfg.train.seed, epoch])
        groups = outputs.predicted if c.class_split == "predicted" else given
        selection = select_coreset(outputs.proxies, groups, crust=c, rng=rng, fractions=fractions)
        lambdas = rng.beta(c.mixup_alpha, c.mixup_alpha, len(selection.medoids)) if c.mixup_alpha > 0 else 1.0
        lambdas = np.broadcast_to(lambdas, selection.medoids.shape)
    selection, lambdas = broadcast((selection, lambdas) if ctx.ranks.is_main else None, ctx.ranks)
    return selection, EpochPairs(selection.medoids, selection.partners, lambdas, selection.weights)


def _wrapped(model, ctx: TrainContext):
    """(the module that trains: DDP with several ranks; the module that evaluates), each compiled with
    ``train.compile``. Both share the model's weights: the caller's model stays the plain one (saved,
    checkpointed)."""
    trained = evaluated = model
    if ctx.ranks.active:
        from torch.nn.parallel import DistributedDataParallel

        cuda = ctx.device.device.type == "cuda"
        trained = DistributedDataParallel(model, device_ids=[ctx.device.device.index] if cuda else None)
    if ctx.cfg.train.compile:
        trained, evaluated = (torch.compile(m, backend=ctx.cfg.train.compile) for m in (trained, model))
    return trained, evaluated


def train(model, data: TrainingData, optimisation: Optimisation, ctx: TrainContext, *, start_epoch: int = 0,
          fractions: np.ndarray | None = None) -> Iterator[EpochResult]:
    """Run Algorithm 1 from ``start_epoch`` to ``train.epochs``, yielding after each epoch.

    With ``crust.coreset_from_noise`` each class's share of the coreset is sized once, at the first selection
    epoch, from the warm-up model's estimate of its noise (``coreset_fractions``); a resumed run passes the
    ``fractions`` it had.

    ``optimisation`` was made by ``Optimisation.create`` for ``model`` (and, when resuming, loaded from a
    checkpoint with the model and the global RNG). Randomness (loader order, augmentation, partners,
    mixup) derives from ``train.seed``, the epoch number and the global torch RNG, so a CPU run is
    repeatable, resumed or not. With several ranks (torchrun) the model trains wrapped in DDP and rank 0's
    coreset is used by all (see ``crust_clean.train.distributed``).
    """
    c, t = ctx.cfg.crust, ctx.cfg.train
    selecting = c.selector != "none"
    trained, evaluated = _wrapped(model, ctx)
    train_batches = TrainBatches(data.train, ctx)
    eval_batches = EvalBatches(data.eval, ctx)
    val_batches = EvalBatches(data.val, ctx) if data.val is not None and len(data.val) else None
    outputs = None
    if selecting and start_epoch >= c.warmup_epochs:  # the proxies that choose the first coreset
        outputs = eval_pass(evaluated, eval_batches, ctx, want_proxies=True,
                            desc="initial pass" if start_epoch == 0 else "resuming: proxies")
    for epoch in range(start_epoch, t.epochs):
        start = time.perf_counter()
        wait = DataWait()
        selection = None
        if selecting and epoch >= c.warmup_epochs:
            if c.coreset_from_noise and fractions is None:
                fractions = coreset_fractions(outputs, data.train.labels, ctx)
            selection, pairs = select_pairs(outputs, data.train.labels, ctx, epoch=epoch, fractions=fractions)
        else:
            pairs = EpochPairs.full_data(len(data.train))
        selected_at = time.perf_counter()
        lr = optimisation.optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(trained, train_batches, pairs, optimisation, ctx, seed=t.seed * 100_003 + epoch,
                                     desc=f"epoch {epoch} train", wait=wait)
        if not np.isfinite(train_loss):
            raise CrustCleanError(f"training diverged in epoch {epoch} (loss is not finite): lower --lr")
        optimisation.scheduler.step(epoch + 1)
        trained_at = time.perf_counter()
        outputs = eval_pass(evaluated, eval_batches, ctx, want_proxies=selecting, desc=f"epoch {epoch} eval", wait=wait)
        val = eval_pass(evaluated, val_batches, ctx, want_proxies=False, desc="val", wait=wait, progress=False) \
            if val_batches is not None else None
        end = time.perf_counter()
        yield EpochResult(
            epoch=epoch, outputs=outputs, selection=selection, fractions=fractions, train_loss=train_loss,
            val_accuracy=float((val.predicted == data.val.labels).mean()) if val is not None else None,
            val_loss=float(val.loss.mean()) if val is not None else None, lr=lr,
            selection_seconds=selected_at - start, eval_seconds=end - trained_at,
            train_seconds=trained_at - selected_at, epoch_seconds=end - start, data_seconds=wait.seconds,
        )
