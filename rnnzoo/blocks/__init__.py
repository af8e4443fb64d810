"""Stacking, bidirectional and residual blocks built from mixers."""
from __future__ import annotations

from rnnzoo.blocks.memory_layer import ProductKeyMemory, check_memory_layers
from rnnzoo.blocks.residual import ResidualBlock, RMSNorm
from rnnzoo.blocks.rmt import ARMTState, AssociativeRecurrentMemoryTransformer, RecurrentMemoryTransformer, RMTState
from rnnzoo.blocks.stack import Stack, StackState
from rnnzoo.mixers.bidirectional import Bidirectional, BidirectionalState
from rnnzoo.mixers.registry import build_mixer


def build_stack(mixer: str, d_model: int, n_layers: int = 1, *, residual: bool = True, dropout: float = 0.0,
                mlp_ratio: float = 4.0, norm: str = "layernorm", memory_layers: tuple[int, ...] | list[int] = (),
                memory_options: dict | None = None, **mixer_options) -> Stack:
    """``n_layers`` registered mixers, each wrapped in a ResidualBlock when ``residual`` (a deep model), or
    stacked plainly with dropout between layers (a classic multi-layer RNN). The residual blocks listed in
    ``memory_layers`` (0 = bottom) have a ProductKeyMemory(d_model, **memory_options) in place of their MLP."""
    memory_layers = check_memory_layers(memory_layers, n_layers, residual, memory_options)
    memory_options = memory_options or {}
    layers = [build_mixer(mixer, d_model, **mixer_options) for _ in range(n_layers)]
    if residual:
        layers = [ResidualBlock(m, mlp_ratio=mlp_ratio, dropout=dropout, norm=norm,
                                mlp=ProductKeyMemory(d_model, **memory_options) if i in memory_layers else None)
                  for i, m in enumerate(layers)]
        return Stack(layers)
    return Stack(layers, dropout=dropout)


__all__ = ["ARMTState", "AssociativeRecurrentMemoryTransformer", "Bidirectional", "BidirectionalState",
           "ProductKeyMemory", "RecurrentMemoryTransformer", "ResidualBlock", "RMSNorm", "RMTState", "Stack",
           "StackState", "build_stack"]
