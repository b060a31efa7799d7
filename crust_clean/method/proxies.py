"""Per-sample gradient proxies (pure tensor functions).

For softmax cross-entropy with a last layer ``logits = z @ W.T + b``, the gradient of the loss of
one sample with respect to the logits is ``p - y`` (p = softmax(logits), y = onehot(given label))
and with respect to the last layer's input z it is ``(p - y) @ W`` (z itself is not needed). CRUST
clusters these vectors: samples whose gradients look alike can stand in for each other.

Selection only sees distances between proxies, so the last-layer proxy is returned in K coordinates
instead of D (``isometric_factor``): the same pairwise distances, and a 512-wide feature layer costs
selection no more than the 10 logits of a 10-class problem.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import PROXIES

Tensor = torch.Tensor


def logits_proxy(probs: Tensor, labels: Tensor) -> Tensor:
    """softmax - onehot(labels): (N, K) from probs (N, K) and integer labels (N,)."""
    return probs - F.one_hot(labels, probs.shape[1]).to(probs.dtype)


def isometric_factor(weight: Tensor) -> Tensor:
    """A (K, K) matrix L with L @ L.T = W @ W.T for W of shape (K, D).

    Then ||(a - b) @ L|| = ||(a - b) @ W|| for all rows a, b: v -> v @ L is an isometry of the proxies
    v @ W onto K coordinates. L = V sqrt(Lambda) from the eigendecomposition of W W^T (float64; a zero
    or rank-deficient W, such as a new zero-initialised head, is fine)."""
    gram = weight.detach().double() @ weight.detach().double().T
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    return eigenvectors * eigenvalues.clamp_min(0).sqrt()[None, :]


def last_layer_proxy(probs: Tensor, labels: Tensor, weight: Tensor) -> Tensor:
    """(softmax - onehot) @ W, the paper's proxy, for the classifier weight W of shape (K, D), given as its
    isometric image in K coordinates: (N, K) rows with the pairwise distances of the (N, D) ones."""
    factor = isometric_factor(weight).to(device=probs.device, dtype=probs.dtype)
    return logits_proxy(probs, labels) @ factor


def compute_proxies(kind: str, probs: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
    """Dispatch on ``kind``, one of ``config.PROXIES`` (``crust.proxy``)."""
    if kind == "logits":
        return logits_proxy(probs, labels)
    if kind == "last-layer":
        if weight is None:
            raise ValueError("the last-layer proxy needs the classifier weight")
        return last_layer_proxy(probs, labels, weight)
    raise ValueError(f"proxy={kind!r} is not one of: {', '.join(PROXIES)}")
