"""The long-term memory of Titans: its state, the MLP run on many tokens at once, and the MLP's analytic
per-token gradients.

Weights are a tuple of L matrices W_l (..., d_l, d_{l-1}), one batch of memories per leading index; tokens
x (..., n, d_0). With a_0 = x:

    z_l = a_{l-1} W_l^T,   a_l = SiLU(z_l) for l < L,   M(x) = a_L = z_L      (no biases)

The associative loss of one token is l = ||M(k) - v||^2. Backpropagating it, with delta_L = 2 (M(k) - v) and
delta_l = (delta_{l+1} W_{l+1}) * SiLU'(z_l), gives dl/dW_l = delta_l^T a_{l-1}: an outer product per token,
so the norm of a token's whole gradient, sqrt(sum_l ||delta_l||^2 ||a_{l-1}||^2), costs no outer product, and
clipping it is a scale on that token's learning rate.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class MemoryState(NamedTuple):
    """The memory after some tokens; each field holds L tensors (B, H, d_l, d_{l-1}), one per layer."""

    weights: tuple  # M_t, the weights that answer queries
    momentum: tuple  # S_t, the surprise
    anchor: tuple  # the weights at the last chunk boundary, where the current chunk's gradients are taken


def silu_grad(z: torch.Tensor) -> torch.Tensor:
    """d SiLU(z) / dz = s (1 + z (1 - s)) with s = sigmoid(z)."""
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def mlp(weights: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
    """M(x) for weights W_l (..., d_l, d_{l-1}) and x (..., n, d_0); returns (..., n, d_L)."""
    h = x
    for l, W in enumerate(weights):
        h = h @ W.mT  # (..., n, d_l)
        if l < len(weights) - 1:
            h = F.silu(h)
    return h


def loss_grad_factors(weights: tuple[torch.Tensor, ...], k: torch.Tensor,
                      v: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The factors of each token's gradient of ||M(k) - v||^2, at ``weights``, for k (..., n, d_0), v (..., n, d_L).

    Returns (acts, deltas), lists of L tensors: acts[l] = a_l (..., n, d_l) is the input of layer l + 1 and
    deltas[l] = delta_{l+1} (..., n, d_{l+1}) its backpropagated error, so token i's gradient with respect
    to W_{l+1} is the outer product deltas[l][i]^T acts[l][i].
    """
    acts, pre = [k], []
    for l, W in enumerate(weights):
        z = acts[-1] @ W.mT  # (..., n, d_{l+1})
        pre.append(z)
        if l < len(weights) - 1:
            acts.append(F.silu(z))
    delta = 2 * (pre[-1] - v)  # (..., n, d_L)
    deltas = [delta]
    for l in range(len(weights) - 1, 0, -1):
        delta = (delta @ weights[l]) * silu_grad(pre[l - 1])  # (..., n, d_l)
        deltas.append(delta)
    return acts, deltas[::-1]


def clip_rate(theta: torch.Tensor, acts: list[torch.Tensor], deltas: list[torch.Tensor],
              max_grad_norm: float | None) -> torch.Tensor:
    """theta_i scaled by min(1, max_grad_norm / ||u_i||), u_i token i's gradient over all layers (Frobenius norm):
    the step theta_i u_i of a token whose gradient is clipped to ``max_grad_norm``. theta (...,) matches the
    token dimensions of acts and deltas (..., d). None leaves theta alone.
    """
    if max_grad_norm is None:
        return theta
    sq = sum(d.square().sum(-1) * a.square().sum(-1) for a, d in zip(acts, deltas))  # (...,), ||u_i||^2
    return theta * (max_grad_norm * sq.clamp_min(1e-24).rsqrt()).clamp(max=1)
