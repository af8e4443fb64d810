"""Legendre Memory Unit (Voelker, Kajic & Eliasmith 2019) in the parallel-trainable form of Chilkuri & Eliasmith
(2021): the memory reads only x, so it is a fixed linear filter and trains as a convolution."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.lmu import LMU_MODES, discretize_zoh, legendre_matrices, lmu_cell, lmu_memory


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS = {"tanh": torch.tanh, "gelu": F.gelu, "relu": torch.relu, "silu": F.silu, "identity": identity}


class LMUState(NamedTuple):
    m: torch.Tensor  # (B, H, q)


@register_mixer("lmu", "Legendre Memory Unit (Voelker et al. 2019), parallel form: fixed Legendre memory, FFT conv")
class LMU(Mixer):
    """The LMU without the hidden-to-memory feedback, so the memory is linear in x (Chilkuri & Eliasmith 2021):

        u_t = W_u x_t                                  (B, H): one scalar input per memory channel
        m_t = A_bar m_{t-1} + B_bar u_t                (B, H, q): Legendre coefficients of u over theta steps
        h_t = act(W_x x_t + W_m flatten(m_t) + b)      (B, hidden_size)
        y_t = W_o h_t + b_o                            (B, d_model)

    (A_bar, B_bar) is the Legendre delay system of order q and window theta, discretised by zero-order hold
    with one step per time unit; fixed, recomputed from the options (not saved in the state_dict).

    Options: ``memory_size`` q (default 16), ``theta`` (the window in steps, default 128), ``n_channels`` H
    (default max(1, d_model // 4), so the memory holds 4 q values per model unit), ``hidden_size`` (default
    d_model), ``act`` ('tanh' as in the original LMU's hidden state, 'gelu', 'relu', 'silu', 'identity'),
    ``mode`` ('auto' = 'conv': the FFT convolution; 'recurrent': the loop).
    """

    def __init__(self, d_model: int, memory_size: int = 16, theta: float = 128.0, n_channels: int | None = None,
                 hidden_size: int | None = None, act: str = "tanh", mode: str = "auto"):
        super().__init__(d_model)
        name = "lmu"
        H = max(1, d_model // 4) if n_channels is None else n_channels
        hidden = d_model if hidden_size is None else hidden_size
        check_int(name, "memory_size", memory_size)
        check_int(name, "n_channels", H)
        check_int(name, "hidden_size", hidden)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 < theta < math.inf:
            raise ConfigError(f"lmu: theta is the memory window in steps and must be a positive number, got {theta!r}")
        check_choice(name, "act", act, tuple(ACTIVATIONS))
        check_choice(name, "mode", mode, LMU_MODES)
        self.memory_size, self.theta, self.n_channels, self.act, self.mode = memory_size, theta, H, act, mode
        A_bar, B_bar = discretize_zoh(*legendre_matrices(memory_size, float(theta)))
        self.register_buffer("A_bar", A_bar.to(torch.get_default_dtype()), persistent=False)  # (q, q)
        self.register_buffer("B_bar", B_bar.to(torch.get_default_dtype()), persistent=False)  # (q,)
        self.encoder = nn.Linear(d_model, H, bias=False)
        self.x_proj = nn.Linear(d_model, hidden)
        self.m_proj = nn.Linear(H * memory_size, hidden, bias=False)
        self.out_proj = nn.Linear(hidden, d_model)

    def init_state(self, batch_size, device=None, dtype=None) -> LMUState:
        dtype = dtype or self.encoder.weight.dtype
        return LMUState(torch.zeros(batch_size, self.n_channels, self.memory_size, device=device, dtype=dtype))

    def _forward(self, x, state):
        u = self.encoder(x)  # (B, T, H)
        m, m_T = lmu_memory(u, self.A_bar, self.B_bar, state.m, mode=self.mode)  # (B, T, H, q)
        return self._readout(x, m), LMUState(m_T)

    def _step(self, x_t, state):
        m = lmu_cell(self.encoder(x_t), self.A_bar, self.B_bar, state.m)  # (B, H, q)
        return self._readout(x_t, m), LMUState(m)

    def _readout(self, x, m):
        h = ACTIVATIONS[self.act](self.x_proj(x) + self.m_proj(m.flatten(-2)))  # (..., hidden_size)
        return self.out_proj(h)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, memory_size={self.memory_size}, theta={self.theta}, "
                f"n_channels={self.n_channels}, act={self.act!r}, mode={self.mode!r}")
