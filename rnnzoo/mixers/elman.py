"""Elman RNN as a mixer."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int
from rnnzoo.mixers.classic_init import init_classic
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.checks import CLASSIC_MODES
from rnnzoo.ops.classic.elman import elman, elman_cell


class ElmanState(NamedTuple):
    h: torch.Tensor  # (B, H)


@register_mixer("elman", "Elman RNN (1990): h_t = tanh(W x_t + U h_{t-1} + b), tanh or relu")
class Elman(Mixer):
    """Simple recurrent network with torch.nn.RNN's parameters and fused kernel.

        h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   y_t = h_t  (or out_proj(h_t) when H != d_model)

    Options: ``hidden_size`` (default d_model), ``nonlinearity`` ('tanh' or 'relu'), ``bias``,
    ``orthogonal_init``, ``mode`` ('auto'/'fused' take torch's kernel, 'reference' the readable loop),
    ``project_output`` (add a Linear H -> d_model when they differ; False keeps width H).
    """

    def __init__(self, d_model: int, hidden_size: int | None = None, nonlinearity: str = "tanh",
                 bias: bool = True, orthogonal_init: bool = False, mode: str = "auto",
                 project_output: bool = True):
        hidden_size = d_model if hidden_size is None else hidden_size
        name = "elman"
        check_int(name, "hidden_size", hidden_size)
        check_choice(name, "nonlinearity", nonlinearity, ("tanh", "relu"))
        check_choice(name, "mode", mode, CLASSIC_MODES)
        for opt in ("bias", "orthogonal_init", "project_output"):
            check_bool(name, opt, locals()[opt])
        needs_proj = project_output and hidden_size != d_model
        super().__init__(d_model, d_model if needs_proj else hidden_size)
        self.hidden_size, self.nonlinearity, self.mode = hidden_size, nonlinearity, mode
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, d_model))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(hidden_size)) if bias else None
        init_classic(self, hidden_size, 1, orthogonal_init)
        self.out_proj = nn.Linear(hidden_size, d_model) if needs_proj else None

    def init_state(self, batch_size, device=None, dtype=None) -> ElmanState:
        dtype = dtype or self.weight_hh.dtype
        return ElmanState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def _forward(self, x, state):
        h, h_T = elman(x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                       nonlinearity=self.nonlinearity, initial_state=state.h, mode=self.mode)  # (B, T, H)
        return self._project(h), ElmanState(h_T)

    def _step(self, x_t, state):
        xw = x_t @ self.weight_ih.T  # (B, H)
        if self.bias_ih is not None:
            xw = xw + self.bias_ih
        h = elman_cell(xw, state.h, self.weight_hh, self.bias_hh, self.nonlinearity)
        return self._project(h), ElmanState(h)

    def _project(self, h):
        return h if self.out_proj is None else self.out_proj(h)
