"""Blocked forms of h_t = a_t * h_{t-1} + b_t, linear and log space (see README.md for the derivations).

Time is cut into n chunks of C steps. Phase 1 runs the recurrence from zero inside every chunk at once: C
vectorised steps over (B, n, ...) slices. Phase 2 runs it over the n chunk ends, with the product of each
chunk's factors, to get the state before every chunk. Phase 3 adds that state, scaled by the in-chunk
products, in one pass. Work is O(T), the Python loop has C + n iterations, and the arithmetic is the loop's:
nothing is divided by a cumulative product. The backward pass is the adjoint recurrence, run by the same
blocked loop backwards in time.
"""
from __future__ import annotations

import torch


def chunk_view(x: torch.Tensor, C: int, fill: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B, n, C, ...), padding the end of time with copies of ``fill`` (a scalar, or one time
    step's trailing shape, e.g. an identity matrix) up to a multiple of C."""
    pad = -x.shape[1] % C
    if pad:
        x = torch.cat([x, fill.expand(x.shape[0], pad, *x.shape[2:])], dim=1)
    return x.reshape(x.shape[0], -1, C, *x.shape[2:])


def unchunk(x: torch.Tensor, T: int) -> torch.Tensor:
    """(B, n, C, ...) -> (B, T, ...), dropping the padding."""
    return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :T]


def blocked_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, C: int) -> torch.Tensor:
    """h (B, T, ...) for h_t = a_t h_{t-1} + b_t, h_0 = h0 (None: zeros); not differentiable by autograd."""
    T = a.shape[1]
    av, h = chunk_view(a, C, a.new_ones(())), chunk_view(b, C, b.new_zeros(())).clone()  # (B, n, C, ...)
    for t in range(1, C):  # phase 1: every chunk from h = 0
        h[:, :, t].addcmul_(av[:, :, t], h[:, :, t - 1])
    n = av.shape[1]
    if n == 1 and h0 is None:
        return unchunk(h, T)
    prod = av.cumprod(dim=2)  # (B, n, C, ...): products of true factors only
    start = torch.zeros_like(h[:, :, 0])  # (B, n, ...): h before each chunk
    if h0 is not None:
        start[:, 0] = h0
    for j in range(1, n):  # phase 2: the chunk ends
        torch.addcmul(h[:, j - 1, -1], prod[:, j - 1, -1], start[:, j - 1], out=start[:, j])
    return unchunk(h.addcmul_(prod, start.unsqueeze(2)), T)  # phase 3


def adjoint(c: torch.Tensor, grad: torch.Tensor, C: int) -> torch.Tensor:
    """g_t = grad_t + c_{t+1} g_{t+1} (g_{T-1} = grad_{T-1}): the backward recurrence, blocked in reverse time."""
    c_next = torch.cat([c[:, 1:], c.new_zeros(c[:, :1].shape)], dim=1)  # the last step has no successor
    return blocked_scan(c_next.flip(1), grad.flip(1), None, C).flip(1)


def with_last(grad_h: torch.Tensor, grad_last: torch.Tensor) -> torch.Tensor:
    """The gradient of every h_t, the returned final state's included (it is h_{T-1})."""
    grad = grad_h.clone()
    grad[:, -1] += grad_last
    return grad


class Scan(torch.autograd.Function):
    """Linear space, any real a: da_t = g_t h_{t-1}, db_t = g_t, dh_0 = a_1 g_1 with g the adjoint."""

    @staticmethod
    def forward(ctx, a, b, h0, C):
        h = blocked_scan(a, b, h0, C)  # (B, T, ...)
        ctx.save_for_backward(a, h, h0)
        ctx.C = C
        return h, h[:, -1]

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        a, h, h0 = ctx.saved_tensors
        g = adjoint(a, with_last(grad_h, grad_last), ctx.C)  # dL/dh_t through every later step
        first = torch.zeros_like(h[:, :1]) if h0 is None else h0.unsqueeze(1)
        grad_a = g * torch.cat([first, h[:, :-1]], dim=1)  # (B, T, ...)
        return grad_a, g, None if h0 is None else a[:, 0] * g[:, 0], None


def scan_chunked(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None,
                 chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Any real a (negative and zero included), elementwise."""
    return Scan.apply(a, b, h0, chunk_size)


def blocked_log_scan(log_a: torch.Tensor, log_b: torch.Tensor, log_h0: torch.Tensor | None,
                     C: int) -> torch.Tensor:
    """log h for log h_t = logaddexp(log a_t + log h_{t-1}, log b_t); the blocked phases with logaddexp for +
    and + for *. A chunk's log-product is a sum over at most C steps, added to the term it scales."""
    T = log_a.shape[1]
    zero = log_a.new_zeros(())  # finite padding, after T, never reaches a returned value
    la, L = chunk_view(log_a, C, zero), chunk_view(log_b, C, zero).clone()  # (B, n, C, ...)
    for t in range(1, C):
        torch.logaddexp(la[:, :, t] + L[:, :, t - 1], L[:, :, t], out=L[:, :, t])
    n = la.shape[1]
    if n == 1 and log_h0 is None:
        return unchunk(L, T)
    log_prod = la.cumsum(dim=2)  # (B, n, C, ...)
    start = torch.full_like(L[:, :, 0], -torch.inf)  # (B, n, ...): log h before each chunk
    if log_h0 is not None:
        start[:, 0] = log_h0
    for j in range(1, n):
        torch.logaddexp(log_prod[:, j - 1, -1] + start[:, j - 1], L[:, j - 1, -1], out=start[:, j])
    return unchunk(torch.logaddexp(L, log_prod + start.unsqueeze(2)), T)


class LogScan(torch.autograd.Function):
    """Log space: with w_t = exp(log a_t + log h_{t-1} - log h_t), the share of h_t carried over, the adjoint
    g_t = dL/dlog h_t + w_{t+1} g_{t+1} gives dlog a_t = g_t w_t and dlog b_t = g_t exp(log b_t - log h_t)."""

    @staticmethod
    def forward(ctx, log_a, log_b, log_h0, C):
        log_h = blocked_log_scan(log_a, log_b, log_h0, C)  # (B, T, ...)
        ctx.save_for_backward(log_a, log_b, log_h, log_h0)
        ctx.C = C
        return log_h, log_h[:, -1]

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        log_a, log_b, log_h, log_h0 = ctx.saved_tensors
        first = torch.full_like(log_h[:, :1], -torch.inf) if log_h0 is None else log_h0.unsqueeze(1)
        w = (log_a + torch.cat([first, log_h[:, :-1]], dim=1) - log_h).exp()  # (B, T, ...), in [0, 1]
        g = adjoint(w, with_last(grad_h, grad_last), ctx.C)
        grad_b = g * (log_b - log_h).exp()
        return g * w, grad_b, None if log_h0 is None else w[:, 0] * g[:, 0], None


def scan_log_space_chunked(log_a: torch.Tensor, log_b: torch.Tensor, log_h0: torch.Tensor | None,
                           chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive a, b given as logs; log h_0 = log_h0 (None: h_0 = 0)."""
    return LogScan.apply(log_a, log_b, log_h0, chunk_size)
