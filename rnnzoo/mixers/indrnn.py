"""IndRNN as a mixer."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int
from rnnzoo.mixers.classic_init import init_classic
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.checks import LOOP_MODES
from rnnzoo.ops.classic.indrnn import clamp_recurrent, indrnn, indrnn_cell


class IndRNNState(NamedTuple):
    h: torch.Tensor  # (B, H)


@register_mixer("indrnn", "IndRNN (2018): h_t = relu(W x_t + u * h_{t-1} + b), an elementwise recurrence")
class IndRNN(Mixer):
    """Independently recurrent network: each hidden unit has one scalar recurrent weight.

        h_t = act(W_ih x_t + b + u * h_{t-1}),   y_t = h_t  (or out_proj(h_t) when H != d_model)

    Options: ``hidden_size`` (default d_model), ``nonlinearity`` ('relu' or 'tanh'), ``bias``,
    ``recurrent_max`` (None, or clamp |u| <= recurrent_max in every forward, e.g. 2**(1/T_max) for relu as in
    the paper), ``mode`` ('auto' or 'reference': both run the loop, which is elementwise), ``project_output``
    (add a Linear H -> d_model when they differ; False keeps width H). u starts uniform in
    [0, min(1, recurrent_max)]. There is no ``orthogonal_init``: a diagonal recurrence has no matrix to make
    orthogonal.
    """

    def __init__(self, d_model: int, hidden_size: int | None = None, nonlinearity: str = "relu",
                 bias: bool = True, recurrent_max: float | None = None, mode: str = "auto",
                 project_output: bool = True):
        hidden_size = d_model if hidden_size is None else hidden_size
        name = "indrnn"
        check_int(name, "hidden_size", hidden_size)
        check_choice(name, "nonlinearity", nonlinearity, ("relu", "tanh"))
        check_choice(name, "mode", mode, LOOP_MODES)
        check_bool(name, "bias", bias)
        check_bool(name, "project_output", project_output)
        if recurrent_max is not None and (isinstance(recurrent_max, bool) or not isinstance(recurrent_max, (int, float))
                                          or not recurrent_max > 0):
            raise ConfigError(f"{name}: recurrent_max must be None or a number > 0 "
                              f"(e.g. 2 ** (1 / T_max)), got {recurrent_max!r}")
        needs_proj = project_output and hidden_size != d_model
        super().__init__(d_model, d_model if needs_proj else hidden_size)
        self.hidden_size, self.nonlinearity, self.mode = hidden_size, nonlinearity, mode
        self.recurrent_max = None if recurrent_max is None else float(recurrent_max)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, d_model))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size)) if bias else None
        init_classic(self, hidden_size, 1, orthogonal=False)
        u_max = 1.0 if recurrent_max is None else min(1.0, self.recurrent_max)
        nn.init.uniform_(self.weight_hh, 0.0, u_max)
        self.out_proj = nn.Linear(hidden_size, d_model) if needs_proj else None

    def init_state(self, batch_size, device=None, dtype=None) -> IndRNNState:
        dtype = dtype or self.weight_hh.dtype
        return IndRNNState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def _forward(self, x, state):
        h, h_T = indrnn(x, self.weight_ih, self.weight_hh, self.bias, nonlinearity=self.nonlinearity,
                        recurrent_max=self.recurrent_max, initial_state=state.h, mode=self.mode)  # (B, T, H)
        return self._project(h), IndRNNState(h_T)

    def _step(self, x_t, state):
        xw = x_t @ self.weight_ih.T  # (B, H)
        if self.bias is not None:
            xw = xw + self.bias
        h = indrnn_cell(xw, state.h, clamp_recurrent(self.weight_hh, self.recurrent_max), self.nonlinearity)
        return self._project(h), IndRNNState(h)

    def _project(self, h):
        return h if self.out_proj is None else self.out_proj(h)
