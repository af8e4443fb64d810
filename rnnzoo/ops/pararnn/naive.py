"""Reference loops: the ParaRNN cells (diagonal GRU and LSTM) stepped one t at a time, and the 2x2-block linear
recurrence. The cells work on any leading shape, so the Newton solver also applies them to all t at once."""
from __future__ import annotations

import torch


def gru_cell(h: torch.Tensor, xz: torch.Tensor, xr: torch.Tensor, xc: torch.Tensor, uz: torch.Tensor,
             ur: torch.Tensor, uc: torch.Tensor) -> torch.Tensor:
    """One step of the diagonal GRU; h and the projected inputs (..., H), u (H,).

        z = sigmoid(xz + uz * h),  r = sigmoid(xr + ur * h),  c = tanh(xc + uc * (r * h)),
        h' = (1 - z) * h + z * c
    """
    z = torch.sigmoid(xz + uz * h)
    r = torch.sigmoid(xr + ur * h)
    c = torch.tanh(xc + uc * (r * h))
    return (1 - z) * h + z * c


def lstm_cell(h: torch.Tensor, c: torch.Tensor, xi: torch.Tensor, xf: torch.Tensor, xg: torch.Tensor,
              xo: torch.Tensor, ui: torch.Tensor, uf: torch.Tensor, ug: torch.Tensor,
              uo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the diagonal LSTM; h, c and the projected inputs (..., H), u (H,). Returns (h', c').

        i, f, o = sigmoid(x* + u* * h),  g = tanh(xg + ug * h),  c' = f * c + i * g,  h' = o * tanh(c')
    """
    i = torch.sigmoid(xi + ui * h)
    f = torch.sigmoid(xf + uf * h)
    g = torch.tanh(xg + ug * h)
    o = torch.sigmoid(xo + uo * h)
    c = f * c + i * g
    return o * torch.tanh(c), c


def para_gru_loop(xz, xr, xc, uz, ur, uc, h0):
    """h_t = gru_cell(h_{t-1}, x_t) for t = 1..T; inputs (B, T, H), h0 (B, H). Returns (h (B, T, H), h_T)."""
    h, hs = h0, []
    # unbind, not x[:, t]: the backward of each index would write a full-size zero gradient
    for x_t in zip(xz.unbind(1), xr.unbind(1), xc.unbind(1)):
        h = gru_cell(h, *x_t, uz, ur, uc)  # (B, H)
        hs.append(h)
    return torch.stack(hs, dim=1), h


def para_lstm_loop(xi, xf, xg, xo, ui, uf, ug, uo, h0, c0):
    """(h_t, c_t) = lstm_cell(h_{t-1}, c_{t-1}, x_t); inputs (B, T, H). Returns (h (B, T, H), (h_T, c_T))."""
    h, c, hs = h0, c0, []
    for x_t in zip(xi.unbind(1), xf.unbind(1), xg.unbind(1), xo.unbind(1)):
        h, c = lstm_cell(h, c, *x_t, ui, uf, ug, uo)  # (B, H) each
        hs.append(h)
    return torch.stack(hs, dim=1), (h, c)


def block_scan_naive(a: torch.Tensor, b: torch.Tensor, s0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s_t = a_t @ s_{t-1} + b_t with a (B, T, ..., 2, 2), b (B, T, ..., 2), s0 (B, ..., 2). Returns (s, s_T)."""
    s, out = s0, []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        s = (a_t @ s.unsqueeze(-1)).squeeze(-1) + b_t  # (B, ..., 2)
        out.append(s)
    return torch.stack(out, dim=1), s
