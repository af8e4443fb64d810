"""The Legendre delay system of the LMU (Voelker, Kajic & Eliasmith 2019) and its zero-order-hold discretisation."""
from __future__ import annotations

import torch


def legendre_matrices(q: int, theta: float, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The continuous-time (A (q, q), B (q,)) of theta dm/dt = theta (A m + B u), whose state m holds the
    Legendre coefficients of u over the sliding window [t - theta, t]:

        A_ij = (2i + 1) / theta * (-1 if i < j else (-1)^(i - j + 1)),   B_i = (2i + 1) (-1)^i / theta
    """
    i = torch.arange(q, dtype=dtype)[:, None]  # (q, 1)
    j = torch.arange(q, dtype=dtype)[None, :]  # (1, q)
    sign = torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))  # (q, q)
    A = (2 * i + 1) / theta * sign
    B = (2 * i[:, 0] + 1) * (-1.0) ** i[:, 0] / theta
    return A, B


def discretize_zoh(A: torch.Tensor, B: torch.Tensor, dt: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: (A_bar, B_bar) with m_t = A_bar m_{t-1} + B_bar u_t exact for u constant over each step.

    A_bar = exp(A dt) and B_bar = int_0^dt exp(A s) ds B, read off one matrix exponential of the block
    [[A, B], [0, 0]] dt, whose top row is [exp(A dt), int_0^dt exp(A s) ds B] (no inverse of A needed).
    """
    q = A.shape[0]
    block = A.new_zeros(q + 1, q + 1)
    block[:q, :q], block[:q, q] = A, B
    E = torch.linalg.matrix_exp(block * dt)  # (q + 1, q + 1)
    return E[:q, :q], E[:q, q]
