"""One generic loop for nonlinear cells (Keras ``RNN(cell)``, Flax ``nn.RNN``), and the cut of a sequence into
the pieces of fixed-length segments.

A cell is ``cell(x_t, state) -> (y_t, state)``; ``scan_cell`` runs it over the time axis of ``x`` (B, T, ...).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

Cell = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


def scan_cell(cell: Cell, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """Equivalent to ``ys = []; for t: y, state = cell(x[:, t], state); ys.append(y)``, stacked on dim 1."""
    ys = []
    # unbind, not x[:, t]: the backward of each index would write a full-size zero gradient, O(T^2) in all
    for x_t in x.unbind(1):
        y, state = cell(x_t, state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


def segment_sizes(T: int, offset: int, length: int) -> list[int]:
    """The sizes of the pieces that cut T steps at the ends of segments of ``length`` steps, the first step being
    number ``offset`` of its segment: [length - offset, length, ..., the rest], none empty. Feed them to
    ``x.split``: one split has one backward, where slicing piece by piece writes a full-size gradient each."""
    first = min(T, length - offset)
    full, rest = divmod(T - first, length)
    return [first] * (first > 0) + [length] * full + [rest] * (rest > 0)
