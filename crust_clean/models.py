"""timm backbones: creation (with local weights only), transforms, and the classifier weight.

Nothing is downloaded: ``pretrained_weights`` is a local file handed to timm through
``pretrained_cfg_overlay``; without it the model starts from random initialisation.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.data import create_transform, resolve_data_config

from .config import ModelConfig, TrainConfig
from .errors import BadInputError


def create_model(cfg: ModelConfig, num_classes: int) -> torch.nn.Module:
    """A timm model with a fresh ``num_classes`` head; body from ``cfg.pretrained_weights`` when given."""
    if not timm.is_model(cfg.name):
        raise BadInputError(f"unknown timm model {cfg.name!r} (see timm.list_models())")
    if cfg.pretrained_weights is None:
        return timm.create_model(cfg.name, pretrained=False, num_classes=num_classes)
    weights = Path(cfg.pretrained_weights)
    if not weights.is_file():
        raise BadInputError(f"pretrained weights file not found: {weights}")
    # timm drops the checkpoint's classifier when its class count differs from ours.
    return timm.create_model(
        cfg.name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=dict(file=str(weights))
    )


def data_config(model: torch.nn.Module, img_size: int) -> dict:
    """timm data config (mean/std/interpolation from the model) at ``img_size``, no centre crop."""
    return resolve_data_config({"input_size": (3, img_size, img_size), "crop_pct": 1.0}, model=model)


def build_transforms(data_cfg: dict, train_cfg: TrainConfig):
    """(train, eval) transforms from timm's factory; train = eval when augmentation is off."""
    evaluate = create_transform(**data_cfg, is_training=False)
    if not train_cfg.augment:
        return evaluate, evaluate
    train = create_transform(
        **data_cfg, is_training=True, scale=(train_cfg.crop_scale, 1.0), hflip=train_cfg.hflip
    )
    return train, evaluate


def classifier_weight(model: torch.nn.Module) -> torch.Tensor:
    """The (K, D) weight of the model's final linear layer (needed by the last-layer proxy)."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise BadInputError(
            f"model's classifier is a {type(head).__name__}, not a Linear layer: use --proxy logits"
        )
    return head.weight

