"""Pre-norm residual block for deep models: x + mixer(norm(x)), then x + MLP(norm(x))."""
from __future__ import annotations

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, mask_padding
from rnnzoo.mixers.components import RMSNorm


def make_norm(kind: str, d: int) -> nn.Module:
    check_choice("norm", "norm", kind, ("layernorm", "rmsnorm"))
    return nn.LayerNorm(d) if kind == "layernorm" else RMSNorm(d)


class ResidualBlock(Mixer):
    """h = x + drop(mixer(norm1(x))); y = h + drop(mlp(norm2(h))), mlp = Linear -> GELU -> Linear.

    The state is the inner mixer's state. ``mlp_ratio=0`` drops the MLP half. ``mlp``, a position-wise module
    (..., d) -> (..., d) such as a ProductKeyMemory, takes the place of the Linear -> GELU -> Linear.
    """

    def __init__(self, mixer: Mixer, mlp_ratio: float = 4.0, dropout: float = 0.0, norm: str = "layernorm",
                 mlp: nn.Module | None = None):
        if mixer.d_out != mixer.d_model:
            raise ConfigError(f"ResidualBlock needs a mixer with d_out == d_model, got {mixer.d_out} != "
                              f"{mixer.d_model}")
        if mlp_ratio < 0:
            raise ConfigError(f"ResidualBlock: mlp_ratio must be >= 0, got {mlp_ratio!r}")
        d = mixer.d_model
        super().__init__(d)
        self.mixer = mixer
        self.causal = mixer.causal
        self.norm1 = make_norm(norm, d)
        self.drop = nn.Dropout(dropout)
        hidden = int(round(mlp_ratio * d))
        if mlp is None and hidden:
            mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.norm2 = make_norm(norm, d) if mlp is not None else None
        self.mlp = mlp

    def init_state(self, batch_size, device=None, dtype=None):
        return self.mixer.init_state(batch_size, device, dtype)

    def _forward(self, x, state):
        y, state = self.mixer(self.norm1(x), state)  # (B, T, d)
        return self._mlp(x + self.drop(y)), state

    def _forward_padded(self, x, state, lengths):
        y, state = self.mixer(self.norm1(x), state, lengths)  # (B, T, d)
        return mask_padding(self._mlp(x + self.drop(y)), lengths), state

    def _step(self, x_t, state):
        y, state = self.mixer.step(self.norm1(x_t), state)  # (B, d)
        return self._mlp(x_t + self.drop(y)), state

    def _mlp(self, h):
        if self.mlp is None:
            return h
        return h + self.drop(self.mlp(self.norm2(h)))
