"""Reference loop for the mLSTM (xLSTM, Beck et al. 2024): one token at a time, the stabilised equations literally.

Layout: q, k (B, T, H, K), v (B, T, H, V), i and log_f (B, T, H); state C (B, H, K, V), n (B, H, K), m (B, H);
o (B, T, H, V). ``q`` arrives already multiplied by the scale and ``log_f`` is the log forget gate.
The chunk form is tested against this loop.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class MLSTMState(NamedTuple):
    """Matrix memory C (B, H, K, V), normaliser n (B, H, K) and stabiliser m (B, H). C and n are stored divided
    by exp(m): the true memory is exp(m) C, which keeps C and n bounded whatever the gate pre-activations."""
    C: torch.Tensor
    n: torch.Tensor
    m: torch.Tensor


def divide(num: torch.Tensor, den: torch.Tensor, m: torch.Tensor, eps: float) -> torch.Tensor:
    """h = num / (max(|den|, exp(-m)) + eps) for num (..., V), den and m (...), computed as

        h = s num / (max(s |den|, exp(-max(m, 0))) + s eps),  s = exp(min(m, 0))

    the same quotient with numerator and denominator times s, but with no factor above 1: the floor exp(-m)
    overflows to inf once m < -88 in float32 (-709 in float64), and its gradient is then 0 * inf = NaN. For m >= 0,
    s = 1 and this is the formula as written, bit for bit; for m < 0, s num and s den are the reads of the true
    memory exp(m) (C, n), against the paper's floor of 1."""
    s = torch.exp(m.clamp(max=0))  # (...), <= 1
    floor = torch.exp(-m.clamp(min=0))  # (...), <= 1
    return s[..., None] * num / (torch.maximum(s * den.abs(), floor) + s * eps)[..., None]


def read(C: torch.Tensor, n: torch.Tensor, m: torch.Tensor, q_t: torch.Tensor, eps: float) -> torch.Tensor:
    """h = C^T q / (max(|n^T q|, exp(-m)) + eps) for C (B, H, K, V), n (B, H, K), m (B, H), q_t (B, H, K)."""
    num = torch.einsum("bhk,bhkv->bhv", q_t, C)  # (B, H, V)
    return divide(num, (q_t * n).sum(-1), m, eps)  # (B, H, V)


def mlstm_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, log_f: torch.Tensor,
                    state: MLSTMState, eps: float) -> tuple[torch.Tensor, MLSTMState]:
    """m_t = max(log f_t + m_{t-1}, i_t), i'_t = exp(i_t - m_t), f'_t = exp(log f_t + m_{t-1} - m_t),
    C_t = f'_t C_{t-1} + i'_t k_t v_t^T, n_t = f'_t n_{t-1} + i'_t k_t,
    h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)."""
    C, n, m = state
    outs = []
    for q_t, k_t, v_t, i_t, log_f_t in zip(*(x.unbind(1) for x in (q, k, v, i, log_f))):
        m_new = torch.maximum(log_f_t + m, i_t)  # (B, H)
        i_gate = torch.exp(i_t - m_new)  # (B, H), i'_t <= 1
        f_gate = torch.exp(log_f_t + m - m_new)  # (B, H), f'_t <= 1
        C = f_gate[..., None, None] * C + i_gate[..., None, None] * k_t[:, :, :, None] * v_t[:, :, None, :]
        n = f_gate[..., None] * n + i_gate[..., None] * k_t
        m = m_new
        outs.append(read(C, n, m, q_t, eps))
    return torch.stack(outs, dim=1), MLSTMState(C, n, m)
