"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read only x_t, so the
recurrence h_t = a_t * h_{t-1} + b_t is linear in h and trains with a parallel scan in log space."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.mixers.base import Mixer, check_choice, check_expand, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.scan import scan, scan_log_space

MODES = ("parallel", "parallel_log", "sequential")


class MinGRUState(NamedTuple):
    h: torch.Tensor  # (B, H)


class MinLSTMState(NamedTuple):
    h: torch.Tensor  # (B, H)


def g(x: torch.Tensor) -> torch.Tensor:
    """The paper's activation for the candidate state: x + 0.5 for x >= 0, sigmoid(x) below; always > 0."""
    return torch.where(x >= 0, x.clamp_min(0) + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), finite everywhere (both branches are evaluated, so neither may produce inf or NaN)."""
    return torch.where(x >= 0, torch.log(x.clamp_min(0) + 0.5), -F.softplus(-x))


def min_rnn_log(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor,
                chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t for a, b > 0 given as logs (B, T, H) and any real h0 (B, H): the paper's form.

    The recurrence is linear in h0, so h_t = u_t + exp(sum_{s<=t} log a_s) * h0 with u the run from h = 0,
    which ``scan_log_space`` computes with no initial state. h0 thus never goes through a log: a zero state
    (log h0 = -inf) gives no NaN, and the gradient to h0 is the exact product of the a's, also where h0 = 0.
    """
    log_u, _ = scan_log_space(log_a, log_b, mode="chunk", chunk_size=chunk_size)  # (B, T, H)
    h = log_u.exp() + log_a.cumsum(dim=1).exp() * h0.unsqueeze(1)  # (B, T, H)
    return h, h[:, -1]


def min_rnn_loop(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequential mode: h_t = a_t * h_{t-1} + b_t one step at a time, a, b (B, T, H)."""
    h, hs = h0, []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t  # (B, H)
        hs.append(h)
    return torch.stack(hs, dim=1), h


class MinRNN(Mixer):
    """What minGRU and minLSTM share: one input projection to ``n_gates`` blocks of H, the scan, out_proj.
    A subclass gives the coefficients of h_t = a_t * h_{t-1} + b_t, in linear space or as logs."""

    n_gates: int

    def coefficients(self, x: torch.Tensor, log: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __init__(self, d_model: int, expand: float, mode: str, chunk_size: int, name: str):
        H = check_expand(name, expand, d_model)
        check_choice(name, "mode", mode, MODES)
        check_int(name, "chunk_size", chunk_size, minimum=1)
        super().__init__(d_model)
        self.hidden_size, self.mode, self.chunk_size = H, mode, chunk_size
        self.in_proj = nn.Linear(d_model, self.n_gates * H)
        self.out_proj = nn.Linear(H, d_model, bias=False) if H != d_model else None

    def _project(self, h):
        return h if self.out_proj is None else self.out_proj(h)

    def _forward(self, x, state):
        if self.mode == "parallel_log":
            h, h_T = min_rnn_log(*self.coefficients(x, log=True), state.h, self.chunk_size)  # (B, T, H)
        elif self.mode == "parallel":
            h, h_T = scan(*self.coefficients(x, log=False), state.h, mode="chunk", chunk_size=self.chunk_size)
        else:
            h, h_T = min_rnn_loop(*self.coefficients(x, log=False), state.h)
        return self._project(h), type(state)(h_T)

    def _step(self, x_t, state):
        a, b = self.coefficients(x_t, log=False)  # (B, H) each
        h = a * state.h + b  # (B, H)
        return self._project(h), type(state)(h)


@register_mixer("mingru", "minGRU (Feng et al. 2024): h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t), log-space scan")
class MinGRU(MinRNN):
    """minGRU: a GRU whose gate and candidate read only x_t (no reset gate, no h_{t-1} inside).

        z_t = sigmoid(W_z x_t + b_z),  h~_t = g(W_h x_t + b_h),  h_t = (1 - z_t) h_{t-1} + z_t h~_t,
        y_t = h_t  (or W_o h_t when H != d_model)

    with g(x) = x + 0.5 for x >= 0 and sigmoid(x) below, so h~ > 0 and, from h_0 >= 0, h stays positive.
    ``mode='parallel'`` runs the blocked scan of rnnzoo.ops.scan in linear space (the loop's arithmetic, so
    no log space is needed for precision); ``'parallel_log'`` the paper's log-space scan with
    log z = -softplus(-k), log(1 - z) = -softplus(k); ``'sequential'`` the loop. Options: ``expand``
    (H = expand * d_model, default 1), ``chunk_size`` (of the scan).
    """

    n_gates = 2

    def __init__(self, d_model: int, expand: float = 1, mode: str = "parallel", chunk_size: int = 64):
        super().__init__(d_model, expand, mode, chunk_size, "mingru")

    def init_state(self, batch_size, device=None, dtype=None) -> MinGRUState:
        dtype = dtype or self.in_proj.weight.dtype
        return MinGRUState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def coefficients(self, x, log):
        k_z, k_h = self.in_proj(x).chunk(2, dim=-1)  # (..., H) each
        if log:
            return -F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h)  # log(1 - z), log(z h~)
        z = torch.sigmoid(k_z)
        return 1 - z, z * g(k_h)


@register_mixer("minlstm", "minLSTM (Feng et al. 2024): h_t = f'_t h_{t-1} + i'_t g(W_h x_t), normalised gates")
class MinLSTM(MinRNN):
    """minLSTM: an LSTM with gates that read only x_t, no output gate and no cell/hidden split.

        f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i),  h~_t = g(W_h x_t + b_h),
        f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t),  h_t = f'_t h_{t-1} + i'_t h~_t

    (g as in minGRU). In log space, with d = softplus(-k_f) - softplus(-k_i) = log i - log f,
    log f' = -softplus(d) and log i' = -softplus(-d). Options and modes as minGRU.
    """

    n_gates = 3

    def __init__(self, d_model: int, expand: float = 1, mode: str = "parallel", chunk_size: int = 64):
        super().__init__(d_model, expand, mode, chunk_size, "minlstm")

    def init_state(self, batch_size, device=None, dtype=None) -> MinLSTMState:
        dtype = dtype or self.in_proj.weight.dtype
        return MinLSTMState(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype))

    def coefficients(self, x, log):
        k_f, k_i, k_h = self.in_proj(x).chunk(3, dim=-1)  # (..., H) each
        if log:
            d = F.softplus(-k_f) - F.softplus(-k_i)  # log i - log f
            return -F.softplus(d), -F.softplus(-d) + log_g(k_h)  # log f', log(i' h~)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(k_h)
