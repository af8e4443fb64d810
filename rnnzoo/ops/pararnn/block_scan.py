"""The 2x2-block linear recurrence s_t = a_t @ s_{t-1} + b_t in parallel: the chunked doubling of
rnnzoo/ops/scan/parallel.py with 2x2 matrix products in place of scalar ones (see README.md).

2x2 products are written as two broadcast products and a sum over the whole tensor, rather than a batched
matmul of millions of tiny matrices.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.scan.parallel import doubling_scan


def matmul2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x @ y for 2x2 matrices on the last two dims: (x y)_ik = x_i0 y_0k + x_i1 y_1k."""
    return x[..., :, :1] * y[..., :1, :] + x[..., :, 1:] * y[..., 1:, :]


def matvec2(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x @ v for x (..., 2, 2) and v (..., 2): (x v)_i = x_i0 v_0 + x_i1 v_1."""
    return x[..., 0] * v[..., :1] + x[..., 1] * v[..., 1:]


def block_scan_chunked(a: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None,
                       chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """a (B, T, ..., 2, 2), b (B, T, ..., 2), s0 (B, ..., 2) or None for zeros. Returns (s (B, T, ..., 2), s_T):
    rnnzoo.ops.scan's doubling scan with 2x2 products, padded with the identity map."""
    return doubling_scan(a, b, s0, chunk_size, matmul2, matvec2, torch.eye(2, dtype=a.dtype, device=a.device),
                         b.new_zeros(2))
