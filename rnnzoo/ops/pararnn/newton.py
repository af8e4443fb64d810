"""Newton's method over the sequence length (DEER, Lim et al. 2024; ParaRNN, Danieli et al. 2025).

The recurrence s_t = f(s_{t-1}, x_t), t = 1..T, is the system F(s)_t = s_t - f(s_{t-1}, x_t) = 0 in all of
s = (s_1..s_T) at once. Linearizing f around a guess s^(k) gives a linear recurrence,

    s_t = J_t s_{t-1} + (f(s^(k)_{t-1}, x_t) - J_t s^(k)_{t-1}),   J_t = df/ds at s^(k)_{t-1},

solved for all t by a parallel scan; its solution is s^(k+1). The cells here have a diagonal recurrence, so
J_t is diagonal (GRU: one scalar per unit) or block-diagonal (LSTM: a 2x2 block per unit on (h, c)).
Gradients do not go through the iterations: at the solution s* the adjoint is the linear recurrence

    lambda_t = dL/ds_t + J_{t+1}^T lambda_{t+1}   (a scan in reversed time),

and the gradients to the inputs, the recurrent weights and s_0 are one vector-Jacobian product of f over all
t at (s*_{t-1}, x_t) with cotangent lambda_t.
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from rnnzoo.errors import DivergedError
from rnnzoo.ops.pararnn.block_scan import block_scan_chunked, matvec2
from rnnzoo.ops.pararnn.naive import gru_cell, lstm_cell
from rnnzoo.ops.scan import scan

# Chunk length of the 2x2-block scan. Short chunks do the least work (the doubling costs log2(C) passes per
# level), which is what counts on a CPU. The elementwise scan is blocked (O(T) work) and keeps its default.
CHUNK_SIZE = 4

_WARNED: set[str] = set()  # ops that already warned about falling back to the loop


class NewtonInfo(NamedTuple):
    """What one Newton solve did."""
    iterations: int  # Newton steps taken, each one linearization and one scan
    step: float  # max |s^(k) - s^(k-1)| of the last step; near the solution s^(k)'s error is of order step^2
    converged: bool  # False: Newton stopped at max_iters and the sequential loop gave the result


class NewtonCell(NamedTuple):
    """A recurrence s_t = step(s_{t-1}, *x_t, *params) with a diagonal or 2x2-block-diagonal Jacobian.

    ``step`` and ``linearize`` take s (B, ...) with the inputs of one step (B, H), or s (B, T, ...) with the
    inputs of all T steps at once; ``linearize`` returns (step(s, ...), d step / d s). ``block`` says the state
    carries a trailing axis of 2 and the Jacobian two, (..., 2, 2); otherwise the Jacobian is elementwise.
    """
    step: Callable[..., torch.Tensor]
    linearize: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    block: bool


def gru_linearize(h, xz, xr, xc, uz, ur, uc):
    """gru_cell and its derivative in h, elementwise (each unit reads only its own h):

        dh'/dh = 1 - z + z * ((1 - z) * uz * (c - h) + dc/dh),  dc/dh = (1 - c^2) * uc * r * (1 + (1 - r) * ur * h)
    """
    z = torch.sigmoid(torch.addcmul(xz, uz, h))
    r = torch.sigmoid(torch.addcmul(xr, ur, h))
    c = torch.tanh(torch.addcmul(xc, uc, r * h))
    d, one_z = c - h, 1 - z
    dc = (1 - c * c) * uc * r * (1 + (1 - r) * ur * h)
    return torch.addcmul(h, z, d), torch.addcmul(one_z, z, torch.addcmul(dc, one_z * uz, d))


def lstm_step(s, xi, xf, xg, xo, ui, uf, ug, uo):
    """lstm_cell on the state s (..., H, 2) = (h, c) stacked on the last axis."""
    return torch.stack(lstm_cell(s[..., 0], s[..., 1], xi, xf, xg, xo, ui, uf, ug, uo), dim=-1)


def lstm_linearize(s, xi, xf, xg, xo, ui, uf, ug, uo):
    """lstm_step and its Jacobian (..., H, 2, 2): row 0 is d h' / d (h, c), row 1 is d c' / d (h, c)."""
    h, c = s[..., 0], s[..., 1]
    i = torch.sigmoid(xi + ui * h)
    f = torch.sigmoid(xf + uf * h)
    g = torch.tanh(xg + ug * h)
    o = torch.sigmoid(xo + uo * h)
    c_new = f * c + i * g
    tc = torch.tanh(c_new)
    dc_dh = c * f * (1 - f) * uf + g * i * (1 - i) * ui + i * (1 - g * g) * ug
    dh_dc_new = o * (1 - tc * tc)
    dh_dh = o * (1 - o) * uo * tc + dh_dc_new * dc_dh
    J = torch.stack([torch.stack([dh_dh, dh_dc_new * f], dim=-1), torch.stack([dc_dh, f], dim=-1)], dim=-2)
    return torch.stack([o * tc, c_new], dim=-1), J


GRU = NewtonCell(gru_cell, gru_linearize, block=False)
LSTM = NewtonCell(lstm_step, lstm_linearize, block=True)


def linear_scan(cell: NewtonCell, a: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None) -> torch.Tensor:
    """s_t = a_t s_{t-1} + b_t over dim 1: elementwise, or with 2x2 blocks for a block cell."""
    if cell.block:
        return block_scan_chunked(a, b, s0, CHUNK_SIZE)[0]
    return scan(a, b, s0, mode="chunk")[0]


def previous(s: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
    """(s_0, ..., s_{T-1}) from s (B, T, ...) and s0 (B, ...): the state each step starts from."""
    return torch.cat([s0.unsqueeze(1), s[:, :-1]], dim=1)


def sequential(cell: NewtonCell, s0: torch.Tensor, inputs: tuple, params: tuple) -> torch.Tensor:
    """The plain loop over t; the fallback when Newton does not converge."""
    s, out = s0, []
    for x_t in zip(*(x.unbind(1) for x in inputs)):
        s = cell.step(s, *x_t, *params)  # (B, ...)
        out.append(s)
    return torch.stack(out, dim=1)


def newton_solve(cell: NewtonCell, s0: torch.Tensor, inputs: tuple, params: tuple, tol: float, max_iters: int,
                 on_fail: str, op: str) -> tuple[torch.Tensor, NewtonInfo]:
    """Solve s_t = step(s_{t-1}, x_t) for all t (T >= 1) from s = 0, without autograd. Returns (s (B, T, ...),
    info).

    Step k makes s_1..s_k exact, since s_{k-1} was exact when it was linearized around; so k = T ends it.
    """
    mul = matvec2 if cell.block else torch.mul
    T = inputs[0].shape[1]
    s = s0.new_zeros(s0.shape[0], T, *s0.shape[1:])  # (B, T, ...)
    for k in range(1, min(max_iters, T) + 1):
        prev = previous(s, s0)  # (B, T, ...)
        f, J = cell.linearize(prev, *inputs, *params)
        s_new = linear_scan(cell, J, f - mul(J, prev), s0)
        step = (s_new - s).abs().max().item()
        s = s_new
        if step <= tol or k == T:
            return s, NewtonInfo(k, step, True)
    message = (f"{op}: Newton did not converge in {k} iterations (last step max|s^(k) - s^(k-1)| = {step:.3g} > "
               f"tol = {tol:.3g})")
    if on_fail == "raise":
        raise DivergedError(f"{message}; raise max_iters or tol, or pass mode='sequential'")
    if op not in _WARNED:
        _WARNED.add(op)
        warnings.warn(f"{message}; fell back to the sequential loop (correct, but slow). Raise max_iters or tol, "
                      "or pass on_fail='raise' to make this an error. Warned once per process.", RuntimeWarning,
                      stacklevel=4)
    return sequential(cell, s0, inputs, params), NewtonInfo(k, step, False)


class Solution(torch.autograd.Function):
    """s, the solution of s_t = step(s_{t-1}, x_t), as a function of s0, the inputs and the parameters.

    The forward passes the solution through; the backward is the adjoint recurrence at the solution
    (module docstring), so nothing of the Newton iterations is kept for autograd.
    """

    @staticmethod
    def forward(ctx, cell, s, s0, *tensors):
        ctx.cell = cell
        ctx.save_for_backward(s, s0, *tensors)
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_s):
        cell = ctx.cell
        s, s0, *tensors = ctx.saved_tensors
        prev = previous(s, s0)  # (B, T, ...)
        _, J = cell.linearize(prev, *tensors)
        # lambda_t = grad_t + J_{t+1}^T lambda_{t+1} runs backwards in time: roll brings J_{t+1} to position t, and
        # flipping makes it a forward scan (the J_1 that rolls round to the end multiplies the zero start)
        a = J.roll(-1, dims=1).flip(1)
        lam = linear_scan(cell, a.transpose(-1, -2) if cell.block else a, grad_s.flip(1), None).flip(1)
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_() for t in (prev, *tensors)]
            grads = torch.autograd.grad(cell.step(*leaves), leaves, lam)
        return None, None, grads[0][:, 0], *grads[1:]


def newton_rnn(cell: NewtonCell, s0: torch.Tensor, inputs: tuple, params: tuple, tol: float, max_iters: int,
               on_fail: str, op: str) -> tuple[torch.Tensor, NewtonInfo]:
    """The states s (B, T, ...) with gradients to s0, inputs and params, and the solve's NewtonInfo."""
    with torch.no_grad():
        s, info = newton_solve(cell, s0, inputs, params, tol, max_iters, on_fail, op)
    return Solution.apply(cell, s, s0, *inputs, *params), info
