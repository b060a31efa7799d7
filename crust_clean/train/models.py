"""timm backbones: creation (with local weights only), transforms, the classifier weight, and a run's saved
model rebuilt from its files (``model.json`` + ``model.safetensors``).

Nothing is downloaded: ``pretrained_weights`` is a local file (safetensors, or a torch checkpoint read
with ``weights_only=True``: no pickle code runs); without it the model starts from random
initialisation. Checkpoints from another implementation of the same architecture load with
``pretrained_key_map="order"``.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.data import create_transform, resolve_data_config

from ..config import ModelConfig, TrainConfig
from ..errors import BadInputError


def create_model(cfg: ModelConfig, num_classes: int) -> torch.nn.Module:
    """A timm model with ``num_classes`` outputs; its body from ``cfg.pretrained_weights`` when given.

    The checkpoint's classifier is kept only when its shape fits (same class count), as timm does;
    otherwise the new classifier starts at zero. timm's own initialisation of a 10-class head on
    EfficientNet-Lite0's 1,280 features gives logits of a few units, a first loss of ~4 (ln 10 = 2.3) and
    gradients that wreck the pretrained body: 0.21 vs 0.34 test accuracy after 2 epochs on CIFAR-10N at 64 px.
    """
    if not timm.is_model(cfg.name):
        raise BadInputError(f"unknown timm model {cfg.name!r} (see timm.list_models())")
    model = timm.create_model(cfg.name, pretrained=False, num_classes=num_classes)
    if cfg.pretrained_weights is not None:
        if not load_pretrained(model, Path(cfg.pretrained_weights), cfg.pretrained_key_map):
            head = model.get_classifier()
            for tensor in (head.weight, head.bias):
                torch.nn.init.zeros_(tensor)
    return model


def load_pretrained(model: torch.nn.Module, path: Path, key_map: str = "none") -> bool:
    """Load a local checkpoint into ``model``; every tensor but the classifier's must be found.
    Returns whether the classifier came from the checkpoint too.

    ``key_map``: ``none`` = the checkpoint uses timm's names; ``order`` = it lists the same tensors in
    the same order under other names (e.g. the original EfficientNet-Lite port), matched by position,
    each pair checked for shape and kind (weight, bias, running_mean, ...).
    """
    if key_map == "order" and path.suffix == ".safetensors":
        raise BadInputError(f"{path}: safetensors files do not keep the tensors' order; map by order from the "
                            "original torch checkpoint, or save the weights with timm's names")
    checkpoint = read_state_dict(path)
    target = model.state_dict()
    head = model.pretrained_cfg.get("classifier") or ""
    is_head = [k.startswith(head + ".") for k in target] if head else [False] * len(target)
    if key_map == "order":
        checkpoint = _map_by_order(checkpoint, target, is_head, path)
    fits = {k: v for k, v in checkpoint.items() if k in target and v.shape == target[k].shape}
    missing = [k for k, head_key in zip(target, is_head) if k not in fits and not head_key]
    if missing:
        raise BadInputError(
            f"{path} does not fit timm's {model.pretrained_cfg.get('architecture')}: {len(missing)} tensors missing "
            f"or of another shape, e.g. {missing[0]!r}" + ("" if key_map == "order" else " (try --pretrained-key-map order)"))
    model.load_state_dict(fits, strict=False)
    return all(k in fits for k, head_key in zip(target, is_head) if head_key)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch checkpoint (``weights_only``; ``state_dict``/``model`` unwrapped)."""
    if not path.is_file():
        raise BadInputError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, or a pickle that needs code to load: refused, not run
        raise BadInputError(f"cannot read weights {path}: {str(err).splitlines()[0] if str(err) else err!r}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"{path} holds no state dict of tensors")
    return state


def _map_by_order(checkpoint: dict, target: dict, is_head: list[bool], path: Path) -> dict:
    if len(checkpoint) != len(target):
        raise BadInputError(f"{path} has {len(checkpoint)} tensors, the model {len(target)}: cannot map by order")
    mapped = {}
    for (source_key, tensor), (key, expected), head_key in zip(checkpoint.items(), target.items(), is_head):
        kind_differs = source_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]
        if kind_differs or (tensor.shape != expected.shape and not head_key):
            raise BadInputError(f"{path}: tensor {source_key!r} {tuple(tensor.shape)} does not match the model's "
                                f"{key!r} {tuple(expected.shape)} at the same position: cannot map by order")
        mapped[key] = tensor
    return mapped


def data_config(model: torch.nn.Module, cfg: ModelConfig) -> dict:
    """timm data config at ``cfg.img_size``, no centre crop; mean/std/interpolation from the model unless
    ``cfg.mean`` / ``cfg.std`` are set (weights ported from another implementation may expect other inputs)."""
    overrides = {"input_size": (3, cfg.img_size, cfg.img_size), "crop_pct": 1.0}
    overrides.update({key: tuple(getattr(cfg, key)) for key in ("mean", "std") if getattr(cfg, key)})
    return resolve_data_config(overrides, model=model)


def eval_transform(data_cfg: dict):
    """timm's eval transform for a data config: resize to the input size, tensor, normalise."""
    return create_transform(**data_cfg, is_training=False)


def build_transforms(data_cfg: dict, train_cfg: TrainConfig):
    """(train, eval) transforms from timm's factory; train = eval when augmentation is off."""
    evaluate = eval_transform(data_cfg)
    if not train_cfg.augment:
        return evaluate, evaluate
    train = create_transform(
        **data_cfg, is_training=True, scale=(train_cfg.crop_scale, 1.0), hflip=train_cfg.hflip
    )
    return train, evaluate


def saved_model_info(cfg: ModelConfig, data_cfg: dict, class_names: list[str], *, epoch: int, chosen_by: str) -> dict:
    """What ``model.json`` records: everything timm needs to rebuild the model and feed it."""
    return {
        "architecture": cfg.name, "num_classes": len(class_names), "class_names": class_names,
        "img_size": cfg.img_size, "mean": list(data_cfg["mean"]), "std": list(data_cfg["std"]),
        "interpolation": data_cfg["interpolation"], "epoch": epoch, "chosen_by": chosen_by,
    }


def load_saved_model(info: dict, weights: Path) -> torch.nn.Module:
    """A run's saved model (``info`` from ``model.json``, ``weights`` its safetensors file) as a timm model in
    eval mode, loaded the way timm loads local pretrained weights (no pickle)."""
    model = timm.create_model(info["architecture"], pretrained=True, num_classes=info["num_classes"],
                              pretrained_cfg_overlay=dict(file=str(weights), num_classes=info["num_classes"]))
    return model.eval()


def saved_data_config(info: dict) -> dict:
    """The data config a saved model was trained with (for ``eval_transform``)."""
    return {"input_size": (3, info["img_size"], info["img_size"]), "mean": tuple(info["mean"]),
            "std": tuple(info["std"]), "interpolation": info["interpolation"], "crop_pct": 1.0}


def classifier_weight(model: torch.nn.Module) -> torch.Tensor:
    """The (K, D) weight of the model's final linear layer (needed by the last-layer proxy)."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise BadInputError(
            f"model's classifier is a {type(head).__name__}, not a Linear layer: use --proxy logits"
        )
    return head.weight

