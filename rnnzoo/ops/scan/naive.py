"""Reference loops for the first-order linear recurrence, in linear and in log space."""
from __future__ import annotations

import torch


def scan_naive(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t, elementwise; a, b (B, T, ...), h0 (B, ...). Returns (h (B, T, ...), h_T)."""
    h, hs = h0, []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t  # (B, ...)
        hs.append(h)
    return torch.stack(hs, dim=1), h


def scan_log_space_naive(log_a: torch.Tensor, log_b: torch.Tensor,
                         log_h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """log h_t = logaddexp(log a_t + log h_{t-1}, log b_t); ``log_h0=None`` means h_0 = 0."""
    log_h, out = log_h0, []
    for log_a_t, log_b_t in zip(log_a.unbind(1), log_b.unbind(1)):
        log_h = log_b_t if log_h is None else torch.logaddexp(log_a_t + log_h, log_b_t)  # (B, ...)
        out.append(log_h)
    return torch.stack(out, dim=1), log_h
