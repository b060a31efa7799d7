"""Per-epoch checkpoints, so that a killed or interrupted run resumes and ends with the same outputs.

``RUN/checkpoint.safetensors`` is rewritten atomically at the end of every epoch. Tensors: the model
(``model.*``), the best-so-far model (``best.*``), the optimizer's per-parameter state
(``optimizer.<index>.<name>``) and the RNG states (``rng.torch``, ``rng.cuda.<device>``). Everything else
(the epoch, optimizer hyper-parameters, scheduler and grad-scaler state, best epoch and accuracy, Python's
RNG state) is JSON in the file's metadata. No pickle. The ledger rows and metrics of finished epochs are
not in it: ``fit`` writes them beside it as each epoch ends (``RUN/ledger/epoch-NNNN.parquet``,
``RUN/metrics.json``), and a resumed run reads back those of the epochs the checkpoint covers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_path
from ..errors import BadInputError

if TYPE_CHECKING:
    import torch

@dataclass
class Resumed:
    """What a checkpoint restores besides the objects it loads into."""

    epoch: int  # the last finished epoch; training continues at epoch + 1
    best_epoch: int | None
    best_accuracy: float
    best_state: dict[str, torch.Tensor] | None


def state_copy(model) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state on the CPU, never its own tensors (on the CPU ``.cpu()`` returns
    them), so that training on does not change what was kept."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, *, epoch: int, model, optimizer, scheduler, scaler, best_epoch: int | None,
                    best_accuracy: float, best_state: dict[str, torch.Tensor] | None) -> None:
    """Write the full training state after ``epoch`` to ``path`` (atomically: a reader sees the old or the new)."""
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    optimizer_state = optimizer.state_dict()
    other_state: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu()
            else:
                other_state.setdefault(str(index), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    meta = {
        "epoch": epoch, "best_epoch": best_epoch, "best_accuracy": best_accuracy,
        "optimizer_param_groups": optimizer_state["param_groups"], "optimizer_other_state": other_state,
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "python_random": random.getstate(),
    }
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"state": json.dumps(meta)})


def load_checkpoint(path: Path, *, model, optimizer, scheduler, scaler) -> Resumed:
    """Load ``path`` into the model, optimizer, scheduler, scaler and the RNGs; return the rest."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise BadInputError(f"no checkpoint to resume from: {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["state"])
        tensors = load_file(str(path))
    except Exception as err:  # a damaged file: say so in one line
        reason = str(err).splitlines()[0] if str(err) else repr(err)
        raise BadInputError(f"cannot read checkpoint {path}: {reason}") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer_other_state"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda_states and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    version, internal, gauss = meta["python_random"]
    random.setstate((version, tuple(internal), gauss))
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return Resumed(epoch=meta["epoch"], best_epoch=meta["best_epoch"], best_accuracy=meta["best_accuracy"],
                   best_state=best or None)
