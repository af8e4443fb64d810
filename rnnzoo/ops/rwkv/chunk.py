"""Chunkwise-parallel RWKV-6 and RWKV-7 (derivation in README.md).

Same layout and equations as naive.py (r already scaled). Time is cut into chunks of C steps; G is the
cumulative log-decay restarted at 0 in each chunk (inclusive: G_t = w_1 + ... + w_t), Gx its exclusive form
(Gx_t = G_{t-1}) and E_s = G_C - G_s the decay from step s to the chunk end. Every intra-chunk interaction is
a "decayed score" sum_k x_tk y_sk exp(P_tk - G_sk) with P = G or Gx; ``decayed_scores`` builds these from
sub-chunks so that only exponents <= 0 are ever formed, each a sum of w over the steps it spans. Everything
that does not touch the incoming state is batched over (chunks, B, H); a Python loop over chunks carries the
state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnzoo.ops.linear_attention.chunk import sub_chunk_size


def to_chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """(B, T, H, D) -> (N, B, H, C, D), zero-padded at the end of time (a zero step is the identity)."""
    B, T, H, D = x.shape
    N = -(-T // C)
    x = F.pad(x, (0, 0, 0, 0, 0, N * C - T))  # (B, N*C, H, D)
    return x.reshape(B, N, C, H, D).permute(1, 0, 3, 2, 4).contiguous()


def from_chunks(o: torch.Tensor, T: int) -> torch.Tensor:
    """(N, B, H, C, V) -> (B, T, H, V), dropping the padding."""
    N, B, H, C, V = o.shape
    return o.permute(1, 0, 3, 2, 4).reshape(B, N * C, H, V)[:, :T]


def prefix_suffix(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For log-decays w (..., C, K) along dim -2: the inclusive prefix sums G_t = w_1 + ... + w_t, the exclusive
    ones Gx_t = G_{t-1} and the exclusive suffix sums E_s = w_{s+1} + ... + w_C. The shifted copies keep the
    step-to-step decays exact, and the suffix sums avoid forming G_C - G_s, a difference of two large
    numbers that loses all float32 precision under strong decay."""
    G = w.cumsum(dim=-2)  # (..., C, K), non-increasing in time
    Gx = F.pad(G[..., :-1, :], (0, 0, 1, 0))
    E = F.pad(w.flip(-2).cumsum(dim=-2).flip(-2)[..., 1:, :], (0, 0, 0, 1))
    return G, Gx, E


def decayed_scores(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, strict: bool) -> torch.Tensor:
    """A_ts = sum_k x_tk y_sk exp(P_tk - G_sk) for s < t (strict, P = Gx) or s <= t (P = G), else 0, where G is
    the inclusive cumulative sum of w along time; x, w (..., C, K), y (..., C, K) or (n, ..., C, K) for n score
    matrices that share x (returned as (n, ..., C, C)), so the decays are exponentiated once.

    The chunk is split into sub-chunks of c steps and no exponent is a difference of two chunk-wide cumulative
    sums (which loses float32 precision under strong decay). For t in sub-chunk i and s in an
    earlier sub-chunk j, exp(P_t - G_s) = exp(p_t) exp(e_s + m_ij), with p_t the prefix of t inside i, e_s the
    suffix of s inside j and m_ij the sum of the whole sub-chunks between them; all three are <= 0, so those
    scores are one matmul. Pairs inside one sub-chunk (exponents from prefix sums local to it) are summed
    over k explicitly, a (c, c, K) tensor each.
    """
    *lead, C, K = x.shape
    c = sub_chunk_size(C)
    nb = C // c
    xs, ws = (t.reshape(*lead, nb, c, K) for t in (x, w))  # (..., nb, c, K)
    ys = y.reshape(*y.shape[:-2], nb, c, K)  # ([n,] ..., nb, c, K)
    g, gx, e = prefix_suffix(ws)  # (..., nb, c, K), restarted in each sub-chunk
    p = gx if strict else g
    idx = torch.arange(nb, device=x.device)
    between = ((idx[None, :, None] < idx[None, None, :]) & (idx[None, None, :] < idx[:, None, None])).to(w.dtype)
    m = torch.einsum("ijl,...lk->...ijk", between, g[..., -1, :])  # (..., nb, nb, K): sub-chunks j < l < i
    to_ref = (m.unsqueeze(-2) + e.unsqueeze(-4)).reshape(*lead, nb, C, K)  # (..., nb, C, K)
    pos = torch.arange(C, device=x.device)
    earlier = pos.unsqueeze(0) < pos[::c].unsqueeze(1)  # (nb, C): s lies before sub-chunk i
    # mask before exp: exponents of pairs outside the causal range are meaningless
    to_ref = to_ref.masked_fill(~earlier.unsqueeze(-1), -torch.inf)
    A = (xs * p.exp()) @ (y.unsqueeze(-3) * to_ref.exp()).transpose(-1, -2)  # ([n,] ..., nb, c, C)

    keep = torch.ones(c, c, dtype=torch.bool, device=x.device).tril(-1 if strict else 0)  # (c, c)
    inner = (p.unsqueeze(-2) - g.unsqueeze(-3)).masked_fill(~keep.unsqueeze(-1), -torch.inf)  # (..., nb, c, c, K)
    A_diag = torch.einsum("...tk,...sk,...tsk->...ts", xs, ys, inner.exp())  # ([n,] ..., nb, c, c)
    eye = torch.eye(nb, dtype=A.dtype, device=x.device).reshape(nb, 1, nb, 1)
    out = A.shape[:-3]
    A = A.reshape(*out, nb, c, nb, c) + A_diag.unsqueeze(-2) * eye  # ([n,] ..., nb, c, nb, c)
    return A.reshape(*out, C, C)


def rwkv6_chunk(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                initial_state: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk form of ``rwkv6_recurrent``. Within a chunk from state S_0:

        o_t = (r_t exp(Gx_t))^T S_0 + sum_{s<t} [sum_k r_tk k_sk exp(Gx_tk - G_sk)] v_s + (r_t . u k_t) v_t
        S_C = exp(G_C) S_0 + sum_s (k_s exp(E_s)) v_s^T,      E_s = G_C - G_s = w_{s+1} + ... + w_C
    """
    T = r.shape[1]
    C = min(chunk_size, T)
    r, k, v, w = (to_chunks(x, C) for x in (r, k, v, w))  # (N, B, H, C, K|V)
    G, Gx, E = prefix_suffix(w)  # (N, B, H, C, K)
    bonus = (r * u[:, None] * k).sum(-1, keepdim=True)  # (N, B, H, C, 1)
    o_intra = decayed_scores(r, k, w, strict=True) @ v + bonus * v  # (N, B, H, C, V)
    r_decayed = r * Gx.exp()  # (N, B, H, C, K)
    kv = (k * E.exp()).transpose(-1, -2) @ v  # (N, B, H, K, V)
    chunk_decay = G[..., -1:, :].exp().transpose(-1, -2)  # (N, B, H, K, 1)

    S = initial_state  # (B, H, K, V)
    outs = []
    # unbind, not x[n]: the backward of each index would write a full-size zero gradient, O(N^2) in all
    for o_n, r_n, decay_n, kv_n in zip(*(x.unbind(0) for x in (o_intra, r_decayed, chunk_decay, kv))):
        outs.append(o_n + r_n @ S)
        S = decay_n * S + kv_n
    return from_chunks(torch.stack(outs), T), S


def rwkv7_chunk(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor,
                b: torch.Tensor, initial_state: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk form of ``rwkv7_recurrent``. With the reads z_t = S_{t-1}^T a_t as rows of Z (C, V), a chunk from
    state S_0 unrolls to S_t = exp(G_t) S_0 + sum_{s<=t} exp(G_t - G_s) (b_s z_s^T + k_s v_s^T), so

        (I - A_ab) Z = (a exp(Gx)) S_0 + A_ak V                  (A_xy: decayed scores with P = Gx, s < t)
        O   = (r exp(G)) S_0 + A_rb Z + A_rk V                   (P = G, s <= t)
        S_C = exp(G_C) S_0 + (b exp(E))^T Z + (k exp(E))^T V

    I - A_ab is unit lower triangular; one solve for all chunks gives Z = Z0 + W S_0 (the UT transform).
    """
    T, V = v.shape[1], v.shape[-1]
    C = min(chunk_size, T)
    r, w, k, v, a, b = (to_chunks(x, C) for x in (r, w, k, v, a, b))  # (N, B, H, C, K|V)
    G, Gx, E = prefix_suffix(w)  # (N, B, H, C, K)
    bk = torch.stack([b, k])  # (2, N, B, H, C, K)
    A_ab, A_ak = decayed_scores(a, bk, w, strict=True)  # (N, B, H, C, C) each
    rhs = torch.cat([A_ak @ v, a * Gx.exp()], dim=-1)  # (N, B, H, C, V+K)
    # the unit diagonal of I - A_ab is implied by unitriangular=True
    Z0, W = torch.linalg.solve_triangular(-A_ab, rhs, upper=False, unitriangular=True).split([V, k.shape[-1]], -1)
    A_rb, A_rk = decayed_scores(r, bk, w, strict=False)  # (N, B, H, C, C) each
    o_base = A_rk @ v + A_rb @ Z0  # (N, B, H, C, V)
    r_S0 = r * G.exp() + A_rb @ W  # (N, B, H, C, K): o = o_base + r_S0 S_0
    b_end = (b * E.exp()).transpose(-1, -2)  # (N, B, H, K, C)
    kv = (k * E.exp()).transpose(-1, -2) @ v + b_end @ Z0  # (N, B, H, K, V)
    chunk_map = torch.diag_embed(G[..., -1, :].exp()) + b_end @ W  # (N, B, H, K, K): S_C = chunk_map S_0 + kv

    S = initial_state  # (B, H, K, V)
    outs = []
    # unbind, not x[n]: the backward of each index would write a full-size zero gradient, O(N^2) in all
    for o_n, r_n, map_n, kv_n in zip(*(x.unbind(0) for x in (o_base, r_S0, chunk_map, kv))):
        outs.append(o_n + r_n @ S)
        S = map_n @ S + kv_n
    return from_chunks(torch.stack(outs), T), S
