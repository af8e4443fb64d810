"""Reservoir computing: the leaky-integrator echo state network (Jaeger 2001).

    h_t = (1 - a) h_{t-1} + a tanh(u_t + W h_{t-1})

Layout: u (B, T, N) the input drive W_in x_t + b, precomputed for every t in one matmul by the caller;
W (N, N) the reservoir; initial_state (B, N). Returns ``(h (B, T, N), h_T (B, N))``. The recurrence is
nonlinear in h, so the loop in naive.py is the only form (see README.md for what makes it fast).
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import check_rank, check_tensor
from rnnzoo.ops.reservoir.naive import esn_naive

__all__ = ["esn"]


def esn(u: torch.Tensor, W: torch.Tensor, leak: float = 1.0,
        initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = (1 - leak) h_{t-1} + leak tanh(u_t + W h_{t-1}) from h_0 = initial_state (zeros if None).

    u (B, T, N), W (N, N), leak in (0, 1], initial_state (B, N). Returns h (B, T, N) and h_T (B, N).
    Autograd flows to u, W and the initial state when they require grad; otherwise no graph is built.
    """
    check_rank("esn", "u", u, 3, "(B, T, N)")
    if not u.is_floating_point():
        raise ShapeError(f"esn: u must be a floating tensor, got {u.dtype}")
    B, T, N = u.shape
    check_tensor("esn", "W", W, (N, N), "(N, N)", u, ref="u")
    if isinstance(leak, bool) or not isinstance(leak, (int, float)) or not 0 < leak <= 1:
        raise ConfigError(f"esn: leak is the leak rate a in h_t = (1 - a) h_{{t-1}} + a tanh(...) and must be a "
                          f"number in (0, 1], got {leak!r}")
    if initial_state is None:
        initial_state = u.new_zeros(B, N)
    check_tensor("esn", "initial_state", initial_state, (B, N), "(B, N)", u, ref="u")
    if T == 0:
        return u.new_zeros(B, 0, N), initial_state
    return esn_naive(u, W, float(leak), initial_state)
