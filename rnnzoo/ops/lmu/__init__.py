"""The memory of the Legendre Memory Unit (Voelker, Kajic & Eliasmith 2019): a fixed linear system whose q
state variables per channel are the Legendre coefficients of the channel's input over the last theta steps.

    m_t = A_bar m_{t-1} + B_bar u_t,   (A_bar, B_bar) = discretize_zoh(*legendre_matrices(q, theta))

Layout: u (B, T, H) one scalar input per channel, A_bar (q, q), B_bar (q,), initial_state (B, H, q); returns
``(m (B, T, H, q), m_T (B, H, q))``. ``mode="recurrent"`` is the loop in naive.py, ``mode="conv"`` the causal
convolution with the impulse response A_bar^t B_bar by FFT in conv.py (Chilkuri & Eliasmith 2021),
``mode="auto"`` the conv form.
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ShapeError
from rnnzoo.ops.checks import check_choice, check_rank, check_tensor
from rnnzoo.ops.lmu.conv import lmu_memory_conv, matrix_powers
from rnnzoo.ops.lmu.legendre import discretize_zoh, legendre_matrices
from rnnzoo.ops.lmu.naive import lmu_cell, lmu_memory_recurrent

LMU_MODES = ("auto", "conv", "recurrent")

__all__ = ["LMU_MODES", "discretize_zoh", "legendre_matrices", "lmu_cell", "lmu_memory", "matrix_powers"]


def lmu_memory(u: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor, initial_state: torch.Tensor | None = None,
               mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """m_t = A_bar m_{t-1} + B_bar u_t for each of H channels, from m_0 = initial_state (zeros if None).

    u (B, T, H), A_bar (q, q), B_bar (q,), initial_state (B, H, q). Returns m (B, T, H, q) and m_T (B, H, q).
    """
    check_rank("lmu_memory", "u", u, 3, "(B, T, H)")
    if not u.is_floating_point():
        raise ShapeError(f"lmu_memory: u must be a floating tensor, got {u.dtype}")
    check_rank("lmu_memory", "A_bar", A_bar, 2, "(q, q)")
    B, T, H = u.shape
    q = A_bar.shape[0]
    check_tensor("lmu_memory", "A_bar", A_bar, (q, q), "(q, q)", u, ref="u")
    check_tensor("lmu_memory", "B_bar", B_bar, (q,), "(q,)", u, ref="u")
    if initial_state is not None:
        check_tensor("lmu_memory", "initial_state", initial_state, (B, H, q), "(B, H, q)", u, ref="u")
    check_choice("lmu_memory", "mode", mode, LMU_MODES)
    m0 = u.new_zeros(B, H, q) if initial_state is None else initial_state
    if T == 0:
        return u.new_zeros(B, 0, H, q), m0
    if mode == "recurrent":
        return lmu_memory_recurrent(u, A_bar, B_bar, m0)
    return lmu_memory_conv(u, A_bar, B_bar, initial_state)  # None skips the free response of a zero state
