"""S4D's discretization and its reference loop, one step at a time in complex arithmetic.

Layout: u (B, T, H) real, A, B, C (H, N/2) complex (one of each conjugate pair), log_dt (H,), D (H,),
state x (B, H, N/2) complex. The convolution form in s4d.py is tested against this loop.
"""
from __future__ import annotations

import torch

DISCRETIZATIONS = ("zoh", "bilinear")


def discretize(A: torch.Tensor, B: torch.Tensor, log_dt: torch.Tensor,
               disc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log Abar, Abar, Bbar), each (H, N/2), for x' = A x + B u sampled with step dt = exp(log_dt) (H,).

        zoh       Abar = exp(dt A),                     Bbar = (Abar - 1) / A * B
        bilinear  Abar = (1 + dt A/2) / (1 - dt A/2),   Bbar = dt B / (1 - dt A/2)

    log Abar is returned so that powers Abar^l can be taken as exp(l log Abar) without repeated products.
    """
    dt = log_dt.exp().unsqueeze(-1)  # (H, 1)
    dtA = dt * A  # (H, N/2)
    if disc == "zoh":
        return dtA, dtA.exp(), torch.expm1(dtA) / A * B
    log_Abar = torch.log1p(dtA / 2) - torch.log1p(-dtA / 2)  # log1p keeps precision for small dt A
    return log_Abar, (1 + dtA / 2) / (1 - dtA / 2), dt * B / (1 - dtA / 2)


def s4d_recurrent(u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, log_dt: torch.Tensor,
                  D: torch.Tensor, x0: torch.Tensor, disc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = Abar x_{t-1} + Bbar u_t,  y_t = 2 Re(sum_n C_n x_{t,n}) + D u_t, with x_{-1} = x0 (B, H, N/2).

    Returns y (B, T, H) and x_{T-1} (B, H, N/2) complex.
    """
    _, Abar, Bbar = discretize(A, B, log_dt, disc)  # (H, N/2)
    x, ys = x0, []
    for u_t in u.unbind(1):
        x = Abar * x + Bbar * u_t.unsqueeze(-1)  # (B, H, N/2)
        ys.append(2 * (C * x).sum(-1).real + D * u_t)  # (B, H)
    return torch.stack(ys, dim=1), x
