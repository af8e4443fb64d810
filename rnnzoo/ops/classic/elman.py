"""Elman network (Elman 1990): h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act in {tanh, relu}.

Shapes: x (B, T, D), weight_ih (H, D), weight_hh (H, H), biases (H,), h (B, H). Output is h_t at every step.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.checks import CLASSIC_MODES, check_choice
from rnnzoo.ops.loop import scan_cell

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def elman_cell(xw_t: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None,
               nonlinearity: str = "tanh") -> torch.Tensor:
    """One step given the projected input ``xw_t = W_ih x_t + b_ih`` (B, H)."""
    pre = xw_t + h @ weight_hh.T  # (B, H)
    if bias_hh is not None:
        pre = pre + bias_hh
    return ACTIVATIONS[nonlinearity](pre)


def elman(x: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
          bias_hh: torch.Tensor | None = None, *, nonlinearity: str = "tanh",
          initial_state: torch.Tensor | None = None, mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Run an Elman RNN over ``x``; returns (y (B, T, H), h_T (B, H))."""
    check_choice("elman", "nonlinearity", nonlinearity, tuple(sorted(ACTIVATIONS)))
    B, H = x.shape[0], weight_hh.shape[0]
    h0 = x.new_zeros(B, H) if initial_state is None else initial_state
    check_choice("elman", "mode", mode, CLASSIC_MODES)
    if mode != "reference":
        return elman_fused(x, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, h0)
    xw = x @ weight_ih.T  # (B, T, H), hoisted out of the loop
    if bias_ih is not None:
        xw = xw + bias_ih

    def cell(xw_t, h):
        h = elman_cell(xw_t, h, weight_hh, bias_hh, nonlinearity)
        return h, h

    return scan_cell(cell, xw, h0)


def elman_fused(x, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, h0):
    """torch's fused kernel (the one behind torch.nn.RNN)."""
    kernel = torch.rnn_tanh if nonlinearity == "tanh" else torch.rnn_relu
    has_bias = bias_ih is not None
    params = [weight_ih, weight_hh] + ([bias_ih, bias_hh] if has_bias else [])
    # train=True when grad is on: cuDNN refuses a backward through an inference-mode call
    y, h_n = kernel(x, h0.unsqueeze(0).contiguous(), params, has_bias, 1, 0.0, torch.is_grad_enabled(), False, True)
    return y, h_n[0]
