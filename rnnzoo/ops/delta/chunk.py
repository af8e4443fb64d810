"""Chunkwise-parallel delta rule: the UT transform inside each chunk, a loop over chunks for the state.

Same layout and equations as naive.py (q already scaled). Within a chunk of C steps starting from S_0, with
gamma_t = g_1 + ... + g_t (cumulative log-decay from the chunk start) and U the (C, V) matrix of "corrected
values" u_t = beta_t (v_t - exp(g_t) S_{t-1}^T k_t):

    (I + L) U = diag(beta) V - diag(beta exp(gamma)) K S_0,   L_ts = beta_t exp(gamma_t - gamma_s) k_t.k_s, s < t
    O   = diag(exp(gamma)) Q S_0 + (Q K^T * D) U,              D_ts = exp(gamma_t - gamma_s), s <= t
    S_C = exp(gamma_C) S_0 + (K * exp(gamma_C - gamma))^T U

Everything except the three lines that touch S_0 is batched over (chunks, B, H); README.md derives it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def to_chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """(B, T, H, ...) -> (N, B, H, C, ...), zero-padded at the end of time; chunks first so that each
    chunk's slice is contiguous in the state loop."""
    B, T, H = x.shape[:3]
    N = -(-T // C)
    x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, N * C - T))  # (B, N*C, H, ...)
    return x.reshape(B, N, C, H, *x.shape[3:]).movedim(1, 0).movedim(3, 2).contiguous()


def delta_rule_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                     g: torch.Tensor | None, initial_state: torch.Tensor,
                     chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk form of ``delta_rule_recurrent`` (g = None: no gate). Zero padding of the last chunk is exact:
    a step with beta = 0 and g = 0 leaves the state unchanged."""
    B, T, H, V = v.shape
    C = min(chunk_size, T)
    if g is None:
        g = beta.new_zeros(beta.shape)
    q, k, v = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)  # (N, B, H, C, K|V)
    beta, g = to_chunks(beta, C), to_chunks(g, C)  # (N, B, H, C)

    gamma = g.cumsum(-1)  # (N, B, H, C), <= 0 and non-increasing
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    # mask before exp: only differences gamma_t - gamma_s with s <= t (never positive) are exponentiated
    decay = (gamma[..., :, None] - gamma[..., None, :]).masked_fill(~causal, float("-inf")).exp()  # (N, B, H, C, C)
    L = (beta[..., :, None] * (k @ k.transpose(-1, -2)) * decay).tril(-1)  # (N, B, H, C, C)
    rhs = torch.cat([beta[..., None] * v, (beta * gamma.exp())[..., None] * k], dim=-1)  # (N, B, H, C, V+K)
    # the unit diagonal of I + L is implied by unitriangular=True
    u_base, w = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True).split([V, k.shape[-1]], -1)
    attn = (q @ k.transpose(-1, -2)) * decay  # (N, B, H, C, C)
    q_decayed = q * gamma.exp()[..., None]  # (N, B, H, C, K)
    k_decayed = k * (gamma[..., -1:] - gamma).exp()[..., None]  # (N, B, H, C, K)
    chunk_decay = gamma[..., -1].exp()[..., None, None]  # (N, B, H, 1, 1)

    S = initial_state  # (B, H, K, V)
    outs = []
    # unbind, not x[n]: the backward of each index would write a full-size zero gradient, O(N^2) in all
    per_chunk = (x.unbind(0) for x in (u_base, w, q_decayed, attn, chunk_decay, k_decayed))
    for u_base_n, w_n, q_n, attn_n, decay_n, k_n in zip(*per_chunk):
        u = u_base_n - w_n @ S  # (B, H, C, V)
        outs.append(q_n @ S + attn_n @ u)
        S = decay_n * S + k_n.transpose(-1, -2) @ u
    o = torch.stack(outs, dim=0)  # (N, B, H, C, V)
    return o.permute(1, 0, 3, 2, 4).reshape(B, -1, H, V)[:, :T], S


def delta_product_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                        g: torch.Tensor | None, initial_state: torch.Tensor,
                        chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DeltaProduct as a delta rule over T*n_h micro-steps (t, j) in the order (0, 0), (0, 1), ...: the gate
    sits on micro-step j = 0, q on j = n_h - 1, and o_t is read there. ``chunk_size`` counts micro-steps."""
    B, T, n_h, H, K = k.shape
    micro = (B, T * n_h, H)
    q_micro = torch.cat([q.new_zeros(B, T, n_h - 1, H, K), q[:, :, None]], dim=2)  # (B, T, n_h, H, K)
    g_micro = None
    if g is not None:
        g_micro = torch.cat([g[:, :, None], g.new_zeros(B, T, n_h - 1, H)], dim=2).reshape(micro)  # (B, T*n_h, H)
    o, S = delta_rule_chunk(q_micro.reshape(*micro, K), k.reshape(*micro, K), v.reshape(*micro, v.shape[-1]),
                            beta.reshape(micro), g_micro, initial_state, chunk_size)
    return o[:, n_h - 1::n_h], S
