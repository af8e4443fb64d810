"""Initialisation shared by the classic cells (torch.nn's defaults, plus orthogonal recurrent weights)."""
from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_classic(module: nn.Module, hidden_size: int, n_gates: int, orthogonal: bool) -> None:
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn.RNN/LSTM/GRU do; with ``orthogonal``,
    each gate's block of ``weight_hh`` is then made orthogonal (Saxe et al. 2014; Henaff et al. 2016)."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters(recurse=False):
        nn.init.uniform_(p, -bound, bound)
    if orthogonal:
        for block in module.weight_hh.chunk(n_gates, dim=0):
            nn.init.orthogonal_(block)
