"""Partial fine-tuning (``model.train: last-stages``): a pretrained timm network cut before its last N stages; the
early stages (the trunk) stay frozen and run once per sample (their output maps are cached on disk as the pooled
features of ``--train head`` are), the last N stages and everything after them (EfficientNet's conv_head, the
pooling, the classifier: the top) train with CRUST on the cached maps.

The stages are the ones timm's ``feature_info`` points into: the children of the block container it names
(EfficientNet's and MobileNet's ``blocks``: 7 stages for EfficientNet-Lite; ConvNeXt's ``stages``), else the
top-level modules it names after the stem (ResNet's ``layer1`` .. ``layer4``, RegNet's ``s1`` .. ``s4``).

The top is the timm model itself with every module its forward runs before the cut replaced by ``Identity``: its
parameters keep their timm names, so the saved model is a plain timm model (the trunk's weights as loaded, the
top's as trained). Whether a model's forward really is "stem, stages in order, the rest" is checked, not
assumed (``split``): a model whose forward does more between them (a ViT adds its position embedding and class
token outside any module) is refused with one line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..errors import BadInputError


def stage_names(model: torch.nn.Module) -> list[str]:
    """The module names of ``model``'s stages in forward order (see the module docstring)."""
    named = [info["module"] for info in getattr(model, "feature_info", [])]
    containers = list(dict.fromkeys(name.rpartition(".")[0] for name in named if "." in name))
    if len(containers) == 1 and containers[0]:
        container = containers[0]
        return [f"{container}.{child}" for child, _ in model.get_submodule(container).named_children()]
    return named[1:]  # the first entry is the stem's output (ResNet's act1, RegNet's stem)


class _Reached(Exception):
    """Raised by the trunk's hook once it has the cut stage's input: the rest of the forward pass is not run."""


class Trunk(torch.nn.Module):
    """The frozen early stages: ``model``'s forward up to the input of its stage ``cut``, which a forward pre-hook
    captures before the pass is stopped (nothing after the cut is computed). Output: that input, (N, C, H, W)."""

    def __init__(self, model: torch.nn.Module, cut: str):
        super().__init__()
        self.model, self.cut = model, cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured = []

        def capture(module, args):
            captured.append(args[0])
            raise _Reached

        handle = self.model.get_submodule(self.cut).register_forward_pre_hook(capture)
        try:
            self.model.forward_features(x)
        except _Reached:
            pass
        finally:
            handle.remove()
        if not captured:
            raise BadInputError(f"{type(self.model).__name__}'s forward never reaches {self.cut}: "
                                "--train last-stages cannot cut it there")
        return captured[0]


def top_of(model: torch.nn.Module, cut: str) -> torch.nn.Module:
    """A copy of ``model`` whose forward starts at the input of stage ``cut``: every module registered before it
    on its path (the stem, the earlier stages) is replaced by ``Identity``. Same parameter names as ``model`` for
    what is kept; timm's ``forward_features`` / ``forward_head`` work as on the whole model."""
    top = copy.deepcopy(model)
    parent, path = top, cut.split(".")
    for name in path:
        for child, _ in list(parent.named_children()):
            if child == name:
                break
            setattr(parent, child, torch.nn.Identity())
        parent = parent.get_submodule(name)
    return top


@dataclass
class Split:
    """A network cut before its last ``stages`` stages: the frozen ``trunk`` and the trainable ``top``."""

    trunk: Trunk
    top: torch.nn.Module
    cut: str  # the first trained stage's module name
    stages: int


def split(model: torch.nn.Module, stages: int, *, img_size: int) -> Split:
    """``model`` cut before its last ``stages`` stages, checked: on two random ``img_size`` images in eval mode the
    top on the trunk's output must give the whole model's pooled features (the classifier's input; a new head
    starts at zero and would hide a difference) (else BadInputError: the model's forward does more between its
    stages than running them)."""
    names = stage_names(model)
    if not names:
        raise BadInputError(f"{type(model).__name__} lists no stages in timm's feature_info: --train last-stages "
                            "cannot cut it; use --train head or all")
    if not 1 <= stages <= len(names):
        raise BadInputError(f"model.stages must be in 1..{len(names)}: the model has {len(names)} stages "
                            f"({', '.join(names)})")
    cut = names[-stages]
    result = Split(Trunk(model, cut), top_of(model, cut), cut, stages)
    model.eval()
    result.top.eval()
    x = torch.randn(2, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            expected = model.forward_head(model.forward_features(x), pre_logits=True)
            got = result.top.forward_head(result.top.forward_features(result.trunk(x)), pre_logits=True)
            same = got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-3, atol=1e-4)
        except (RuntimeError, ValueError, TypeError, AssertionError):
            same = False
    if not same:
        raise BadInputError(f"{type(model).__name__} does not run as stem, stages, head (its forward does more "
                            f"around {cut}): --train last-stages cannot cut it; use --train head or all")
    return result
