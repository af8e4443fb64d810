"""Chunkwise-parallel forms (derivation in README.md).

Time is cut into chunks of C steps. Inside a chunk, outputs come from a masked (C, C) attention matrix and
batched matmuls over (B, H, n_chunks); between chunks, a Python loop over chunks carries the (K, V) state.
Decays are cumulative log-decays G restarted at 0 in every chunk (non-increasing, as g <= 0). Exponents are
differences that are <= 0, except in GLA's one-matmul path, which is taken only while exp(-G) stays far
inside the float range; so nothing overflows however negative g is.
"""
from __future__ import annotations

import math

import torch


def to_chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """(B, T, H, ...) -> (B, H, n, C, ...), zero-padding time to a multiple of C (k = v = g = 0 changes nothing)."""
    B, T = x.shape[:2]
    pad = -T % C
    if pad:
        x = torch.cat([x, x.new_zeros(B, pad, *x.shape[2:])], dim=1)
    x = x.reshape(B, -1, C, *x.shape[2:])  # (B, n, C, H, ...)
    return x.movedim(3, 1)


def from_chunks(o: torch.Tensor, T: int) -> torch.Tensor:
    """(B, H, n, C, V) -> (B, T, H, V), dropping the padding."""
    B, H, n, C, V = o.shape
    return o.movedim(1, 3).reshape(B, n * C, H, V)[:, :T]


def carry_states(decay: torch.Tensor | None, kv: torch.Tensor,
                 h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """S_j = decay_j * S_{j-1} + kv_j over chunks; kv (B, H, n, K, V), decay broadcastable to it or None.

    Returns the state before each chunk (B, H, n, K, V) and the state after the last one (B, H, K, V).
    """
    S = torch.zeros_like(kv[:, :, 0]) if h0 is None else h0  # (B, H, K, V)
    before = []
    # unbind, not x[:, :, j]: the backward of each index would write a full-size zero gradient, O(n^2) in all
    decays = [None] * kv.shape[2] if decay is None else decay.unbind(2)
    for decay_j, kv_j in zip(decays, kv.unbind(2)):
        before.append(S)
        if decay_j is not None:
            S = decay_j * S
        S = S + kv_j
    return torch.stack(before, dim=2), S


def causal_mask(C: int, device: torch.device) -> torch.Tensor:
    return torch.ones(C, C, dtype=torch.bool, device=device).tril()  # (C, C): s <= t


def chunk_simple_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None, scale: float,
                     h0: torch.Tensor | None, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One log-decay per head, g (B, T, H) or None for plain linear attention; the decay matrix is (C, C)."""
    T = q.shape[1]
    qc, kc, vc = to_chunks(q * scale, C), to_chunks(k, C), to_chunks(v, C)  # (B, H, n, C, K or V)
    mask = causal_mask(C, q.device)
    scores = qc @ kc.transpose(-1, -2)  # (B, H, n, C, C)
    if g is None:
        A = scores.masked_fill(~mask, 0.0)
        kv = kc.transpose(-1, -2) @ vc  # (B, H, n, K, V)
        before, S = carry_states(None, kv, h0)
        o = A @ vc + qc @ before  # (B, H, n, C, V)
        return from_chunks(o, T), S
    G = to_chunks(g, C).cumsum(dim=-1)  # (B, H, n, C), non-increasing
    decay = (G.unsqueeze(-1) - G.unsqueeze(-2)).masked_fill(~mask, -torch.inf).exp()  # (B, H, n, C, C)
    last = G[..., -1:]  # (B, H, n, 1)
    kv = (kc * (last - G).exp().unsqueeze(-1)).transpose(-1, -2) @ vc  # (B, H, n, K, V)
    before, S = carry_states(last.exp().unsqueeze(-1), kv, h0)
    o = (scores * decay) @ vc + (qc * G.exp().unsqueeze(-1)) @ before  # (B, H, n, C, V)
    return from_chunks(o, T), S


def sub_chunk_size(C: int, largest: int = 8) -> int:
    """The largest divisor of C that is at most ``largest``. The (c, c, K) tensors of the pairs inside one
    sub-chunk dominate the cost; c = 8 with C = 32 took 0.6x the time of c = 16 with C = 64 (forward and
    backward of gla and rwkv6/7 at B=4, T=2048, H=4, K=64 and at B=32, T=128, K=64)."""
    return max(d for d in range(1, min(C, largest) + 1) if C % d == 0)


def chunk_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float,
              h0: torch.Tensor | None, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One log-decay per key channel, g (B, T, H, K).

    The score of (t, s) is sum_k q_tk k_sk exp(G_tk - G_sk). When every chunk decays by less than
    log(float max) / 3, it is one matmul of q exp(G) and k exp(-G) (no factor leaves the float range);
    otherwise ``secondary_scores`` keeps every exponent <= 0.
    """
    T = q.shape[1]
    qc, kc, vc = to_chunks(q * scale, C), to_chunks(k, C), to_chunks(v, C)  # (B, H, n, C, K or V)
    G = to_chunks(g, C).cumsum(dim=-2)  # (B, H, n, C, K), non-increasing in time
    q_decayed = qc * G.exp()  # (B, H, n, C, K)
    if -G[..., -1, :].min() <= math.log(torch.finfo(G.dtype).max) / 3:
        A = (q_decayed @ (kc * (-G).exp()).transpose(-1, -2)).masked_fill(~causal_mask(C, q.device), 0.0)
    else:
        A = secondary_scores(qc, kc, G)  # (B, H, n, C, C)
    last = G[..., -1:, :]  # (B, H, n, 1, K)
    kv = (kc * (last - G).exp()).transpose(-1, -2) @ vc  # (B, H, n, K, V)
    before, S = carry_states(last.exp().transpose(-1, -2), kv, h0)
    o = A @ vc + q_decayed @ before  # (B, H, n, C, V)
    return from_chunks(o, T), S


def secondary_scores(qc: torch.Tensor, kc: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Causal scores sum_k q_tk k_sk exp(G_tk - G_sk) of every chunk, any decay, by secondary chunking.

    Each chunk is split into sub-chunks of c steps. For s in an earlier sub-chunk than t, the decay is split
    at r, the step just before t's sub-chunk: exp(G_t - G_r) exp(G_r - G_s), both factors <= 1, so those
    scores are one matmul. Scores inside a sub-chunk are summed over k explicitly from a (c, c, K) tensor.
    """
    B, H, n, C, K = qc.shape
    c = sub_chunk_size(C)
    nb = C // c
    Gs, qs, ks = (x.reshape(B, H, n, nb, c, K) for x in (G, qc, kc))  # (B, H, n, nb, c, K)
    Gr = torch.cat([torch.zeros_like(Gs[..., :1, -1, :]), Gs[..., :-1, -1, :]], dim=-2)  # (B, H, n, nb, K)

    q_ref = qs * (Gs - Gr.unsqueeze(-2)).exp()  # (B, H, n, nb, c, K)
    pos = torch.arange(C, device=qc.device)
    earlier = pos.unsqueeze(0) < pos[::c].unsqueeze(1)  # (nb, C): s lies before sub-chunk i
    to_ref = (Gr.unsqueeze(-2) - G.unsqueeze(-3)).masked_fill(~earlier.unsqueeze(-1), -torch.inf)  # (B, H, n, nb, C, K)
    A = q_ref @ (kc.unsqueeze(-3) * to_ref.exp()).transpose(-1, -2)  # (B, H, n, nb, c, C)

    inner = (Gs.unsqueeze(-2) - Gs.unsqueeze(-3)).masked_fill(~causal_mask(c, qc.device).unsqueeze(-1), -torch.inf)
    A_diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * inner.exp()).sum(-1)  # (B, H, n, nb, c, c)
    eye = torch.eye(nb, dtype=A.dtype, device=qc.device).reshape(nb, 1, nb, 1)
    A = A.reshape(B, H, n, nb, c, nb, c) + A_diag.unsqueeze(-2) * eye  # (B, H, n, nb, c, nb, c)
    return A.reshape(B, H, n, C, C)
