"""GRU as a mixer."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int
from rnnzoo.mixers.classic_init import init_classic
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.checks import CLASSIC_MODES
from rnnzoo.ops.classic.gru import gru, gru_cell


class GRUState(NamedTuple):
    h: torch.Tensor  # (B, H)


@register_mixer("gru", "GRU (Cho et al. 2014): reset and update gates, torch.nn.GRU convention")
class GRU(Mixer):
    """Gated recurrent unit with torch.nn.GRU's parameters and fused kernel (equations in
    ``rnnzoo.ops.classic.gru``); y_t = h_t, or out_proj(h_t) when H != d_model.

    Options: ``hidden_size`` (default d_model), ``bias``, ``orthogonal_init``, ``mode`` ('auto'/'fused' take
    torch's kernel, 'reference' the readable loop), ``project_output`` (add a Linear H -> d_model when they
    differ; False keeps width H).
    """

    def __init__(self, d_model: int, hidden_size: int | None = None, bias: bool = True,
                 orthogonal_init: bool = False, mode: str = "auto", project_output: bool = True):
        hidden_size = d_model if hidden_size is None else hidden_size
        name = "gru"
        check_int(name, "hidden_size", hidden_size)
        check_choice(name, "mode", mode, CLASSIC_MODES)
        for opt in ("bias", "orthogonal_init", "project_output"):
            check_bool(name, opt, locals()[opt])
        needs_proj = project_output and hidden_size != d_model
        super().__init__(d_model, d_model if needs_proj else hidden_size)
        H = hidden_size
        self.hidden_size, self.mode = H, mode
        self.weight_ih = nn.Parameter(torch.empty(3 * H, d_model))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(3 * H)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * H)) if bias else None
        init_classic(self, H, 3, orthogonal_init)
        self.out_proj = nn.Linear(H, d_model) if needs_proj else None

    def init_state(self, batch_size, device=None, dtype=None) -> GRUState:
        dtype = dtype or self.weight_hh.dtype
        return GRUState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def _forward(self, x, state):
        y, h = gru(x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, initial_state=state.h,
                   mode=self.mode)  # (B, T, H)
        return self._project(y), GRUState(h)

    def _step(self, x_t, state):
        xw = x_t @ self.weight_ih.T  # (B, 3H)
        if self.bias_ih is not None:
            xw = xw + self.bias_ih
        h = gru_cell(xw, state.h, self.weight_hh, self.bias_hh)  # (B, H)
        return self._project(h), GRUState(h)

    def _project(self, h):
        return h if self.out_proj is None else self.out_proj(h)
