"""Cached frozen features: the frozen-feature fast path (``model.train: head``: a pretrained backbone is frozen, its
pooled features are computed once per sample and cached on disk, and CRUST trains a head on them) and the trunk
of partial fine-tuning (``last-stages``: the frozen early stages' output maps, cached the same way, on which the
last stages train; ``train.stages``).

The feature pass reads every image once (a bad image is found here, as the decoding pass of a full fit finds it),
applies the eval transform and, with ``data.feature_views`` V > 0, V draws of the train augmentation, and writes
the frozen part's output (timm's pooled features, the classifier's input; or the trunk's (C, H, W) maps) as
float16 into ``(V + 1, N, ...)``, batch by batch (memory: one batch). The cache entry is keyed by the model, its
weights, the data config, the views, the cut (for a trunk) and the samples (``Samples.fingerprint``): a second
fit on the same data and backbone reads it instead (``data.feature_cache``).

The head trains like any network here (``train.trainer``): its datasets read feature rows instead of images (the
eval view, or each epoch one augmented view), mixup mixes features, the last-layer proxy is (p - y) W of the head.
With a linear head the per-sample gradient of the training loss is exactly (p - y) h (outer product with the
features h; and p - y for the bias): CRUST's gradient picture holds for the head without the deep-network
approximation, while selection still runs on the proxy (p - y) W, its image on the features' side. The top of a
partial fine-tuning trains the same way on maps (``train.stages``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import staged_folder
from ..config import RunConfig, user_cache
from ..data.quality import measure, no_measures
from ..data.sources import Samples
from ..errors import CrustCleanError
from .checkpoint import state_copy

#: Bumped when the cached arrays change meaning.
FEATURE_FORMAT = 1
FEATURES, META, QUALITY = "features.npy", "meta.json", "quality.npy"


class Head(torch.nn.Module):
    """A classifier on pooled features: one Linear layer, or Linear -> GELU -> Linear, on the features standardised
    with ``mean`` and ``std`` (per dimension; SGD on raw pooled features, whose dimensions differ in scale by orders
    of magnitude, barely moves). Its ``classifier`` is laid out as it replaces the timm model's own, the
    standardisation folded into the first Linear (``folded_state``); ``get_classifier`` is the last Linear."""

    def __init__(self, in_features: int, num_classes: int, *, hidden: int | None = None,
                 mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("mean", torch.zeros(in_features) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(in_features) if std is None else std.float())
        if hidden:
            self.classifier = torch.nn.Sequential(torch.nn.Linear(in_features, hidden), torch.nn.GELU(),
                                                  torch.nn.Linear(hidden, num_classes))
        else:  # a new linear head starts at zero, as on a pretrained body (train.models.create_model)
            self.classifier = torch.nn.Linear(in_features, num_classes)
            torch.nn.init.zeros_(self.classifier.weight)
            torch.nn.init.zeros_(self.classifier.bias)

    def get_classifier(self) -> torch.nn.Linear:
        return self.classifier[-1] if isinstance(self.classifier, torch.nn.Sequential) else self.classifier

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """timm's split of a forward pass, so the fit reads a head as it reads a timm model: the features are
        the input; ``forward_head(pre_logits=True)`` gives them back as they are (the run's embeddings)."""
        return features

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.classifier((features - self.mean) / self.std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(features))

    @staticmethod
    def folded_state(state: dict) -> dict:
        """The classifier's state (keys without ``classifier.``) acting on raw features: W (x - m) / s + b =
        (W / s) x + (b - (W / s) m)."""
        first = "0." if "classifier.0.weight" in state else ""
        folded = {k.removeprefix("classifier."): v for k, v in state.items() if k.startswith("classifier.")}
        weight = folded[first + "weight"] / state["std"]
        folded[first + "weight"] = weight
        folded[first + "bias"] = folded[first + "bias"] - weight @ state["mean"]
        return folded


class FeatureStore:
    """The cached features as a sample store: item i = sample i's (V + 1, ...) float16 views (view 0: eval) of
    its pooled features (D,) or its trunk maps (C, H, W)."""

    def __init__(self, array: np.ndarray, rows: np.ndarray | None = None):
        self.array = array
        self.rows = np.arange(array.shape[1]) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.array[:, self.rows[i]]

    def take(self, indices) -> "FeatureStore":
        return FeatureStore(self.array, self.rows[np.asarray(indices, dtype=np.int64)])

    @property
    def width(self) -> int:
        return self.array.shape[2]

    def statistics(self, *, rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of each feature over the eval view of every sample (no label is read);
        a dimension that never varies gets std 1. Computed in blocks of ``rows`` (float64)."""
        total, squares = np.zeros(self.width), np.zeros(self.width)
        for start in range(0, len(self), rows):
            block = self.array[0, self.rows[start:start + rows]].astype(np.float64)
            total += block.sum(0)
            squares += (block * block).sum(0)
        mean = total / len(self)
        std = np.sqrt(np.maximum(squares / len(self) - mean * mean, 0))
        return torch.from_numpy(mean), torch.from_numpy(np.where(std > 1e-6, std, 1.0))


def eval_view(features: np.ndarray) -> torch.Tensor:
    """The features of the eval transform (the head's eval transform)."""
    return torch.from_numpy(features[0].astype(np.float32))


def random_view(features: np.ndarray) -> torch.Tensor:
    """One augmented view, drawn with Python's ``random`` (seeded per epoch like timm's augmentations); the eval
    view when none was computed (the head's train transform)."""
    view = random.randrange(1, len(features)) if len(features) > 1 else 0
    return torch.from_numpy(features[view].astype(np.float32))


@dataclass
class Backbone:
    """A frozen pretrained backbone: the module whose output is cached (pooled features, or with ``cut`` the
    trunk's maps), its timm data config, the whole timm model's state (a new head included: what the saved model
    starts from) and its classifier's name; for ``last-stages`` the cut and the trainable top."""

    module: torch.nn.Module
    data_cfg: dict
    state: dict
    classifier: str
    cut: str | None = None  # last-stages: the first trained stage (the cached maps are its input)
    top: torch.nn.Module | None = None


def frozen_backbone(cfg: RunConfig, num_classes: int) -> Backbone:
    from . import models

    model = models.create_model(cfg.model, num_classes)  # pretrained body, a zero head
    state = state_copy(model)
    classifier = models.classifier_name(model)
    data_cfg = models.data_config(model, cfg.model)
    if cfg.model.train == "last-stages":
        from .stages import split

        cut = split(model, cfg.model.stages, img_size=data_cfg["input_size"][-1])
        return Backbone(cut.trunk, data_cfg, state, classifier, cut=cut.cut, top=cut.top)
    model.reset_classifier(0)  # timm's pooled features: the classifier's input
    return Backbone(model, data_cfg, state, classifier)


def features_of(backbone: Backbone, samples: Samples, cfg: RunConfig, ctx) -> "Features":
    """The features of ``samples`` (eval view, then ``data.feature_views`` augmented ones): cached, or computed."""
    from . import models

    train_tf, eval_tf = models.build_transforms(backbone.data_cfg, cfg.train)
    return load_or_extract(backbone.module, samples, [eval_tf] + [train_tf] * cfg.data.feature_views,
                           feature_description(backbone, samples, cfg, ctx), ctx, cache_root(cfg))


def feature_description(backbone: Backbone, samples: Samples, cfg: RunConfig, ctx) -> dict:
    """What ``features_of`` keys the cache entry of ``samples`` by (``cache_entry`` names it)."""
    from . import models

    cpu_bf16 = ctx.device.device.type == "cpu" and ctx.device.inference_dtype is not None
    return cache_description(cfg, samples, backbone.data_cfg, models.weights_identity(cfg.model), cut=backbone.cut,
                             precision="bfloat16 on the CPU" if cpu_bf16 else None)


@dataclass
class Features:
    """The features of a source's samples and the samples whose image could not be decoded."""

    store: FeatureStore
    failed: list[tuple[int, str]]
    cached: bool  # read from the cache (no feature pass ran)
    seconds: float  # the feature pass's wall time (0 when cached)
    measures: np.ndarray  # (N, len(data.quality.MEASURES)): each image's quality, measured in the pass (NaN: failed)


def cache_root(cfg: RunConfig) -> Path:
    return Path(cfg.data.feature_cache) if cfg.data.feature_cache else user_cache("features")


def cache_entry(description: dict, root: Path) -> Path:
    """The folder of the cache entry of ``description`` under ``root``: ``FEATURES`` and ``META`` in it."""
    import hashlib

    return root / hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def cache_description(cfg: RunConfig, samples: Samples, data_cfg: dict, weights: str, *, cut: str | None = None,
                      precision: str | None = None) -> dict:
    """Everything the features depend on; its digest names the cache entry (``cut``: a trunk's maps, the input of
    that stage; pooled features without, as before there were trunks; ``precision``: a CPU pass in bfloat16, else
    float32 or CUDA's AMP, as before)."""
    views = cfg.data.feature_views
    return {
        "format": FEATURE_FORMAT, "model": cfg.model.name, "weights": weights,
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(data_cfg.items())},
        "views": views, "augment": {"on": cfg.train.augment, "crop_scale": cfg.train.crop_scale,
                                    "hflip": cfg.train.hflip, "seed": cfg.train.seed} if views else None,
        "samples": samples.fingerprint(), "count": len(samples), **({"cut": cut} if cut else {}),
        **({"precision": precision} if precision else {}),
    }


def load_or_extract(backbone: torch.nn.Module, samples: Samples, transforms: list, description: dict, ctx,
                    root: Path) -> Features:
    """The features of ``samples`` from the cache entry of ``description``, computed into it first when missing.

    ``transforms``: the eval transform, then one train transform per augmented view. With several ranks
    (torchrun) the pass is sharded: each rank computes its eval batches (``distributed.eval_shards``, so every
    batch is the one a single process computes) into the one file rank 0 creates, and rank 0 completes the entry."""
    from .distributed import barrier, broadcast, gather_objects, staged_on_main

    ranks = ctx.ranks
    entry = cache_entry(description, root)
    cached = broadcast((entry / META).is_file(), ranks)  # rank 0's answer: the others must not race its rename
    seconds = 0.0
    if not cached:
        with staged_on_main(staged_folder(entry), ranks) as build:
            shape = output_shape(backbone, transforms[0])
            if ranks.is_main:  # the whole arrays, written in place by every rank
                np.lib.format.open_memmap(build / FEATURES, mode="w+", dtype=np.float16,
                                          shape=(len(transforms), len(samples), *shape)).flush()
                _write_array(build / QUALITY, no_measures(len(samples)))
            barrier(ranks)
            seconds, failed = _extract(backbone, samples, transforms, build, ctx,
                                       seed=(description["augment"] or {}).get("seed", 0))
            failed = sorted(f for part in gather_objects(failed, ranks) for f in part)
            if ranks.is_main:
                (build / META).write_text(json.dumps({"description": description, "shape": list(shape),
                                                      "failed": failed, "seconds": round(seconds, 2),
                                                      "processes": ranks.world,
                                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
        barrier(ranks)  # rank 0 has put the entry in place
    meta = json.loads((entry / META).read_text())
    try:
        array = np.load(entry / FEATURES, mmap_mode="r")
    except (OSError, ValueError):
        array = None
    shape = tuple(meta["shape"]) if "shape" in meta else (meta["width"],)  # "width": entries of pooled features only
    if array is None or array.shape != (len(transforms), len(samples), *shape):
        raise CrustCleanError(f"the feature cache {entry} is damaged: remove it and fit again")
    return Features(FeatureStore(array), [tuple(f) for f in meta["failed"]], cached, seconds,
                    _cached_measures(entry, samples, ctx))


def _cached_measures(entry: Path, samples: Samples, ctx) -> np.ndarray:
    """The quality measures kept in the cache ``entry``; an entry written before they were is measured by one
    decoding pass now (rank 0), and they join it."""
    from ..data.images import check_images
    from .distributed import barrier

    if not (entry / QUALITY).is_file() and ctx.ranks.is_main:
        _write_array(entry / QUALITY, check_images(samples.images, workers=ctx.workers, progress=ctx.progress)[1])
    barrier(ctx.ranks)
    return np.load(entry / QUALITY)


def _write_array(path: Path, array: np.ndarray) -> None:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


class _Views(torch.utils.data.Dataset):
    """Item i: (the (V + 1, 3, H, W) transforms of image i, its quality measures (``data.quality``), '' or why it
    cannot be decoded). Each item seeds the augmentations from (seed, i), so the views do not depend on workers or
    batch order."""

    def __init__(self, images, transforms: list, seed: int):
        self.images, self.transforms, self.seed = images, transforms, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        try:
            image = self.images[i]
        except CrustCleanError as err:
            return None, no_measures(1)[0], str(err)
        random.seed(self.seed * 1_000_003 + i)
        torch.manual_seed(self.seed * 1_000_003 + i)
        return torch.stack([transform(image) for transform in self.transforms]), measure(image), ""


def _collate(items):
    shape = next((x.shape for x, _, _ in items if x is not None), None)
    views = [x if x is not None else torch.zeros(shape) for x, _, _ in items] if shape is not None else []
    return (torch.stack(views) if views else None), np.stack([m for _, m, _ in items]), [r for _, _, r in items]


def output_shape(backbone: torch.nn.Module, eval_tf) -> tuple[int, ...]:
    """The shape of one sample's output of ``backbone`` (pooled (D,), or a trunk's (C, H, W)): a blank image through
    the eval transform (which resizes it to the input size) and the backbone."""
    from PIL import Image

    with torch.inference_mode():
        return tuple(backbone.eval()(eval_tf(Image.new("RGB", (32, 32)))[None]).shape[1:])


def _extract(backbone, samples: Samples, transforms: list, build: Path, ctx, *, seed: int):
    """Write the features of this rank's samples (all of them in one process) into ``build``'s ``FEATURES``, a .npy
    of (V + 1, N, *shape) float16 that exists, batch by batch through a memory map, and their quality measures
    into its ``QUALITY``; returns (seconds, failed)."""
    from tqdm.auto import tqdm

    from .distributed import eval_shards

    start = time.perf_counter()
    device, ranks = ctx.device, ctx.ranks
    backbone = backbone.eval().to(device.device, memory_format=torch.channels_last)  # 2x on CPU as on CUDA
    out, quality = np.load(build / FEATURES, mmap_mode="r+"), np.load(build / QUALITY, mmap_mode="r+")
    shape = out.shape[2:]
    batch_size = max(1, 64 // len(transforms))
    rows = eval_shards(len(samples), batch_size, ranks.world)[ranks.rank]  # whole batches, each of contiguous rows
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(_Views(samples.images, transforms, seed), rows.tolist()), batch_size=batch_size,
        num_workers=ctx.workers, collate_fn=_collate, pin_memory=device.device.type == "cuda")
    python_state, torch_state = random.getstate(), torch.get_rng_state()  # the feature pass draws from both
    failed, done = [], 0
    try:
        with torch.inference_mode():
            for views, measures, reasons in tqdm(loader, desc="features", unit="batch", disable=not ctx.progress,
                                                 leave=False):
                n, row = len(reasons), int(rows[done])
                failed += [(row + k, reason) for k, reason in enumerate(reasons) if reason]
                quality[row:row + n] = measures
                if views is not None:
                    x = views.flatten(0, 1).to(device.device, non_blocking=True)
                    with device.inference_autocast():
                        h = backbone(x.contiguous(memory_format=torch.channels_last)).float()
                    out[:, row:row + n] = h.reshape(n, len(transforms), *shape).transpose(0, 1).cpu().numpy()
                done += n
    finally:
        random.setstate(python_state)
        torch.set_rng_state(torch_state)
    out.flush()
    quality.flush()
    return time.perf_counter() - start, failed
