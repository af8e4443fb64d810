"""IndRNN (Li et al. 2018, "Independently Recurrent Neural Network"): each unit sees only its own past.

    h_t = act(W_ih x_t + b + u * h_{t-1})          act in {relu, tanh}, u (H,) elementwise

Shapes: x (B, T, D), weight_ih (H, D), weight_hh = u (H,), bias (H,), h (B, H). Output is h_t at every step.
``recurrent_max`` clamps u to [-recurrent_max, recurrent_max] on every call (the paper's constraint
|u| <= 2**(1/T_max) for relu keeps h from exploding over T_max steps). Clamping in the forward pass, rather
than editing the parameter, keeps the gradient defined: it is zero for the entries held at the bound.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.checks import LOOP_MODES, check_choice
from rnnzoo.ops.classic.elman import ACTIVATIONS
from rnnzoo.ops.loop import scan_cell


def clamp_recurrent(weight_hh: torch.Tensor, recurrent_max: float | None) -> torch.Tensor:
    """u clamped to |u| <= recurrent_max (unchanged when None)."""
    if recurrent_max is None:
        return weight_hh
    return weight_hh.clamp(-recurrent_max, recurrent_max)


def indrnn_cell(xw_t: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor,
                nonlinearity: str = "relu") -> torch.Tensor:
    """One step given the projected input ``xw_t = W_ih x_t + b`` (B, H) and the (clamped) u (H,)."""
    return ACTIVATIONS[nonlinearity](xw_t + weight_hh * h)  # (B, H)


def indrnn(x: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor | None = None, *,
           nonlinearity: str = "relu", recurrent_max: float | None = None,
           initial_state: torch.Tensor | None = None, mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Run an IndRNN over ``x``; returns (h (B, T, H), h_T (B, H)). ``mode`` 'auto' and 'reference' both run the
    loop: the input projection, the only matmul, is hoisted out of it, so each step is elementwise."""
    check_choice("indrnn", "nonlinearity", nonlinearity, tuple(sorted(ACTIVATIONS)))
    check_choice("indrnn", "mode", mode, LOOP_MODES)
    h0 = x.new_zeros(x.shape[0], weight_hh.shape[0]) if initial_state is None else initial_state
    u = clamp_recurrent(weight_hh, recurrent_max)  # (H,)
    xw = x @ weight_ih.T  # (B, T, H)
    if bias is not None:
        xw = xw + bias

    def cell(xw_t, h):
        h = indrnn_cell(xw_t, h, u, nonlinearity)
        return h, h

    return scan_cell(cell, xw, h0)
