"""S4D, the diagonal structured state space (Gu et al. 2022), as a convolution with its Vandermonde kernel.

Per channel h, a complex diagonal state of size N stored as N/2 conjugate pairs (the real output is twice
the real part of one half):

    x'(t) = A x(t) + B u(t),   y = C x + D u,   A = -exp(log_A_real) + i A_imag  (Re A < 0)

sampled with step dt = exp(log_dt) by zero-order hold or the bilinear rule (``discretize`` in s4d_naive.py):

    x_t = Abar x_{t-1} + Bbar u_t,   y_t = 2 Re(C x_t) + D u_t

Layout: u (B, T, H) float32 or float64; A, B, C (H, N/2) complex64 / complex128 to match; log_dt, D (H,).
The state crosses the API as a real tensor (B, H, N/2, 2) of u's dtype, the real and imaginary parts of x
(``torch.view_as_real`` layout), so the state utilities, dtype checks and checkpoints treat it like any other
state. ``mode="conv"`` (and ``"auto"``) is the FFT convolution here, ``mode="recurrent"`` the loop in
s4d_naive.py. See README.md for the derivation of the convolution form.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import check_choice, check_rank, check_tensor
from rnnzoo.ops.ssm.s4d_naive import DISCRETIZATIONS, discretize, s4d_recurrent

MODES = ("auto", "conv", "recurrent")


def check_ssm(op: str, A: object, B: object, C: object, log_dt: object) -> tuple[int, int]:
    """Check A (H, N/2) complex with Re A < 0, B and C like A, log_dt (H,) real of A's precision; return (H, N/2)."""
    check_rank(op, "A", A, 2, "(H, N/2)")
    if A.dtype not in (torch.complex64, torch.complex128):
        raise ShapeError(f"{op}: A must be complex64 or complex128 (one entry per conjugate pair), got {A.dtype}; "
                         "build it as torch.complex(-log_A_real.exp(), A_imag)")
    H, N2 = A.shape
    for name, x in (("B", B), ("C", C)):
        check_tensor(op, name, x, (H, N2), "(H, N/2)", A, ref="A")
    check_tensor(op, "log_dt", log_dt, (H,), "(H,)", A.real, ref="A's real part")
    if bool((A.real >= 0).any()):
        raise ConfigError(f"{op}: A must have a negative real part (a stable state), got a maximum of "
                          f"{A.real.max().item():.4g}; parameterize it as -exp(log_A_real) + i A_imag")
    return H, N2


def powers(log_Abar: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Abar^l for l = 0..T-1 in two factors, Abar^(c j + r) = Q_j P_r with c = ceil(sqrt(T)):
    P (H, N/2, c) = Abar^r for r < c and Q (H, N/2, n) = Abar^(c j) for j < n = ceil(T / c).

    Every factor is exp(k log Abar), never a repeated product, so the error of Abar^l does not grow with l; and
    only O(sqrt(T)) exponentials per entry of A are taken: the (H, N/2, T) Vandermonde matrix is never formed,
    its contractions become two smaller ones (see README.md). exp(z) is taken as exp(Re z) e^(i Im z) with
    real exp, cos and sin, about twice as fast as the complex exp on CPU.
    """
    c = math.isqrt(T - 1) + 1 if T > 1 else 1
    k = torch.arange(c * (-(-T // c)), device=log_Abar.device, dtype=log_Abar.real.dtype)  # (n c,)
    P = log_Abar.unsqueeze(-1) * k[:c]  # (H, N/2, c)
    Q = log_Abar.unsqueeze(-1) * k[::c]  # (H, N/2, n)
    return torch.polar(P.real.exp(), P.imag), torch.polar(Q.real.exp(), Q.imag)


def vandermonde_sum(w: torch.Tensor, P: torch.Tensor, Q: torch.Tensor, T: int) -> torch.Tensor:
    """2 Re sum_n w_n Abar_n^t for t < T: w (..., H, N/2) complex -> (..., H, T) real."""
    v = torch.einsum("...hnj,hnr->...hjr", (w.unsqueeze(-1) * Q), P)  # (..., H, n, c)
    return 2 * v.real.flatten(-2)[..., :T]


def s4d_kernel(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, log_dt: torch.Tensor, T: int,
               disc: str = "zoh") -> torch.Tensor:
    """The convolution kernel K (H, T) of the discretized SSM: K_l = 2 Re sum_n C_n Bbar_n Abar_n^l.

    y = K * u + D u (causal convolution over time) is the output from a zero state. A, B, C (H, N/2) complex,
    log_dt (H,), ``disc`` 'zoh' or 'bilinear'.
    """
    check_ssm("s4d_kernel", A, B, C, log_dt)
    check_choice("s4d_kernel", "disc", disc, DISCRETIZATIONS)
    if not isinstance(T, int) or isinstance(T, bool) or T < 0:
        raise ConfigError(f"s4d_kernel: T must be an int >= 0, got {T!r}")
    if T == 0:
        return A.real.new_zeros(A.shape[0], 0)
    log_Abar, _, Bbar = discretize(A, B, log_dt, disc)  # (H, N/2)
    return vandermonde_sum(C * Bbar, *powers(log_Abar, T), T)


def s4d_conv(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, log_dt: torch.Tensor,
             D: torch.Tensor, x0: torch.Tensor | None, disc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole sequence at once (see README.md). x0 (B, H, N/2) complex or None (zeros) is the state before
    step 0; returns y (B, T, H) and the state after step T-1 (B, H, N/2) complex:

        y_t     = sum_{s<=t} K_{t-s} u_s + D u_t + 2 Re sum_n C_n Abar_n^(t+1) x0_n
        x_{T-1} = Abar^T x0 + sum_s Abar^(T-1-s) Bbar u_s
    """
    Bsz, T, H = u.shape
    log_Abar, Abar, Bbar = discretize(A, B, log_dt, disc)  # (H, N/2)
    P, Q = powers(log_Abar, T)  # (H, N/2, c), (H, N/2, n)
    K = vandermonde_sum(C * Bbar, P, Q, T)  # (H, T)
    L = 2 * T  # zero padding to 2T turns the FFT's circular convolution into a linear one
    y = torch.fft.irfft(torch.fft.rfft(u, n=L, dim=1) * torch.fft.rfft(K.T, n=L, dim=0), n=L, dim=1)[:, :T]
    y = y + D * u  # (B, T, H)
    # sum_s Abar^(T-1-s) u_s: time reversed, padded to n c and cut as s' = c j + r, then Abar^s' = Q_j P_r
    n, c = Q.shape[-1], P.shape[-1]
    u_rev = F.pad(u.flip(1).transpose(1, 2), (0, n * c - T)).reshape(Bsz, H, n, c)  # (B, H, n, c)
    u_P = torch.einsum("bhjr,hnr->bhjn", u_rev.to(P.dtype), P)  # (B, H, n, N/2)
    x_T = Bbar * torch.einsum("bhjn,hnj->bhn", u_P, Q)  # (B, H, N/2)
    if x0 is not None:
        y = y + vandermonde_sum(C * Abar * x0, P, Q, T).transpose(1, 2)  # (B, T, H)
        x_T = x_T + (T * log_Abar).exp() * x0
    return y, x_T


def s4d(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, log_dt: torch.Tensor,
        D: torch.Tensor, initial_state: torch.Tensor | None = None, disc: str = "zoh",
        mode: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """S4D over H independent channels: x_t = Abar x_{t-1} + Bbar u_t, y_t = 2 Re(C x_t) + D u_t.

    u (B, T, H) float32 or float64; A (Re A < 0), B, C (H, N/2) of the matching complex dtype; log_dt, D (H,)
    of u's dtype; initial_state (B, H, N/2, 2) of u's dtype (real and imaginary parts) or None (zeros).
    ``disc`` 'zoh' or 'bilinear'. Returns y (B, T, H) and the final state (B, H, N/2, 2).
    """
    check_choice("s4d", "mode", mode, MODES)
    check_choice("s4d", "disc", disc, DISCRETIZATIONS)
    check_rank("s4d", "u", u, 3, "(B, T, H)")
    if u.dtype not in (torch.float32, torch.float64):
        raise ShapeError(f"s4d: u must be float32 or float64 (the state is complex64 / complex128), got {u.dtype}")
    Bsz, T, H = u.shape
    _, N2 = check_ssm("s4d", A, B, C, log_dt)
    if A.dtype != u.dtype.to_complex() or A.device != u.device:
        raise ShapeError(f"s4d: A is {A.dtype} on {A.device} but u is {u.dtype} on {u.device}; pass A, B, C as "
                         f"{u.dtype.to_complex()} on u's device")
    check_tensor("s4d", "A", A, (H, N2), "(H, N/2)", A, ref="A")  # H as in u
    check_tensor("s4d", "D", D, (H,), "(H,)", u, ref="u")
    if initial_state is not None:
        check_tensor("s4d", "initial_state", initial_state, (Bsz, H, N2, 2), "(B, H, N/2, 2)", u, ref="u")
    if T == 0:
        return u.new_zeros(Bsz, 0, H), u.new_zeros(Bsz, H, N2, 2) if initial_state is None else initial_state
    x0 = None if initial_state is None else torch.complex(initial_state[..., 0], initial_state[..., 1])
    if mode == "recurrent":
        x0 = u.new_zeros(Bsz, H, N2, dtype=A.dtype) if x0 is None else x0
        y, x_T = s4d_recurrent(u, A, B, C, log_dt, D, x0, disc)
    else:
        y, x_T = s4d_conv(u, A, B, C, log_dt, D, x0, disc)
    return y, torch.view_as_real(x_T)
