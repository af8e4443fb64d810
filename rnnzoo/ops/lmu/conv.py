"""The LMU memory as a causal convolution (Chilkuri & Eliasmith 2021), computed with the FFT.

Unrolling m_t = A_bar m_{t-1} + B_bar u_t from m_0 gives

    m_t = sum_{s=0}^{t} K_{t-s} u_s + A_bar^(t+1) m_0,   K_j = A_bar^j B_bar  (T, q)

for every channel at once, since A_bar and B_bar are shared. See README.md.
"""
from __future__ import annotations

import torch


def matrix_powers(A: torch.Tensor, n: int) -> torch.Tensor:
    """A^1, ..., A^n (n, q, q) by doubling: [A^1..A^k] A^k = [A^(k+1)..A^(2k)], log2(n) batched products."""
    P = A.unsqueeze(0)  # (1, q, q)
    while P.shape[0] < n:
        P = torch.cat([P, P @ P[-1]], dim=0)
    return P[:n]


def lmu_memory_conv(u: torch.Tensor, A_bar: torch.Tensor, B_bar: torch.Tensor,
                    m0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """u (B, T, H), A_bar (q, q), B_bar (q,), m0 (B, H, q) or None (zeros: its term is skipped)
    -> (m (B, T, H, q), m_T (B, H, q)); T >= 1."""
    T = u.shape[1]
    P = matrix_powers(A_bar, T)  # (T, q, q): A_bar^(t+1)
    K = torch.cat([B_bar.unsqueeze(0), P[:-1] @ B_bar], dim=0)  # (T, q): A_bar^t B_bar
    n = 2 * T  # zero padding to 2T turns the FFT's circular convolution into the causal linear one
    U = torch.fft.rfft(u.transpose(1, 2), n=n)  # (B, H, n/2 + 1), time last: the FFTs run on contiguous rows
    Kf = torch.fft.rfft(K.T, n=n)  # (q, n/2 + 1)
    m = torch.fft.irfft(U.unsqueeze(2) * Kf, n=n)[..., :T].permute(0, 3, 1, 2)  # (B, T, H, q)
    if m0 is not None:
        m = torch.einsum("tij,bhj->bthi", P, m0) + m  # the initial state's free response
    return m, m[:, -1]
