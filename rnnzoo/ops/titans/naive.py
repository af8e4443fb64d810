"""The reference loop of the Titans memory: one token at a time, following the equations literally.

Layout: q, k (B, T, H, K), v (B, T, H, V), eta, theta, alpha (B, T, H); the memory's tensors (B, H, d_l, d_{l-1}).
The gradient of token t is taken at the anchor: the weights at the last multiple of ``chunk_size`` tokens
(with chunk_size = 1, at M_{t-1}: plain online gradient descent). The chunk form is tested against this loop.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.titans.memory import MemoryState, clip_rate, loss_grad_factors, mlp


def memory_step(q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, eta_t: torch.Tensor,
                theta_t: torch.Tensor, alpha_t: torch.Tensor, state: MemoryState,
                refresh: bool | torch.Tensor,
                max_grad_norm: float | None = None) -> tuple[torch.Tensor, MemoryState]:
    """One token: q_t, k_t (B, H, K), v_t (B, H, V), gates (B, H) -> o_t (B, H, V) and the new state.

        u_t = d ||M_anchor(k_t) - v_t||^2 / d M_anchor,   scaled to norm ``max_grad_norm`` where it is longer
        S_t = eta_t S_{t-1} - theta_t u_t,   M_t = (1 - alpha_t) M_{t-1} + S_t,   o_t = M_t(q_t)

    then the anchor becomes M_t where ``refresh`` (a bool, or a bool tensor (B,)) marks the end of a chunk.
    """
    acts, deltas = loss_grad_factors(state.anchor, k_t.unsqueeze(-2), v_t.unsqueeze(-2))  # (B, H, 1, d) each
    theta_t = clip_rate(theta_t.unsqueeze(-1), acts, deltas, max_grad_norm).squeeze(-1)  # (B, H)
    eta, theta, keep = eta_t[..., None, None], theta_t[..., None, None], 1 - alpha_t[..., None, None]  # (B, H, 1, 1)
    momentum = tuple(eta * S - theta * (d.mT @ a) for S, d, a in zip(state.momentum, deltas, acts))
    weights = tuple(keep * W + S for W, S in zip(state.weights, momentum))
    o_t = mlp(weights, q_t.unsqueeze(-2)).squeeze(-2)  # (B, H, V)
    if isinstance(refresh, torch.Tensor):
        mask = refresh[:, None, None, None]  # (B, 1, 1, 1)
        anchor = tuple(torch.where(mask, W, P) for W, P in zip(weights, state.anchor))
    else:
        anchor = weights if refresh else state.anchor
    return o_t, MemoryState(weights, momentum, anchor)


def titans_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor, theta: torch.Tensor,
                     alpha: torch.Tensor, state: MemoryState, chunk_size: int, offset: int,
                     max_grad_norm: float | None = None) -> tuple[torch.Tensor, MemoryState]:
    """``memory_step`` over the T tokens; the first token is number ``offset`` of its chunk."""
    outs = []
    # unbind, not x[:, t]: the backward of each index would write a full-size zero gradient
    for t, inputs in enumerate(zip(*(x.unbind(1) for x in (q, k, v, eta, theta, alpha)))):
        o_t, state = memory_step(*inputs, state, (offset + t + 1) % chunk_size == 0, max_grad_norm)
        outs.append(o_t)
    return torch.stack(outs, dim=1), state
