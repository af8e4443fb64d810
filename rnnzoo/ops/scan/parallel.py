"""Parallel forms of h_t = a_t * h_{t-1} + b_t (see README.md for the derivations).

Both split time into chunks of C steps, scan every chunk at once, then give each chunk the state at the end of
the previous one by scanning the chunk ends with the same function (T / C elements, recursively). Nothing is
divided by a cumulative product, so a long T neither overflows nor underflows.
"""
from __future__ import annotations

from typing import Callable

import torch


def chunk_view(x: torch.Tensor, C: int, fill: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B, n, C, ...), padding the end of time with copies of ``fill`` (a scalar, or one time
    step's trailing shape, e.g. an identity matrix) up to a multiple of C."""
    pad = -x.shape[1] % C
    if pad:
        x = torch.cat([x, fill.expand(x.shape[0], pad, *x.shape[2:])], dim=1)
    return x.reshape(x.shape[0], -1, C, *x.shape[2:])


def shift(x: torch.Tensor, d: int, fill: torch.Tensor) -> torch.Tensor:
    """x[:, :, t - d] along the in-chunk axis (dim 2), ``fill`` where t < d."""
    return torch.cat([fill.expand(*x.shape[:2], d, *x.shape[3:]), x[:, :, :-d]], dim=2)


def doubling_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, chunk_size: int, compose: Callable,
                  apply: Callable, one: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t h_{t-1} + b_t for any linear maps a_t: Hillis-Steele doubling on the pairs (A, B) inside each
    chunk. ``compose(x, y)`` is the map x after y, ``apply(x, h)`` the map x applied to h; ``one`` and ``zero``
    (one step's identity map and zero state) pad time. Elementwise maps use torch.mul for both; the 2x2 blocks
    of rnnzoo.ops.pararnn use 2x2 products.

    The pair (A_t, B_t) maps h to A_t h + B_t; applying s then t gives (A_t A_s, A_t B_s + B_t). After
    log2(C) doublings, (A_t, B_t) maps the state before the chunk to h_t. Only products of true factors appear.
    """
    B, T = a.shape[:2]
    A, Bt = chunk_view(a, chunk_size, one), chunk_view(b, chunk_size, zero)  # (B, n, C, ...)
    d = 1
    while d < chunk_size:
        Bt = Bt + apply(A, shift(Bt, d, zero))
        A = compose(A, shift(A, d, one))
        d *= 2
    if A.shape[1] == 1:
        start = None if h0 is None else h0.unsqueeze(1)  # (B, 1, ...)
    else:
        ends, _ = doubling_scan(A[:, :, -1], Bt[:, :, -1], h0, chunk_size, compose, apply, one, zero)  # (B, n, ...)
        first = torch.zeros_like(ends[:, :1]) if h0 is None else h0.unsqueeze(1)
        start = torch.cat([first, ends[:, :-1]], dim=1)  # (B, n, ...): h before each chunk
    h = Bt if start is None else Bt + apply(A, start.unsqueeze(2))  # (B, n, C, ...)
    h = h.reshape(B, -1, *b.shape[2:])[:, :T]
    return h, h[:, -1]


def scan_chunked(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None,
                 chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Any real a (negative and zero included), elementwise: ``doubling_scan`` with products of numbers."""
    return doubling_scan(a, b, h0, chunk_size, torch.mul, torch.mul, a.new_ones(()), b.new_zeros(()))


def scan_log_space_chunked(log_a: torch.Tensor, log_b: torch.Tensor, log_h0: torch.Tensor | None,
                           chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive a, b given as logs: the same doubling on the pairs (log A, log B), composed in log space.

    Applying s then t gives (log A_t + log A_s, logaddexp(log A_t + log B_s, log B_t)). Every log A is the sum
    of log a over a segment, added to the term it scales, never subtracted from a long cumulative sum, so
    float32 keeps full relative precision (the logcumsumexp(log b - cumsum(log a)) form cancels large sums).
    """
    B, T = log_a.shape[:2]
    # the padding sits after T in the last chunk and so never reaches a returned value; a finite fill keeps
    # logaddexp's gradient free of NaN
    zero, minus_inf = log_a.new_zeros(()), log_b.new_full((), -torch.inf)
    A, L = chunk_view(log_a, chunk_size, zero), chunk_view(log_b, chunk_size, zero)  # (B, n, C, ...)
    d = 1
    while d < chunk_size:
        L = torch.logaddexp(L, A + shift(L, d, minus_inf))
        A = A + shift(A, d, zero)
        d *= 2
    if A.shape[1] == 1:
        start = None if log_h0 is None else log_h0.unsqueeze(1)  # (B, 1, ...)
    else:
        ends, _ = scan_log_space_chunked(A[:, :, -1], L[:, :, -1], log_h0, chunk_size)  # (B, n, ...)
        start = ends[:, :-1] if log_h0 is None else torch.cat([log_h0.unsqueeze(1), ends[:, :-1]], dim=1)
    if start is None:
        log_h = L
    elif log_h0 is None:
        rest = torch.logaddexp(L[:, 1:], A[:, 1:] + start.unsqueeze(2))  # the first chunk starts from h = 0
        log_h = torch.cat([L[:, :1], rest], dim=1)
    else:
        log_h = torch.logaddexp(L, A + start.unsqueeze(2))
    log_h = log_h.reshape(B, -1, *log_a.shape[2:])[:, :T]
    return log_h, log_h[:, -1]
