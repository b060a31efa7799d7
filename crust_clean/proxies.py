"""Per-sample gradient proxies (pure tensor functions).

For softmax cross-entropy with a last layer ``logits = z @ W.T + b``, the gradient of the loss of
one sample with respect to the logits is ``p - y`` (p = softmax(logits), y = onehot(given label))
and with respect to the last layer's input z it is ``(p - y) @ W`` (z itself is not needed). CRUST
clusters these vectors: samples whose gradients look alike can stand in for each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def logits_proxy(probs: Tensor, labels: Tensor) -> Tensor:
    """softmax - onehot(labels): (N, K) from probs (N, K) and integer labels (N,)."""
    return probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)


def last_layer_proxy(probs: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """W^T (softmax - onehot): (N, D), the paper's proxy, from the classifier weight W of shape (K, D)."""
    return logits_proxy(probs, labels) @ weight.to(probs.dtype)


def compute_proxies(kind: str, probs: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """Dispatch on ``kind`` in {"last-layer", "logits"}."""
    if kind == "logits":
        return logits_proxy(probs, labels)
    if kind == "last-layer":
        if weight is None:
            raise ValueError("the last-layer proxy needs the classifier weight")
        return last_layer_proxy(probs, labels, weight)
    raise ValueError(f"proxy={kind!r} is not one of: last-layer, logits")
