"""LSTM as a mixer, with optional peepholes, layer norm and projection."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int
from rnnzoo.mixers.classic_init import init_classic
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.checks import CLASSIC_MODES
from rnnzoo.ops.classic.lstm import LN_EPS, LSTMLayerNorm, LSTMPeephole, lstm, lstm_cell, lstm_input


class LSTMState(NamedTuple):
    h: torch.Tensor  # (B, P), P = proj_size or hidden_size
    c: torch.Tensor  # (B, H)


@register_mixer("lstm", "LSTM (1997) with forget gate; optional peepholes, layer norm and projection (proj_size)")
class LSTM(Mixer):
    """Long short-term memory with torch.nn.LSTM's parameters and fused kernel (equations in
    ``rnnzoo.ops.classic.lstm``); y_t = h_t, or out_proj(h_t) when its width P differs from d_model.

    Options: ``hidden_size`` H (default d_model); ``proj_size`` P < H (0: none, P = H); ``peepholes``
    (Gers & Schmidhuber 2000); ``layer_norm`` (Ba et al. 2016); ``bias``; ``orthogonal_init``;
    ``forget_bias``: the forget gate's bias b_if + b_hf starts at this value (Gers et al. 2000, Jozefowicz
    et al. 2015), no effect without ``bias``; ``mode`` ('auto'/'fused' take torch's kernel, which has no
    peepholes or layer norm, 'reference' the readable loop); ``project_output`` (add a Linear P -> d_model
    when they differ; False keeps width P).
    """

    def __init__(self, d_model: int, hidden_size: int | None = None, proj_size: int = 0, peepholes: bool = False,
                 layer_norm: bool = False, bias: bool = True, orthogonal_init: bool = False,
                 forget_bias: float = 1.0, mode: str = "auto", project_output: bool = True):
        hidden_size = d_model if hidden_size is None else hidden_size
        name = "lstm"
        check_int(name, "hidden_size", hidden_size)
        check_int(name, "proj_size", proj_size, minimum=0)
        check_choice(name, "mode", mode, CLASSIC_MODES)
        for opt in ("peepholes", "layer_norm", "bias", "orthogonal_init", "project_output"):
            check_bool(name, opt, locals()[opt])
        if proj_size >= hidden_size:
            raise ConfigError(f"lstm: proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}; "
                              "use proj_size=0 for no projection")
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) or not math.isfinite(forget_bias):
            raise ConfigError(f"lstm: forget_bias must be a finite number, got {forget_bias!r}")
        if mode == "fused" and (peepholes or layer_norm):
            raise ConfigError("lstm: mode='fused' is torch's kernel, which has no peepholes or layer norm; "
                              "use mode='auto' or mode='reference'")
        H, P = hidden_size, proj_size or hidden_size
        needs_proj = project_output and P != d_model
        super().__init__(d_model, d_model if needs_proj else P)
        self.hidden_size, self.proj_size, self.mode = H, proj_size, mode
        self.weight_ih = nn.Parameter(torch.empty(4 * H, d_model))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, P))
        self.bias_ih = nn.Parameter(torch.empty(4 * H)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(4 * H)) if bias else None
        self.weight_hr = nn.Parameter(torch.empty(P, H)) if proj_size else None
        self.weight_ci = nn.Parameter(torch.empty(H)) if peepholes else None
        self.weight_cf = nn.Parameter(torch.empty(H)) if peepholes else None
        self.weight_co = nn.Parameter(torch.empty(H)) if peepholes else None
        init_classic(self, H, 4, orthogonal_init)
        if bias:
            with torch.no_grad():
                self.bias_ih[H:2 * H].fill_(forget_bias)
                self.bias_hh[H:2 * H].zero_()
        self.ln_ih = nn.LayerNorm(4 * H, eps=LN_EPS) if layer_norm else None
        self.ln_hh = nn.LayerNorm(4 * H, eps=LN_EPS) if layer_norm else None
        self.ln_c = nn.LayerNorm(H, eps=LN_EPS) if layer_norm else None
        self.out_proj = nn.Linear(P, d_model) if needs_proj else None

    def init_state(self, batch_size, device=None, dtype=None) -> LSTMState:
        dtype = dtype or self.weight_hh.dtype
        P = self.weight_hh.shape[1]
        return LSTMState(torch.zeros(batch_size, P, device=device, dtype=dtype),
                         torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def _forward(self, x, state):
        y, (h, c) = lstm(x, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, weight_hr=self.weight_hr,
                         peephole=self._peephole(), layer_norm=self._layer_norm(), initial_state=state,
                         mode=self.mode)  # (B, T, P)
        return self._project(y), LSTMState(h, c)

    def _step(self, x_t, state):
        layer_norm = self._layer_norm()
        xw = lstm_input(x_t, self.weight_ih, self.bias_ih, layer_norm)  # (B, 4H)
        h, c = lstm_cell(xw, state, self.weight_hh, self.bias_hh, weight_hr=self.weight_hr,
                         peephole=self._peephole(), layer_norm=layer_norm)  # (B, P), (B, H)
        return self._project(h), LSTMState(h, c)

    def _peephole(self) -> LSTMPeephole | None:
        if self.weight_ci is None:
            return None
        return LSTMPeephole(self.weight_ci, self.weight_cf, self.weight_co)

    def _layer_norm(self) -> LSTMLayerNorm | None:
        if self.ln_ih is None:
            return None
        return LSTMLayerNorm(self.ln_ih.weight, self.ln_ih.bias, self.ln_hh.weight, self.ln_hh.bias,
                             self.ln_c.weight, self.ln_c.bias)

    def _project(self, h):
        return h if self.out_proj is None else self.out_proj(h)
