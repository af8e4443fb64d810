"""ParaGRU and ParaLSTM (Danieli et al. 2025): a GRU and an LSTM whose recurrent weights are diagonal (a vector
u per gate), so that Newton's method over the whole sequence (DEER, Lim et al. 2024) trains them in parallel
over time; see rnnzoo/ops/pararnn."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.pararnn import check_newton_options, para_gru, para_lstm
from rnnzoo.ops.pararnn.naive import gru_cell, lstm_cell

MODES = ("newton", "sequential")


class ParaGRUState(NamedTuple):
    h: torch.Tensor  # (B, H)


class ParaLSTMState(NamedTuple):
    h: torch.Tensor  # (B, H)
    c: torch.Tensor  # (B, H)


class ParaRNN(Mixer):
    """What ParaGRU and ParaLSTM share: one input projection to ``n_gates`` blocks of H, a recurrent weight
    vector per gate, the Newton options, out_proj when H != d_model, and ``last_info``: the NewtonInfo of the
    last forward (None in sequential mode)."""

    n_gates: int

    def __init__(self, d_model: int, hidden_size: int | None, mode: str, tol: float | None, max_iters: int,
                 on_fail: str, name: str):
        hidden_size = d_model if hidden_size is None else hidden_size
        check_int(name, "hidden_size", hidden_size)
        check_choice(name, "mode", mode, MODES)
        check_newton_options(name, mode, tol, max_iters, on_fail)
        super().__init__(d_model)
        H = self.hidden_size = hidden_size
        self.mode, self.tol, self.max_iters, self.on_fail = mode, tol, max_iters, on_fail
        self.in_proj = nn.Linear(d_model, self.n_gates * H)
        # like torch.nn.GRU's recurrent weights, one row per gate
        self.u = nn.Parameter(torch.empty(self.n_gates, H).uniform_(-1, 1) / math.sqrt(H))
        self.out_proj = nn.Linear(H, d_model, bias=False) if H != d_model else None
        self.last_info = None

    def op_options(self) -> dict:
        """The keyword arguments of para_gru / para_lstm."""
        return dict(mode=self.mode, tol=self.tol, max_iters=self.max_iters, on_fail=self.on_fail,
                    return_info=True)

    def _project(self, h):
        return h if self.out_proj is None else self.out_proj(h)


@register_mixer("paragru", "ParaGRU (Danieli et al. 2025): GRU with diagonal recurrence, Newton-parallel over time")
class ParaGRU(ParaRNN):
    """The diagonal GRU of ParaRNN:

        z_t = sigmoid(W_z x_t + b_z + u_z * h_{t-1}),  r_t = sigmoid(W_r x_t + b_r + u_r * h_{t-1}),
        c_t = tanh(W_c x_t + b_c + u_c * (r_t * h_{t-1})),  h_t = (1 - z_t) * h_{t-1} + z_t * c_t,
        y_t = h_t  (or W_o h_t when H != d_model)

    ``mode='newton'`` solves for all t at once (Newton's method with parallel scans, its own backward),
    ``'sequential'`` runs the loop. Options: ``hidden_size`` (default d_model), ``tol`` (None: the dtype's
    default), ``max_iters``, ``on_fail`` ('sequential': fall back to the loop, warning once; 'raise':
    DivergedError). b_z starts at -1, so each unit first keeps about 3/4 of its state per step.
    """

    n_gates = 3

    def __init__(self, d_model: int, hidden_size: int | None = None, mode: str = "newton",
                 tol: float | None = None, max_iters: int = 20, on_fail: str = "sequential"):
        super().__init__(d_model, hidden_size, mode, tol, max_iters, on_fail, "paragru")
        with torch.no_grad():
            self.in_proj.bias[:self.hidden_size].fill_(-1.0)

    def init_state(self, batch_size, device=None, dtype=None) -> ParaGRUState:
        dtype = dtype or self.in_proj.weight.dtype
        return ParaGRUState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def _forward(self, x, state):
        xz, xr, xc = self.in_proj(x).chunk(3, dim=-1)  # (B, T, H) each
        h, h_T, self.last_info = para_gru(xz, xr, xc, *self.u, initial_state=state.h, **self.op_options())
        return self._project(h), ParaGRUState(h_T)

    def _step(self, x_t, state):
        xz, xr, xc = self.in_proj(x_t).chunk(3, dim=-1)  # (B, H) each
        h = gru_cell(state.h, xz, xr, xc, *self.u)  # (B, H)
        return self._project(h), ParaGRUState(h)


@register_mixer("paralstm", "ParaLSTM (Danieli et al. 2025): LSTM with diagonal recurrence, Newton-parallel over time")
class ParaLSTM(ParaRNN):
    """The diagonal LSTM of ParaRNN (gate order i, f, g, o as torch.nn.LSTM):

        i_t, f_t, o_t = sigmoid(W x_t + b + u * h_{t-1}) per gate,  g_t = tanh(W_g x_t + b_g + u_g * h_{t-1}),
        c_t = f_t * c_{t-1} + i_t * g_t,  h_t = o_t * tanh(c_t),  y_t = h_t  (or W_o h_t when H != d_model)

    Newton's Jacobian is a 2x2 block per unit on (h, c). Options as ParaGRU; the forget bias starts at 1.
    """

    n_gates = 4

    def __init__(self, d_model: int, hidden_size: int | None = None, mode: str = "newton",
                 tol: float | None = None, max_iters: int = 20, on_fail: str = "sequential"):
        super().__init__(d_model, hidden_size, mode, tol, max_iters, on_fail, "paralstm")
        with torch.no_grad():
            self.in_proj.bias[self.hidden_size:2 * self.hidden_size].fill_(1.0)

    def init_state(self, batch_size, device=None, dtype=None) -> ParaLSTMState:
        dtype = dtype or self.in_proj.weight.dtype
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return ParaLSTMState(zeros, zeros.clone())

    def _forward(self, x, state):
        xi, xf, xg, xo = self.in_proj(x).chunk(4, dim=-1)  # (B, T, H) each
        h, (h_T, c_T), self.last_info = para_lstm(xi, xf, xg, xo, *self.u, initial_state=(state.h, state.c),
                                                  **self.op_options())
        return self._project(h), ParaLSTMState(h_T, c_T)

    def _step(self, x_t, state):
        xi, xf, xg, xo = self.in_proj(x_t).chunk(4, dim=-1)  # (B, H) each
        h, c = lstm_cell(state.h, state.c, xi, xf, xg, xo, *self.u)  # (B, H) each
        return self._project(h), ParaLSTMState(h, c)
