"""Reference loops for the first-order linear recurrence, in linear and in log space."""
from __future__ import annotations

import torch


def scan_naive(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t, elementwise; a, b (B, T, ...), h0 (B, ...). Returns (h (B, T, ...), h_T)."""
    h, hs = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]  # (B, ...)
        hs.append(h)
    return torch.stack(hs, dim=1), h


def scan_log_space_naive(log_a: torch.Tensor, log_b: torch.Tensor,
                         log_h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """log h_t = logaddexp(log a_t + log h_{t-1}, log b_t); ``log_h0=None`` means h_0 = 0."""
    log_h, out = log_h0, []
    for t in range(log_a.shape[1]):
        log_h = log_b[:, t] if log_h is None else torch.logaddexp(log_a[:, t] + log_h, log_b[:, t])  # (B, ...)
        out.append(log_h)
    return torch.stack(out, dim=1), log_h
