"""The leaky-integrator echo state network loop (Jaeger 2001; Lukosevicius 2012, "A practical guide to applying
echo state networks"), in the two forms one recurrence needs: with autograd and without.

    h_t = (1 - a) h_{t-1} + a tanh(u_t + W h_{t-1}),   u_t = W_in x_t + b  (given, for every t at once)

A nonlinear recurrence in h, so the loop is the only form; what it can do is keep each step to one
(B, N) x (N, N) product and, when no gradient is wanted, write every h_t straight into one preallocated output.
"""
from __future__ import annotations

import torch


def esn_naive(u: torch.Tensor, W: torch.Tensor, leak: float, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u (B, T, N) the input drive, W (N, N), h0 (B, N) -> (h (B, T, N), h_T (B, N))."""
    if torch.is_grad_enabled() and (u.requires_grad or W.requires_grad or h0.requires_grad):
        return esn_autograd(u, W, leak, h0)
    return esn_no_grad(u, W, leak, h0)


def esn_autograd(u, W, leak, h0):
    """The loop as autograd records it: one new tensor per step, stacked at the end."""
    Wt, h, hs = W.T, h0, []
    for u_t in u.unbind(1):
        pre = torch.tanh(torch.addmm(u_t, h, Wt))  # (B, N) = tanh(u_t + h W^T)
        h = pre if leak == 1 else (1 - leak) * h + leak * pre
        hs.append(h)
    return torch.stack(hs, dim=1), h


def esn_no_grad(u, W, leak, h0):
    """The same loop with every step written in place into a time-major output: no allocation per step."""
    Wt = W.T.contiguous()
    out = u.new_empty(u.shape[1], *h0.shape)  # (T, B, N)
    h = h0
    for u_t, o in zip(u.unbind(1), out.unbind(0)):
        torch.addmm(u_t, h, Wt, out=o)
        o.tanh_()
        if leak != 1:
            o.mul_(leak).add_(h, alpha=1 - leak)
        h = o
    return out.transpose(0, 1), h.clone()
