"""Reference loop shared by linear attention, simple GLA and GLA: one step per time index, in the input dtype."""
from __future__ import annotations

import torch


def recurrent_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None, scale: float,
                  h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,  o_t = S_t^T (scale q_t).

    q, k (B, T, H, K), v (B, T, H, V); g None (no decay), (B, T, H, 1) (one decay per head) or (B, T, H, K);
    h0 (B, H, K, V) or None for zeros. Returns (o (B, T, H, V), S_T (B, H, K, V)).
    """
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1]) if h0 is None else h0  # (B, H, K, V)
    gs = [None] * T if g is None else g.unbind(1)
    out = []
    for q_t, k_t, v_t, g_t in zip(q.unbind(1), k.unbind(1), v.unbind(1), gs):
        if g_t is not None:
            S = S * g_t.exp().unsqueeze(-1)  # (B, H, K, V)
        S = S + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        out.append(torch.einsum("bhk,bhkv->bhv", q_t * scale, S))  # (B, H, V)
    return torch.stack(out, dim=1), S
