"""Gated recurrent unit (Cho et al. 2014), in torch.nn.GRU's convention.

Weights in torch.nn.GRU's layout and gate order (r, z, n): weight_ih (3H, D), weight_hh (3H, H),
bias_ih and bias_hh (3H,). Shapes: x (B, T, D), h (B, H); the output is h_t at every step, y (B, T, H).

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

The reset gate multiplies the recurrent term after its bias (as cuDNN and torch do, not Cho et al.'s r * h).
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ConfigError
from rnnzoo.ops.checks import CLASSIC_MODES, check_choice
from rnnzoo.ops.loop import scan_cell


def gru_cell(xw_t: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor,
             bias_hh: torch.Tensor | None = None) -> torch.Tensor:
    """One step given the projected input ``xw_t = W_ih x_t + b_ih`` (B, 3H) and h (B, H); returns h_t (B, H)."""
    hw = h @ weight_hh.T  # (B, 3H)
    if bias_hh is not None:
        hw = hw + bias_hh
    x_r, x_z, x_n = xw_t.chunk(3, dim=-1)  # each (B, H)
    h_r, h_z, h_n = hw.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def gru(x: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
        bias_hh: torch.Tensor | None = None, *, initial_state: torch.Tensor | None = None,
        mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Run a GRU over ``x``; returns (y (B, T, H), h_T (B, H)). 'auto' and 'fused' take torch.gru."""
    check_choice("gru", "mode", mode, CLASSIC_MODES)
    if (bias_ih is None) != (bias_hh is None):
        raise ConfigError("gru: pass both bias_ih and bias_hh, or neither")
    h0 = x.new_zeros(x.shape[0], weight_hh.shape[1]) if initial_state is None else initial_state
    if mode != "reference":
        return gru_fused(x, weight_ih, weight_hh, bias_ih, bias_hh, h0)
    xw = x @ weight_ih.T  # (B, T, 3H), hoisted out of the loop
    if bias_ih is not None:
        xw = xw + bias_ih

    def cell(xw_t, h):
        h = gru_cell(xw_t, h, weight_hh, bias_hh)
        return h, h

    return scan_cell(cell, xw, h0)


def gru_fused(x, weight_ih, weight_hh, bias_ih, bias_hh, h0):
    """torch's fused kernel (the one behind torch.nn.GRU)."""
    has_bias = bias_ih is not None
    params = [weight_ih, weight_hh] + ([bias_ih, bias_hh] if has_bias else [])
    # Training mode when autograd is on: cuDNN's backward needs it; with dropout 0 it changes nothing else.
    y, h_n = torch.gru(x, h0.unsqueeze(0).contiguous(), params, has_bias, 1, 0.0, torch.is_grad_enabled(),
                       False, True)
    return y, h_n[0]
