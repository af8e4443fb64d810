"""Small layers that several mixers share: a causal short convolution with a carried window, and an RMS norm
(used per head on the outputs of multi-head recurrences, and by the residual blocks); and the pieces of
initialisation and selection that several layers repeat."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ShortConv(nn.Module):
    """Depthwise causal convolution over time, y_t = act(b + sum_{j<K} w_j * x_{t-j}), with its window as state.

    The state is the last K-1 inputs (B, K-1, D), zeros at the start, so a sequence split in pieces with the
    window carried gives the same outputs as one pass. ``activation`` is 'silu' (Mamba, DeltaNet) or None.
    """

    def __init__(self, d: int, kernel_size: int = 4, activation: str | None = "silu", bias: bool = True):
        super().__init__()
        if activation not in ("silu", None):
            raise ValueError(f"ShortConv activation must be 'silu' or None, got {activation!r}")
        self.d, self.kernel_size, self.activation = d, kernel_size, activation
        self.weight = nn.Parameter(torch.empty(d, kernel_size))  # (D, K); column K-1 multiplies x_t
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None
        nn.init.uniform_(self.weight, -kernel_size ** -0.5, kernel_size ** -0.5)

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.kernel_size - 1, self.d, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D), window (B, K-1, D) -> y (B, T, D), the new window (B, K-1, D)."""
        xx = torch.cat([window, x], dim=1)  # (B, K-1+T, D)
        y = F.conv1d(xx.transpose(1, 2), self.weight.unsqueeze(1), self.bias, groups=self.d)  # (B, D, T)
        return self._act(y.transpose(1, 2)), xx[:, xx.shape[1] - (self.kernel_size - 1):]

    def step(self, x_t: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, D): the same as ``forward`` on one step, spelled out as a dot product with the window."""
        xx = torch.cat([window, x_t.unsqueeze(1)], dim=1)  # (B, K, D)
        y = (xx * self.weight.T).sum(1)  # (B, D)
        if self.bias is not None:
            y = y + self.bias
        return self._act(y), xx[:, 1:]

    def _act(self, y):
        return F.silu(y) if self.activation == "silu" else y


class RMSNorm(nn.Module):
    """x / rms(x) * gain over the last axis; on (..., H, V) it normalises each head on its own."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def conv_silu(convs: tuple, xs: tuple, windows: tuple, step: bool) -> tuple[tuple, tuple]:
    """Each of xs through its ShortConv (SiLU inside) with its window carried, one step or a whole sequence;
    without convs (an empty tuple) SiLU alone, the windows unchanged. Returns the outputs and the windows."""
    if not convs:
        return tuple(F.silu(x) for x in xs), windows
    outs = [c.step(x, w) if step else c(x, w) for c, x, w in zip(convs, xs, windows)]
    return tuple(y for y, _ in outs), tuple(w for _, w in outs)


def dt_bias_init(n: int, dt_min: float, dt_max: float, floor: float = 1e-4) -> torch.Tensor:
    """A bias whose softplus is a step size log-uniform in [dt_min, dt_max] (Mamba's initialisation)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp_min(floor)
    return dt + torch.log(-torch.expm1(-dt))  # the inverse of softplus


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """-inf everywhere but the k largest scores of the last axis (ties with the k-th kept), for a softmax."""
    kth = scores.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return scores.masked_fill(scores < kth, -torch.inf)
