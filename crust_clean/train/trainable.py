"""What a fit trains and what it reads: the whole timm network on images (``model.train: all``), a head on a
frozen backbone's cached features (``head``, ``train.features``), or the last stages of a network on its frozen
trunk's cached maps (``last-stages``, ``train.stages``). ``prepare`` hides the difference from the fit: each
gives a module, a store aligned with the samples, the two transforms, and the saved timm model's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import RunConfig
from ..data.sources import Samples
from . import models


@dataclass
class Trainable:
    module: torch.nn.Module  # what SGD trains
    samples: Samples  # less those whose image cannot be decoded
    store: object  # what the module reads, item i = sample i: images, or features
    truth: np.ndarray | None  # true labels of ``samples``, when known
    measures: np.ndarray  # the quality measures of each sample's image, taken as it was read (``data.quality``)
    train_transform: Callable
    eval_transform: Callable
    data_cfg: dict  # the timm data config of the images (model.json)
    facts: dict  # how the samples were read, for the run's summary
    info: dict = field(default_factory=dict)  # what model.json adds to rebuild the saved model
    backbone: dict | None = field(default=None, repr=False)  # head, last-stages: the timm model's state its
    # trained weights go into
    classifier: str = ""  # head: the name of the timm model's classifier, which the head replaces

    def saved_state(self, state: dict) -> dict:
        """The saved timm model's state from the trained module's ``state``: the module's own; the frozen
        backbone with the head's weights as its classifier; or the frozen backbone with the top's weights (same
        names) over it."""
        if self.backbone is None:
            return state
        if self.info.get("trained") == "last-stages":
            return {**self.backbone, **state}
        from .features import Head

        saved = {k: v for k, v in self.backbone.items() if not k.startswith(self.classifier + ".")}
        saved.update({f"{self.classifier}.{k}": v for k, v in Head.folded_state(state).items()})
        return saved


def prepare(samples: Samples, truth: np.ndarray | None, cfg: RunConfig, ctx, *, cache_file: Path) -> Trainable:
    """The trainable for ``cfg.model.train``, its store read once (bad images dropped, as skipped samples)."""
    if cfg.model.train in ("head", "last-stages"):
        return _on_features(samples, truth, cfg, ctx)
    from ..data.images import resolve_cache, training_store

    cache = resolve_cache(cfg.data.cache, samples.sizes, cfg.model.img_size)
    images, failed, measures = training_store(samples.images, cache=cache, img_size=cfg.model.img_size,
                                              file=cache_file, workers=ctx.workers, progress=ctx.progress)
    samples, images, truth, measures = _without(failed, samples, images, truth, measures)
    torch.manual_seed(cfg.train.seed)
    model = models.create_model(cfg.model, samples.num_classes)
    if ctx.ranks.active and ctx.device.device.type == "cuda":  # BatchNorm over the whole batch, as in one process
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    data_cfg = models.data_config(model, cfg.model)
    train_tf, eval_tf = models.build_transforms(data_cfg, cfg.train)
    return Trainable(model, samples, images, truth, measures, train_tf, eval_tf, data_cfg, {"cache": cache})


def _on_features(samples: Samples, truth: np.ndarray | None, cfg: RunConfig, ctx) -> Trainable:
    """A head on cached pooled features, or the top of a network on its trunk's cached maps."""
    from .features import Head, eval_view, features_of, frozen_backbone, random_view

    backbone = frozen_backbone(cfg, samples.num_classes)
    features = features_of(backbone, samples, cfg, ctx)
    samples, store, truth, measures = _without(features.failed, samples, features.store, truth, features.measures)
    facts = {"cache": "features", "features_cached": features.cached, "feature_seconds": round(features.seconds, 2)}
    if backbone.top is not None:  # the top starts from the pretrained weights and the zero head of create_model
        facts["feature_shape"] = list(store.array.shape[2:])
        return Trainable(backbone.top, samples, store, truth, measures, random_view, eval_view, backbone.data_cfg, facts,
                         info={"trained": "last-stages", "stages": cfg.model.stages, "cut": backbone.cut},
                         backbone=backbone.state)
    torch.manual_seed(cfg.train.seed)
    hidden = cfg.model.head_hidden if cfg.model.head == "mlp" else None
    mean, std = store.statistics()
    head = Head(store.width, samples.num_classes, hidden=hidden, mean=mean, std=std)
    return Trainable(head, samples, store, truth, measures, random_view, eval_view, backbone.data_cfg, facts,
                     info={"trained": "head", "head_hidden": hidden}, backbone=backbone.state,
                     classifier=backbone.classifier)


def _without(failed: list[tuple[int, str]], samples: Samples, store, truth: np.ndarray | None,
             measures: np.ndarray):
    """(samples, store, truth, measures) less the ``failed`` (index, reason) samples, which join the skipped ones."""
    if not failed:
        return samples, store, truth, measures
    kept = np.setdiff1d(np.arange(len(samples)), [i for i, _ in failed])
    return samples.without(failed), store.take(kept), truth[kept] if truth is not None else None, measures[kept]
