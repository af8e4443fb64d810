"""The 2x2-block linear recurrence s_t = a_t @ s_{t-1} + b_t in parallel: the chunked doubling of
rnnzoo/ops/scan/parallel.py with 2x2 matrix products in place of scalar ones (see README.md).

2x2 products are written as two broadcast products and a sum over the whole tensor, rather than a batched
matmul of millions of tiny matrices.
"""
from __future__ import annotations

import torch


def matmul2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x @ y for 2x2 matrices on the last two dims: (x y)_ik = x_i0 y_0k + x_i1 y_1k."""
    return x[..., :, :1] * y[..., :1, :] + x[..., :, 1:] * y[..., 1:, :]


def matvec2(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x @ v for x (..., 2, 2) and v (..., 2): (x v)_i = x_i0 v_0 + x_i1 v_1."""
    return x[..., 0] * v[..., :1] + x[..., 1] * v[..., 1:]


def chunk_view(x: torch.Tensor, C: int, fill: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B, n, C, ...), padding the end of time with copies of ``fill`` (one time step's trailing
    shape, e.g. the identity matrix) up to a multiple of C."""
    pad = -x.shape[1] % C
    if pad:
        x = torch.cat([x, fill.expand(x.shape[0], pad, *x.shape[2:])], dim=1)
    return x.reshape(x.shape[0], -1, C, *x.shape[2:])


def shift(x: torch.Tensor, d: int, fill: torch.Tensor) -> torch.Tensor:
    """x[:, :, t - d] along the in-chunk axis (dim 2), ``fill`` where t < d."""
    return torch.cat([fill.expand(*x.shape[:2], d, *x.shape[3:]), x[:, :, :-d]], dim=2)


def block_scan_chunked(a: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None,
                       chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """a (B, T, ..., 2, 2), b (B, T, ..., 2), s0 (B, ..., 2) or None for zeros. Returns (s (B, T, ..., 2), s_T).

    The pair (A_t, B_t) maps s to A_t s + B_t; applying s's map, then t's, gives (A_t A_s, A_t B_s + B_t).
    Hillis-Steele doubling inside each chunk of C steps, then the chunk ends are scanned by this same function
    (T / C elements, recursively) to give every chunk its starting state. Padding uses the identity map.
    """
    B, T = a.shape[:2]
    eye, zero = torch.eye(2, dtype=a.dtype, device=a.device), a.new_zeros(2)
    A, S = chunk_view(a, chunk_size, eye), chunk_view(b, chunk_size, zero)  # (B, n, C, ..., 2, 2), (B, n, C, ..., 2)
    d = 1
    while d < chunk_size:
        S = S + matvec2(A, shift(S, d, zero))
        A = matmul2(A, shift(A, d, eye))
        d *= 2
    if A.shape[1] == 1:
        start = None if s0 is None else s0.unsqueeze(1)  # (B, 1, ..., 2)
    else:
        ends, _ = block_scan_chunked(A[:, :, -1], S[:, :, -1], s0, chunk_size)  # (B, n, ..., 2): s at chunk ends
        first = torch.zeros_like(ends[:, :1]) if s0 is None else s0.unsqueeze(1)
        start = torch.cat([first, ends[:, :-1]], dim=1)  # (B, n, ..., 2): s before each chunk
    s = S if start is None else S + matvec2(A, start.unsqueeze(2))  # (B, n, C, ..., 2)
    s = s.reshape(B, -1, *b.shape[2:])[:, :T]
    return s, s[:, -1]
