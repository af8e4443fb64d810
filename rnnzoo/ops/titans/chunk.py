"""The chunked parallel form of the Titans memory (Behrouz et al. 2025, section 3.2): mini-batch gradient descent
with momentum and weight decay written as a few batched matmuls per chunk. The derivation is in README.md.

Layout as in naive.py. Inside a chunk of n tokens every gradient is taken at the chunk-start weights P, so the
n gradients come from one batched forward and backward pass, and M_t, S_t are linear in them:

    S_t = E_t S_0 - sum_{i<=t} (E_t / E_i) theta_i u_i                     E_t = prod_{j<=t} eta_j
    M_t = beta_t M_0 + f_t S_0 - sum_{i<=t} c_ti u_i                       beta_t = prod_{j<=t} (1 - alpha_j)
    c_ti = theta_i sum_{i<=s<=t} (beta_t / beta_s) (E_s / E_i),   f_t = sum_{s<=t} (beta_t / beta_s) E_s

Each u_i is an outer product delta_i^T a_i, so M_t(q_t) never forms the per-token weights: the sum over i
becomes a causal (n, n) matrix of coefficients times dot products, as in linear attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnzoo.ops.loop import segment_sizes
from rnnzoo.ops.titans.memory import MemoryState, clip_rate, loss_grad_factors


def segment_sum(log_a: torch.Tensor) -> torch.Tensor:
    """log_a (..., n) -> (..., n, n) with [t, s] = sum_{s<j<=t} log_a_j for s <= t, -inf above the diagonal.

    Summing a masked copy instead of subtracting cumulative sums keeps a decay of exactly zero (-inf) exact.
    """
    n = log_a.shape[-1]
    ones = torch.ones(n, n, dtype=torch.bool, device=log_a.device)
    x = log_a[..., :, None].expand(*log_a.shape, n)  # (..., n, n), [j, s] = log_a_j
    x = x.masked_fill(~torch.tril(ones, -1), 0).cumsum(-2)  # [t, s] = sum over s < j <= t
    return x.masked_fill(~torch.tril(ones), float("-inf"))


def chunk_update(q, k, v, log_eta, theta, log_keep, state: MemoryState,
                 max_grad_norm: float | None) -> tuple[torch.Tensor, tuple, tuple]:
    """One chunk: q, k (B, H, n, K), v (B, H, n, V), log eta, theta, log (1 - alpha) (B, H, n).

    Returns o (B, H, n, V) and the weights and momentum after the chunk's last token.
    """
    acts, deltas = loss_grad_factors(state.anchor, k, v)  # a_{l-1} (B, H, n, d_{l-1}), delta_l (B, H, n, d_l)
    theta = clip_rate(theta, acts, deltas, max_grad_norm)  # (B, H, n)
    D_keep = segment_sum(log_keep).exp()  # (B, H, n, n), beta_t / beta_s
    D_eta = segment_sum(log_eta).exp()  # (B, H, n, n), E_s / E_i
    c = (D_keep @ D_eta) * theta[..., None, :]  # (B, H, n, n), c_ti
    E = log_eta.cumsum(-1).exp()[..., None]  # (B, H, n, 1)
    f = D_keep @ E  # (B, H, n, 1)
    beta = log_keep.cumsum(-1).exp()[..., None]  # (B, H, n, 1)
    h = q
    for l, (W, S, a, d) in enumerate(zip(state.weights, state.momentum, acts, deltas)):
        h = beta * (h @ W.mT) + f * (h @ S.mT) - (c * (h @ a.mT)) @ d  # (B, H, n, d_l), M_t's layer l on h_t
        if l < len(acts) - 1:
            h = F.silu(h)
    c_end = c[..., -1, :, None]  # (B, H, n, 1)
    m_end = (D_eta[..., -1, :] * theta)[..., None]  # (B, H, n, 1), (E_n / E_i) theta_i
    weights = tuple(beta[..., -1:, :] * W + f[..., -1:, :] * S - d.mT @ (c_end * a)
                    for W, S, a, d in zip(state.weights, state.momentum, acts, deltas))
    momentum = tuple(E[..., -1:, :] * S - d.mT @ (m_end * a) for S, a, d in zip(state.momentum, acts, deltas))
    return h, weights, momentum


def titans_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor, theta: torch.Tensor,
                 alpha: torch.Tensor, state: MemoryState, chunk_size: int, offset: int,
                 max_grad_norm: float | None = None) -> tuple[torch.Tensor, MemoryState]:
    """The whole sequence in chunks aligned to the absolute position: the first token is number ``offset`` of its
    chunk, so the first piece is cut short and ends at the boundary where the anchor becomes the weights."""
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, T, K), (B, H, T, K), (B, H, T, V)
    log_eta, log_keep, theta = eta.log().transpose(1, 2), torch.log1p(-alpha).transpose(1, 2), theta.transpose(1, 2)
    sizes = segment_sizes(q.shape[2], offset, chunk_size)
    outs, end = [], 0
    for q_c, k_c, v_c, eta_c, theta_c, keep_c in zip(*(x.split(sizes, dim=2) for x in (q, k, v)),
                                                     *(x.split(sizes, dim=-1) for x in (log_eta, theta, log_keep))):
        o, weights, momentum = chunk_update(q_c, k_c, v_c, eta_c, theta_c, keep_c, state, max_grad_norm)
        end += q_c.shape[2]
        anchor = weights if (offset + end) % chunk_size == 0 else state.anchor
        state = MemoryState(weights, momentum, anchor)
        outs.append(o)
    return torch.cat(outs, dim=2).transpose(1, 2), state
