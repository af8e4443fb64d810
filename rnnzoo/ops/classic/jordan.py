"""Jordan network (Jordan 1986): the output, not the hidden layer, is fed back.

    h_t = act(W_ih x_t + W_yh y_{t-1} + b_h)       act in {tanh, relu}
    y_t = out_act(W_hy h_t + b_y)                  out_act in {tanh, sigmoid, identity}

Shapes: x (B, T, D), weight_ih (H, D), weight_yh (H, O), weight_hy (O, H), bias_h (H,), bias_y (O,),
y (B, T, O), state y_{t-1} (B, O). The hidden h_t lives only inside a step. torch has no fused kernel for
this cell, so the only form is the loop.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.checks import LOOP_MODES, check_choice
from rnnzoo.ops.classic.elman import ACTIVATIONS
from rnnzoo.ops.loop import scan_cell

OUTPUT_ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda t: t}


def jordan_cell(xw_t: torch.Tensor, y: torch.Tensor, weight_yh: torch.Tensor, weight_hy: torch.Tensor,
                bias_y: torch.Tensor | None, nonlinearity: str = "tanh",
                output_activation: str = "tanh") -> torch.Tensor:
    """One step given the projected input ``xw_t = W_ih x_t + b_h`` (B, H) and the last output ``y`` (B, O)."""
    h = ACTIVATIONS[nonlinearity](xw_t + y @ weight_yh.T)  # (B, H)
    out = h @ weight_hy.T  # (B, O)
    if bias_y is not None:
        out = out + bias_y
    return OUTPUT_ACTIVATIONS[output_activation](out)


def jordan(x: torch.Tensor, weight_ih: torch.Tensor, weight_yh: torch.Tensor, weight_hy: torch.Tensor,
           bias_h: torch.Tensor | None = None, bias_y: torch.Tensor | None = None, *,
           nonlinearity: str = "tanh", output_activation: str = "tanh",
           initial_state: torch.Tensor | None = None, mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Run a Jordan network over ``x``; returns (y (B, T, O), y_T (B, O)). ``initial_state`` is y_0 (zeros if
    None). ``mode`` 'auto' and 'reference' both run the loop."""
    check_choice("jordan", "nonlinearity", nonlinearity, tuple(sorted(ACTIVATIONS)))
    check_choice("jordan", "output_activation", output_activation, tuple(sorted(OUTPUT_ACTIVATIONS)))
    check_choice("jordan", "mode", mode, LOOP_MODES)
    y0 = x.new_zeros(x.shape[0], weight_hy.shape[0]) if initial_state is None else initial_state
    xw = x @ weight_ih.T  # (B, T, H), hoisted out of the loop
    if bias_h is not None:
        xw = xw + bias_h

    def cell(xw_t, y):
        y = jordan_cell(xw_t, y, weight_yh, weight_hy, bias_y, nonlinearity, output_activation)
        return y, y

    return scan_cell(cell, xw, y0)
