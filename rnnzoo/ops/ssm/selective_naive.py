"""Reference loops of Mamba's selective scan and Mamba-2's SSD: one time step per iteration, autograd throughout."""
from __future__ import annotations

import torch


def transition(dA: torch.Tensor, neg_eigval: bool) -> torch.Tensor:
    """a = exp(delta A), or 2 exp(delta A) - 1 in (-1, 1] (Grazzi et al. 2024) with ``neg_eigval``."""
    a = dA.exp()
    return 2 * a - 1 if neg_eigval else a


def selective_scan_recurrent(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, h0: torch.Tensor,
                             neg_eigval: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop, with delta already offset and softplus'd:

        a_t = exp(delta_t A)  (or 2 exp(delta_t A) - 1 with ``neg_eigval``)      (D, N)
        h_t = a_t * h_{t-1} + (delta_t u_t) B_t^T                                 (D, N)
        y_t = h_t C_t                                                            (D,)

    u, delta (B, T, D), A (D, N), B and C (B, T, N), h0 (B, D, N). Returns y (B, T, D) and h_T.
    """
    h, ys = h0, []
    for u_t, dt_t, B_t, C_t in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):
        a = transition(dt_t.unsqueeze(-1) * A, neg_eigval)  # (B, D, N)
        h = a * h + (dt_t * u_t).unsqueeze(-1) * B_t.unsqueeze(1)  # (B, D, N)
        ys.append((h * C_t.unsqueeze(1)).sum(-1))  # (B, D)
    return torch.stack(ys, dim=1), h


def ssd_recurrent(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                  h0: torch.Tensor, neg_eigval: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop of Mamba-2's scalar-decay state space, per head h with B and C of its group:

        a_t = exp(dt_t A_h)  (or 2 exp(dt_t A_h) - 1 with ``neg_eigval``)
        h_t = a_t h_{t-1} + dt_t B_t x_t^T                 (N, P)
        y_t = h_t^T C_t                                    (P,)

    x (B, T, H, P), dt (B, T, H), A (H,), B and C (B, T, H, N) (already one per head), h0 (B, H, N, P).
    """
    h, ys = h0, []
    for x_t, dt_t, B_t, C_t in zip(x.unbind(1), dt.unbind(1), B.unbind(1), C.unbind(1)):
        decay = transition(dt_t * A, neg_eigval)[..., None, None]  # (B, H, 1, 1)
        h = decay * h + dt_t[..., None, None] * B_t.unsqueeze(-1) * x_t.unsqueeze(-2)  # (B, H, N, P)
        ys.append((h * C_t.unsqueeze(-1)).sum(-2))  # (B, H, P)
    return torch.stack(ys, dim=1), h
