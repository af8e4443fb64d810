"""The sLSTM cell of xLSTM (Beck et al. 2024): scalar memory, exponential input gate, stabilised, with recurrent
connections block-diagonal over heads.

Per unit, from the gate pre-activations a_t = W_a x_t + b_a + R_a h_{t-1} for a in (i, f, z, o), where each
R_a mixes only the D units of one head:

    log i_t = i_t                       (exponential input gate)
    log f_t = logsigmoid(f_t)  or  f_t  (sigmoid or exponential forget gate)
    m_t  = max(log f_t + m_{t-1}, log i_t)                     stabiliser
    i'_t = exp(log i_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t  = f'_t c_{t-1} + i'_t tanh(z_t)
    n_t  = f'_t n_{t-1} + i'_t
    h_t  = sigmoid(o_t) * c_t / n_t

c and n are the true cell and normaliser divided by exp(m_t), so h is the paper's unstabilised h_t = o_t c_t / n_t
and nothing overflows: either i'_t or f'_t is 1, so n_t >= 1 after any step. A unit whose n is 0 (the zero state:
an empty memory) reads its m_{t-1} as -inf, so m_t = log i_t and f'_t = 0, whatever its stored m.

The recurrence is nonlinear in h, so there is no parallel form: this loop is also the fast form, with the input
projection W x + b hoisted out of it by the caller (a single matrix product over the whole sequence).

Layout: i, f, z, o (B, T, H, D) input pre-activations; R (4, H, D, D) in gate order (i, f, z, o), acting as
h_{t-1} @ R[g, head]; the state is ``SLSTMState(h, c, n, m)``, each (B, H, D).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from rnnzoo.errors import ShapeError
from rnnzoo.ops.checks import check_choice
from rnnzoo.ops.loop import scan_cell

FORGET = ("sigmoid", "exp")


class SLSTMState(NamedTuple):
    """Hidden h, cell c, normaliser n and stabiliser m, each (B, H, D); c and n are stored divided by exp(m)."""
    h: torch.Tensor
    c: torch.Tensor
    n: torch.Tensor
    m: torch.Tensor


def slstm_cell(x_t: torch.Tensor, state: SLSTMState, R: torch.Tensor,
               forget: str = "sigmoid") -> tuple[torch.Tensor, SLSTMState]:
    """One step. x_t (B, 4, H, D) holds the input pre-activations W x_t + b of (i, f, z, o); returns (h_t, state)."""
    h, c, n, m = state
    pre = x_t + torch.einsum("bhd,ghde->bghe", h, R)  # (B, 4, H, D)
    log_i, f, z, o = pre.unbind(1)  # each (B, H, D)
    log_f = F.logsigmoid(f) if forget == "sigmoid" else f
    m = m.masked_fill(n == 0, float("-inf"))  # an empty memory: its old m means nothing, and f' is 0
    m_new = torch.maximum(log_f + m, log_i)  # (B, H, D)
    i_gate = torch.exp(log_i - m_new)  # <= 1
    f_gate = torch.exp(log_f + m - m_new)  # <= 1
    c = f_gate * c + i_gate * torch.tanh(z)
    n = f_gate * n + i_gate
    h = torch.sigmoid(o) * c / n
    return h, SLSTMState(h, c, n, m_new)


def slstm(i: torch.Tensor, f: torch.Tensor, z: torch.Tensor, o: torch.Tensor, R: torch.Tensor,
          initial_state: tuple | None = None, forget: str = "sigmoid") -> tuple[torch.Tensor, SLSTMState]:
    """sLSTM over a sequence: input pre-activations i, f, z, o (B, T, H, D), recurrent weights R (4, H, D, D),
    initial_state (h, c, n, m) each (B, H, D) or None (all zeros). Returns h (B, T, H, D) and the final state.
    Equations in the module docstring."""
    if not isinstance(i, torch.Tensor) or i.dim() != 4:
        raise ShapeError(f"slstm: i must have shape (B, T, H, D), got {getattr(i, 'shape', type(i).__name__)}")
    B, T, H, D = i.shape
    for name, t in (("f", f), ("z", z), ("o", o)):
        if not isinstance(t, torch.Tensor) or t.shape != i.shape:
            raise ShapeError(f"slstm: {name} must have the shape of i, (B, T, H, D) = {tuple(i.shape)}, "
                             f"got {getattr(t, 'shape', type(t).__name__)}")
    if not isinstance(R, torch.Tensor) or R.shape != (4, H, D, D):
        raise ShapeError(f"slstm: R must have shape (4, H, D, D) = {(4, H, D, D)} (gates i, f, z, o), "
                         f"got {getattr(R, 'shape', type(R).__name__)}")
    check_choice("slstm", "forget", forget, FORGET)
    if initial_state is None:
        initial_state = SLSTMState(*(i.new_zeros(B, H, D) for _ in range(4)))
    else:
        if not isinstance(initial_state, tuple) or len(initial_state) != 4:
            raise ShapeError("slstm: initial_state must be a tuple (h, c, n, m) such as SLSTMState, "
                             f"got {type(initial_state).__name__}")
        for name, t in zip(SLSTMState._fields, initial_state):
            if not isinstance(t, torch.Tensor) or t.shape != (B, H, D):
                raise ShapeError(f"slstm: initial_state.{name} must have shape (B, H, D) = {(B, H, D)}, "
                                 f"got {getattr(t, 'shape', type(t).__name__)}")
        initial_state = SLSTMState(*initial_state)
    if T == 0:
        return i.new_zeros(B, 0, H, D), initial_state
    x = torch.stack([i, f, z, o], dim=2)  # (B, T, 4, H, D)
    return scan_cell(lambda x_t, state: slstm_cell(x_t, state, R, forget), x, initial_state)
