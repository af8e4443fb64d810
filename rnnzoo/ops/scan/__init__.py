"""The first-order linear recurrence h_t = a_t * h_{t-1} + b_t, elementwise, in linear and in log space.

Shapes: a, b (B, T, ...) with any trailing shape, initial_state (B, ...). Both functions return
``(h (B, T, ...), h_T (B, ...))``. ``mode="recurrent"`` is the reference loop (naive.py), ``mode="chunk"`` the
blocked form (parallel.py: chunks of ``chunk_size`` steps run side by side), ``mode="auto"`` = chunk.
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ShapeError
from rnnzoo.ops.checks import MODES, check_choice, check_chunk_size, check_tensor
from rnnzoo.ops.scan.naive import scan_log_space_naive, scan_naive
from rnnzoo.ops.scan.parallel import scan_chunked, scan_log_space_chunked


def check_scan_args(owner: str, a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None,
                    mode: str, chunk_size: int, names: tuple[str, str]) -> None:
    """Check a and b (B, T, ...) of one shape and floating dtype, the state (B, ...) and the options."""
    check_choice(owner, "mode", mode, MODES)
    check_chunk_size(owner, chunk_size)
    for name, x in zip(names, (a, b)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
            raise ShapeError(f"{owner}: {name} must be a floating tensor of shape (B, T, ...), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
    if a.shape != b.shape:
        raise ShapeError(f"{owner}: {names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} must have the "
                         "same shape (B, T, ...); expand one of them first")
    check_tensor(owner, names[1], b, a.shape, "(B, T, ...)", a, ref=names[0])  # b's dtype and device
    if initial_state is not None:
        check_tensor(owner, "initial_state", initial_state, (a.shape[0], *a.shape[2:]), "(B, ...)", a, ref=names[0])


def scan(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None, mode: str = "auto",
         chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t with h_0 = initial_state (zeros if None); any real a, including a < 0 and 0.

    Equivalent to ``h = h0; for t: h = a[:, t] * h + b[:, t]``, returning every h and the last one.
    """
    check_scan_args("scan", a, b, initial_state, mode, chunk_size, ("a", "b"))
    if a.shape[1] == 0:
        h0 = a.new_zeros(a.shape[0], *a.shape[2:]) if initial_state is None else initial_state
        return a.new_zeros(a.shape), h0
    if mode == "recurrent":
        h0 = a.new_zeros(a.shape[0], *a.shape[2:]) if initial_state is None else initial_state
        return scan_naive(a, b, h0)
    return scan_chunked(a, b, initial_state, chunk_size)


def scan_log_space(log_a: torch.Tensor, log_b: torch.Tensor, initial_state: torch.Tensor | None = None,
                   mode: str = "auto", chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """log h_t for h_t = a_t * h_{t-1} + b_t with a, b > 0 given as ``log_a``, ``log_b`` (finite log_a).

    ``initial_state`` is log h_0 (None means h_0 = 0) and the second output is log h_T, so running [0, t) and
    then [t, T) with the state handed over equals one run (the minGRU / minLSTM parallel scan, Feng et al. 2024).
    """
    check_scan_args("scan_log_space", log_a, log_b, initial_state, mode, chunk_size, ("log_a", "log_b"))
    if log_a.shape[1] == 0:
        h0 = log_a.new_full((log_a.shape[0], *log_a.shape[2:]), -torch.inf) if initial_state is None else initial_state
        return log_a.new_zeros(log_a.shape), h0
    if mode == "recurrent":
        return scan_log_space_naive(log_a, log_b, initial_state)
    return scan_log_space_chunked(log_a, log_b, initial_state, chunk_size)


__all__ = ["scan", "scan_log_space"]
