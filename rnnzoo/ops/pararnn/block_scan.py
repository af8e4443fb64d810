"""The 2x2-block linear recurrence s_t = a_t @ s_{t-1} + b_t in parallel: Hillis-Steele doubling inside
chunks, with 2x2 matrix products (see README.md).

2x2 products are written as two broadcast products and a sum over the whole tensor, rather than a batched
matmul of millions of tiny matrices.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.scan.parallel import chunk_view


def matmul2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x @ y for 2x2 matrices on the last two dims: (x y)_ik = x_i0 y_0k + x_i1 y_1k."""
    return x[..., :, :1] * y[..., :1, :] + x[..., :, 1:] * y[..., 1:, :]


def matvec2(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x @ v for x (..., 2, 2) and v (..., 2): (x v)_i = x_i0 v_0 + x_i1 v_1."""
    return x[..., 0] * v[..., :1] + x[..., 1] * v[..., 1:]


def shift(x: torch.Tensor, d: int, fill: torch.Tensor) -> torch.Tensor:
    """x[:, :, t - d] along the in-chunk axis (dim 2), ``fill`` where t < d."""
    return torch.cat([fill.expand(*x.shape[:2], d, *x.shape[3:]), x[:, :, :-d]], dim=2)


def block_scan_chunked(a: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None,
                       chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """a (B, T, ..., 2, 2), b (B, T, ..., 2), s0 (B, ..., 2) or None for zeros. Returns (s (B, T, ..., 2), s_T).

    Hillis-Steele doubling on the pairs (A, B) inside each chunk: the pair maps s to A s + B, and applying u
    then t gives (A_t A_u, A_t B_u + B_t). After log2(C) doublings, (A_t, B_t) maps the state before the chunk
    to s_t. The chunk ends are scanned by the same function (recursively), then s_t = B_t + A_t s_start.
    Time is padded with the identity map; only products of true factors appear.
    """
    B, T = a.shape[:2]
    one, zero = torch.eye(2, dtype=a.dtype, device=a.device), b.new_zeros(2)
    A, Bt = chunk_view(a, chunk_size, one), chunk_view(b, chunk_size, zero)  # (B, n, C, ..., 2, 2), (..., 2)
    d = 1
    while d < chunk_size:
        Bt = Bt + matvec2(A, shift(Bt, d, zero))
        A = matmul2(A, shift(A, d, one))
        d *= 2
    if A.shape[1] == 1:
        start = None if s0 is None else s0.unsqueeze(1)  # (B, 1, ..., 2)
    else:
        ends, _ = block_scan_chunked(A[:, :, -1], Bt[:, :, -1], s0, chunk_size)  # (B, n, ..., 2)
        first = torch.zeros_like(ends[:, :1]) if s0 is None else s0.unsqueeze(1)
        start = torch.cat([first, ends[:, :-1]], dim=1)  # (B, n, ..., 2): the state before each chunk
    s = Bt if start is None else Bt + matvec2(A, start.unsqueeze(2))  # (B, n, C, ..., 2)
    s = s.reshape(B, -1, *b.shape[2:])[:, :T]
    return s, s[:, -1]
