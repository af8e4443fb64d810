"""Retrieval in a modern continuous Hopfield network (Ramsauer et al. 2020, "Hopfield networks is all you need").

With stored patterns X = (x_1 .. x_M) and a state pattern xi, one update is

    xi <- X softmax(beta X^T xi)

which lowers the energy E(xi) = -lse(beta, X^T xi) + xi^T xi / 2 + log(M) / beta + max_m |x_m|^2 / 2,
lse(beta, z) = log(sum_m exp(beta z_m)) / beta, at every step (a concave-convex procedure) and converges to
a fixed point near a stored pattern when the patterns are well separated and beta is large, or near the mean
of a group of similar patterns (a metastable state) when beta is small. One update is softmax attention with
the patterns as both keys and values and 1/beta as the temperature.

Layout: patterns (B, M, d), queries (B, Q, d), beta a float or a tensor () or (B,), mask (B, Q, M) bool
(True = the query sees the pattern). Each batch row stores its own patterns.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import check_rank, check_tensor

__all__ = ["hopfield_energy", "hopfield_retrieve"]


def hopfield_retrieve(patterns: torch.Tensor, queries: torch.Tensor, beta: float | torch.Tensor, n_iter: int = 1,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """``n_iter`` updates xi <- X softmax(beta X^T xi) of each query (B, Q, d) over the patterns (B, M, d), the
    softmax over the patterns the mask lets each query see (every query must see one). Returns (B, Q, d)."""
    B, Q, M = _check("hopfield_retrieve", patterns, queries, beta)
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or n_iter < 0:
        raise ConfigError(f"hopfield_retrieve: n_iter must be an int >= 0, got {n_iter!r}")
    if mask is not None and not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
                                 and mask.shape == (B, Q, M) and mask.device == queries.device):
        got = (f"{mask.dtype} {tuple(mask.shape)} on {mask.device}" if isinstance(mask, torch.Tensor)
               else type(mask).__name__)
        raise ShapeError(f"hopfield_retrieve: mask must be a bool tensor of shape (B, Q, M) = ({B}, {Q}, {M}) "
                         f"on {queries.device}, got {got}")
    beta = _beta(beta, queries)  # (B or 1, 1, 1)
    xi = queries
    for _ in range(n_iter):
        xi = F.scaled_dot_product_attention(beta * xi, patterns, patterns, attn_mask=mask, scale=1.0)  # (B, Q, d)
    return xi


def hopfield_energy(patterns: torch.Tensor, queries: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """E(xi) of each query (B, Q, d) given the patterns (B, M, d) (formula in the module docstring); (B, Q)."""
    _, _, M = _check("hopfield_energy", patterns, queries, beta)
    beta = _beta(beta, queries)[..., 0]  # (B or 1, 1)
    lse = torch.logsumexp(beta[..., None] * queries @ patterns.mT, dim=-1) / beta  # (B, Q)
    largest = patterns.pow(2).sum(-1).amax(-1, keepdim=True)  # (B, 1)
    return -lse + queries.pow(2).sum(-1) / 2 + math.log(M) / beta + largest / 2


def _check(op: str, patterns: object, queries: object, beta: object) -> tuple[int, int, int]:
    check_rank(op, "queries", queries, 3, "(B, Q, d)")
    if not queries.is_floating_point():
        raise ShapeError(f"{op}: queries must be a floating tensor, got {queries.dtype}")
    B, Q, d = queries.shape
    check_rank(op, "patterns", patterns, 3, "(B, M, d)")
    M = patterns.shape[1]
    check_tensor(op, "patterns", patterns, (B, M, d), "(B, M, d)", queries, ref="queries")
    if M == 0:
        raise ShapeError(f"{op}: there are no stored patterns (M = 0); store at least one")
    if isinstance(beta, torch.Tensor):
        if beta.shape not in ((), (B,)):
            raise ShapeError(f"{op}: a tensor beta must have shape () or (B,) = ({B},), got {tuple(beta.shape)}")
        positive = bool((beta > 0).all())
    else:
        positive = isinstance(beta, (int, float)) and not isinstance(beta, bool) and beta > 0
    if not positive:
        raise ConfigError(f"{op}: beta is an inverse temperature and must be > 0, got {beta!r}")
    return B, Q, M


def _beta(beta: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(beta, dtype=like.dtype, device=like.device).reshape(-1, 1, 1)
