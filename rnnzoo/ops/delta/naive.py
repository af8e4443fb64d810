"""Reference loops for the delta-rule family: one token, and one Householder step, at a time.

Layout: q, k (B, T, H, K), v (B, T, H, V), beta and g (B, T, H), state S (B, H, K, V), o (B, T, H, V);
DeltaProduct's k, v, beta carry the n_h axis after T. ``q`` arrives already multiplied by the scale.
These follow the equations literally; the chunk forms are tested against them.
"""
from __future__ import annotations

import torch


def delta_step(S: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, beta_t: torch.Tensor) -> torch.Tensor:
    """S <- (I - beta k k^T) S + beta k v^T, for S (B, H, K, V), k_t (B, H, K), v_t (B, H, V), beta_t (B, H)."""
    b = beta_t[..., None, None]  # (B, H, 1, 1)
    kS = torch.einsum("bhk,bhkv->bhv", k_t, S)  # (B, H, V), k^T S
    return S - b * k_t[..., :, None] * kS[..., None, :] + b * k_t[..., :, None] * v_t[..., None, :]


def read(S: torch.Tensor, q_t: torch.Tensor) -> torch.Tensor:
    """o = S^T q for S (B, H, K, V), q_t (B, H, K); returns (B, H, V)."""
    return torch.einsum("bhk,bhkv->bhv", q_t, S)


def delta_rule_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                         g: torch.Tensor | None, initial_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T q_t (g = None: no gate)."""
    S = initial_state
    outs = []
    gs = [None] * q.shape[1] if g is None else g.unbind(1)
    for q_t, k_t, v_t, beta_t, g_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), beta.unbind(1), gs):
        if g_t is not None:
            S = g_t.exp()[..., None, None] * S
        S = delta_step(S, k_t, v_t, beta_t)
        outs.append(read(S, q_t))
    return torch.stack(outs, dim=1), S


def delta_product_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                            g: torch.Tensor | None, initial_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: S <- exp(g_t) S, then S <- (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T for j < n_h,
    then o_t = S^T q_t. k (B, T, n_h, H, K), v (B, T, n_h, H, V), beta (B, T, n_h, H), g (B, T, H) or None."""
    S = initial_state
    outs = []
    gs = [None] * q.shape[1] if g is None else g.unbind(1)
    for q_t, k_t, v_t, beta_t, g_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), beta.unbind(1), gs):
        if g_t is not None:
            S = g_t.exp()[..., None, None] * S
        for k_tj, v_tj, beta_tj in zip(k_t.unbind(1), v_t.unbind(1), beta_t.unbind(1)):
            S = delta_step(S, k_tj, v_tj, beta_tj)
        outs.append(read(S, q_t))
    return torch.stack(outs, dim=1), S
