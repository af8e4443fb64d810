"""Jordan network as a mixer."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int
from rnnzoo.mixers.classic_init import init_classic
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.checks import LOOP_MODES
from rnnzoo.ops.classic.jordan import OUTPUT_ACTIVATIONS, jordan, jordan_cell


class JordanState(NamedTuple):
    y: torch.Tensor  # (B, d_model), the last output


@register_mixer("jordan", "Jordan network (1986): the output is fed back, h_t = tanh(W x_t + U y_{t-1} + b)")
class Jordan(Mixer):
    """Recurrence through the output rather than the hidden layer.

        h_t = act(W_ih x_t + W_yh y_{t-1} + b_h),   y_t = out_act(W_hy h_t + b_y)

    y has width d_model (it is both the output and the state); the hidden layer has width ``hidden_size``.
    Options: ``hidden_size`` (default d_model), ``nonlinearity`` ('tanh' or 'relu'), ``output_activation``
    ('tanh', 'sigmoid' or 'identity'), ``bias``, ``orthogonal_init`` (a (semi-)orthogonal W_yh), ``mode``
    ('auto' or 'reference': both run the loop, torch has no fused Jordan kernel).
    """

    def __init__(self, d_model: int, hidden_size: int | None = None, nonlinearity: str = "tanh",
                 output_activation: str = "tanh", bias: bool = True, orthogonal_init: bool = False,
                 mode: str = "auto"):
        hidden_size = d_model if hidden_size is None else hidden_size
        name = "jordan"
        check_int(name, "hidden_size", hidden_size)
        check_choice(name, "nonlinearity", nonlinearity, ("tanh", "relu"))
        check_choice(name, "output_activation", output_activation, tuple(OUTPUT_ACTIVATIONS))
        check_choice(name, "mode", mode, LOOP_MODES)
        check_bool(name, "bias", bias)
        check_bool(name, "orthogonal_init", orthogonal_init)
        super().__init__(d_model)
        self.hidden_size, self.nonlinearity, self.output_activation = hidden_size, nonlinearity, output_activation
        self.mode = mode
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, d_model))
        self.weight_yh = nn.Parameter(torch.empty(hidden_size, d_model))
        self.weight_hy = nn.Parameter(torch.empty(d_model, hidden_size))
        self.bias_h = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.bias_y = nn.Parameter(torch.empty(d_model)) if bias else None
        init_classic(self, hidden_size, 1, orthogonal=False)
        if orthogonal_init:
            nn.init.orthogonal_(self.weight_yh)

    def init_state(self, batch_size, device=None, dtype=None) -> JordanState:
        dtype = dtype or self.weight_yh.dtype
        return JordanState(torch.zeros(batch_size, self.d_model, device=device, dtype=dtype))

    def _forward(self, x, state):
        y, y_T = jordan(x, self.weight_ih, self.weight_yh, self.weight_hy, self.bias_h, self.bias_y,
                        nonlinearity=self.nonlinearity, output_activation=self.output_activation,
                        initial_state=state.y, mode=self.mode)  # (B, T, d_model)
        return y, JordanState(y_T)

    def _step(self, x_t, state):
        xw = x_t @ self.weight_ih.T  # (B, H)
        if self.bias_h is not None:
            xw = xw + self.bias_h
        y = jordan_cell(xw, state.y, self.weight_yh, self.weight_hy, self.bias_y, self.nonlinearity,
                        self.output_activation)  # (B, d_model)
        return y, JordanState(y)
