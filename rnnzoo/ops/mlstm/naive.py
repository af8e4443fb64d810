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


def read(C: torch.Tensor, n: torch.Tensor, m: torch.Tensor, q_t: torch.Tensor, eps: float) -> torch.Tensor:
    """h = C^T q / (max(|n^T q|, exp(-m)) + eps) for C (B, H, K, V), n (B, H, K), m (B, H), q_t (B, H, K)."""
    num = torch.einsum("bhk,bhkv->bhv", q_t, C)  # (B, H, V)
    den = torch.maximum((q_t * n).sum(-1).abs(), torch.exp(-m))  # (B, H)
    return num / (den[..., None] + eps)


def mlstm_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, log_f: torch.Tensor,
                    state: MLSTMState, eps: float) -> tuple[torch.Tensor, MLSTMState]:
    """m_t = max(log f_t + m_{t-1}, i_t), i'_t = exp(i_t - m_t), f'_t = exp(log f_t + m_{t-1} - m_t),
    C_t = f'_t C_{t-1} + i'_t k_t v_t^T, n_t = f'_t n_{t-1} + i'_t k_t,
    h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)."""
    C, n, m = state
    outs = []
    for t in range(q.shape[1]):
        m_new = torch.maximum(log_f[:, t] + m, i[:, t])  # (B, H)
        i_t = torch.exp(i[:, t] - m_new)  # (B, H), <= 1
        f_t = torch.exp(log_f[:, t] + m - m_new)  # (B, H), <= 1
        C = f_t[..., None, None] * C + i_t[..., None, None] * k[:, t, :, :, None] * v[:, t, :, None, :]
        n = f_t[..., None] * n + i_t[..., None] * k[:, t]
        m = m_new
        outs.append(read(C, n, m, q[:, t], eps))
    return torch.stack(outs, dim=1), MLSTMState(C, n, m)
