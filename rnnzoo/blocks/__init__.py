"""Stacking, bidirectional and residual blocks built from mixers."""
from __future__ import annotations

from rnnzoo.blocks.residual import ResidualBlock, RMSNorm
from rnnzoo.blocks.stack import Stack, StackState
from rnnzoo.mixers.bidirectional import Bidirectional, BidirectionalState
from rnnzoo.mixers.registry import build_mixer


def build_stack(mixer: str, d_model: int, n_layers: int = 1, *, residual: bool = True, dropout: float = 0.0,
                mlp_ratio: float = 4.0, norm: str = "layernorm", **mixer_options) -> Stack:
    """``n_layers`` registered mixers, each wrapped in a ResidualBlock when ``residual`` (a deep model), or
    stacked plainly with dropout between layers (a classic multi-layer RNN)."""
    layers = [build_mixer(mixer, d_model, **mixer_options) for _ in range(n_layers)]
    if residual:
        layers = [ResidualBlock(m, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm) for m in layers]
        return Stack(layers)
    return Stack(layers, dropout=dropout)


__all__ = ["Bidirectional", "BidirectionalState", "ResidualBlock", "RMSNorm", "Stack", "StackState", "build_stack"]
