"""Reference loop of the LMU memory: m_t = A_bar m_{t-1} + B_bar u_t, one memory of q coefficients per channel."""
from __future__ import annotations

import torch


def lmu_cell(u_t: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """One step: u_t (B, H), m (B, H, q) -> A_bar m + B_bar u_t (B, H, q)."""
    return m @ A_bar.T + u_t.unsqueeze(-1) * B_bar


def lmu_memory_recurrent(u: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor,
                         m0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u (B, T, H), A_bar (q, q), B_bar (q,), m0 (B, H, q) -> (m (B, T, H, q), m_T (B, H, q))."""
    m, ms = m0, []
    for u_t in u.unbind(1):
        m = lmu_cell(u_t, A_bar, B_bar, m)  # (B, H, q)
        ms.append(m)
    return torch.stack(ms, dim=1), m
