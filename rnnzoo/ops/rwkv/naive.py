"""Reference loops for RWKV-6 and RWKV-7: one token at a time, the equations written out literally.

Layout: r, k, w, a, b (B, T, H, K), v (B, T, H, V), u (H, K), state S (B, H, K, V), o (B, T, H, V).
``r`` arrives already multiplied by the scale. The chunk forms in chunk.py are tested against these.
"""
from __future__ import annotations

import torch


def read(S: torch.Tensor, r_t: torch.Tensor) -> torch.Tensor:
    """o = S^T r for S (B, H, K, V), r_t (B, H, K); returns (B, H, V)."""
    return torch.einsum("bhk,bhkv->bhv", r_t, S)


def rwkv6_recurrent(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                    initial_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """o_t = (S_{t-1} + diag(u) k_t v_t^T)^T r_t, then S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T."""
    S = initial_state
    outs = []
    for r_t, k_t, v_t, w_t in zip(r.unbind(1), k.unbind(1), v.unbind(1), w.unbind(1)):
        kv = k_t[:, :, :, None] * v_t[:, :, None, :]  # (B, H, K, V)
        outs.append(read(S + u[:, :, None] * kv, r_t))
        S = w_t.exp()[..., None] * S + kv
    return torch.stack(outs, dim=1), S


def rwkv7_recurrent(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
                    b: torch.Tensor, initial_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = (diag(exp(w_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T, then o_t = S_t^T r_t."""
    S = initial_state
    outs = []
    for r_t, w_t, k_t, v_t, a_t, b_t in zip(*(x.unbind(1) for x in (r, w, k, v, a, b))):
        aS = torch.einsum("bhk,bhkv->bhv", a_t, S)  # (B, H, V), a^T S
        S = (w_t.exp()[..., None] * S + b_t[:, :, :, None] * aS[:, :, None, :]
             + k_t[:, :, :, None] * v_t[:, :, None, :])
        outs.append(read(S, r_t))
    return torch.stack(outs, dim=1), S
