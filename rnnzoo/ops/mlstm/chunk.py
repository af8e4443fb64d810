"""Chunkwise-parallel mLSTM: a stabilised decay matrix inside each chunk, a loop over chunks for the state.

Same layout and equations as naive.py (q already scaled, log_f the log forget gate). In a chunk of C steps
starting from (C_0, n_0, m_0), with b_t = log f_1 + ... + log f_t and D_ts = i_s + b_t - b_s (s <= t):

    m_t   = max(b_t + m_0, max_{s <= t} D_ts)                     (the loop's m_t, unrolled)
    C_t   = exp(b_t + m_0 - m_t) C_0 + sum_{s <= t} exp(D_ts - m_t) k_s v_s^T
    n_t   = exp(b_t + m_0 - m_t) n_0 + sum_{s <= t} exp(D_ts - m_t) k_s

so every exponent is <= 0. Only the per-chunk start states need the loop over chunks; the outputs are then
batched over (chunks, B, H). README.md derives it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnzoo.ops.mlstm.naive import MLSTMState, divide


def to_chunks(x: torch.Tensor, C: int, value: float = 0.0) -> torch.Tensor:
    """(B, T, H, ...) -> (N, B, H, C, ...), padded at the end of time with ``value``."""
    B, T, H = x.shape[:3]
    N = -(-T // C)
    x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, N * C - T), value=value)  # (B, N*C, H, ...)
    return x.reshape(B, N, C, H, *x.shape[3:]).movedim(1, 0).movedim(3, 2).contiguous()


def segment_sums(x: torch.Tensor) -> torch.Tensor:
    """(..., C) -> (..., C, C) with [t, s] = x_{s+1} + ... + x_t for s <= t (0 on the diagonal, 0 above).
    Summing each segment directly, rather than differencing one cumulative sum, keeps the rounding error
    relative to the segment, not to the whole chunk."""
    C = x.shape[-1]
    below = torch.ones(C, C, dtype=torch.bool, device=x.device).tril(-1)
    return (x[..., :, None].expand(*x.shape, C) * below).cumsum(-2)  # (..., C, C)


def mlstm_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, log_f: torch.Tensor,
                state: MLSTMState, eps: float, chunk_size: int) -> tuple[torch.Tensor, MLSTMState]:
    """Chunk form of ``mlstm_recurrent``. The last chunk is padded with i = -inf and log f = 0: such a step
    leaves (C, n, m) unchanged, so the final state is exact."""
    T = v.shape[1]
    C = min(chunk_size, T)
    q, k, v = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)  # (N, B, H, C, K|V)
    i, log_f = to_chunks(i, C, float("-inf")), to_chunks(log_f, C)  # (N, B, H, C)

    b = log_f.cumsum(-1)  # (N, B, H, C)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    D = (segment_sums(log_f) + i[..., None, :]).masked_fill(~causal, float("-inf"))  # (N, B, H, C, C)
    # finite: a real row has its own i_t, a padded row still sees the chunk's first (real) step
    m_intra = D.amax(-1)  # (N, B, H, C)
    P = torch.exp(D - m_intra[..., None])  # (N, B, H, C, C), stabilised by the row max
    # the chunk's own contribution to the state at its end, stabilised by m_intra of the last row
    w_last = P[..., -1, :, None]  # (N, B, H, C, 1)
    kv_intra = (k * w_last).transpose(-1, -2) @ v  # (N, B, H, K, V)
    kn_intra = (k * w_last).sum(-2)  # (N, B, H, K)

    Cs, ns, ms = [state.C], [state.n], [state.m]
    # unbind, not x[c]: the backward of each index would write a full-size zero gradient, O(N^2) in all
    per_chunk = (x.unbind(0) for x in (b[..., -1], m_intra[..., -1], kv_intra, kn_intra))
    for b_c, m_intra_c, kv_c, kn_c in zip(*per_chunk):
        m_end = torch.maximum(b_c + ms[-1], m_intra_c)  # (B, H)
        old = torch.exp(b_c + ms[-1] - m_end)  # (B, H), <= 1
        new = torch.exp(m_intra_c - m_end)  # (B, H), <= 1
        Cs.append(old[..., None, None] * Cs[-1] + new[..., None, None] * kv_c)
        ns.append(old[..., None] * ns[-1] + new[..., None] * kn_c)
        ms.append(m_end)
    C0, n0, m0 = torch.stack(Cs[:-1]), torch.stack(ns[:-1]), torch.stack(ms[:-1])  # start state of each chunk

    m = torch.maximum(b + m0[..., None], m_intra)  # (N, B, H, C), the loop's m_t
    w_old = torch.exp(b + m0[..., None] - m)[..., None]  # (N, B, H, C, 1)
    w_new = torch.exp(m_intra - m)[..., None]  # (N, B, H, C, 1)
    A = (q @ k.transpose(-1, -2)) * P  # (N, B, H, C, C)
    num = w_old * (q @ C0) + w_new * (A @ v)  # (N, B, H, C, V)
    den = w_old[..., 0] * (q @ n0[..., None])[..., 0] + w_new[..., 0] * A.sum(-1)  # (N, B, H, C)
    h = divide(num, den, m, eps)  # (N, B, H, C, V)
    o = h.permute(1, 0, 3, 2, 4).flatten(1, 2)[:, :T]  # (B, T, H, V); flatten, not reshape(B, -1): B may be 0
    return o, MLSTMState(Cs[-1], ns[-1], ms[-1])
