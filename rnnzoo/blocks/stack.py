"""Stacking: layer l reads layer l-1's outputs; dropout between layers (not after the last), as torch.nn.LSTM."""
from __future__ import annotations

from typing import NamedTuple

from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer


class StackState(NamedTuple):
    layers: tuple  # one state per layer, bottom first


class Stack(Mixer):
    """A deep recurrent network from a list of mixers; itself a mixer under the same contract."""

    def __init__(self, layers: list[Mixer], dropout: float = 0.0):
        if not layers:
            raise ConfigError("Stack needs at least one layer")
        for i in range(1, len(layers)):
            if layers[i].d_model != layers[i - 1].d_out:
                raise ConfigError(f"Stack: layer {i} reads width {layers[i].d_model} "
                                  f"but layer {i - 1} writes {layers[i - 1].d_out}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"Stack: dropout must be in [0, 1), got {dropout!r}")
        super().__init__(layers[0].d_model, layers[-1].d_out)
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.causal = all(layer.causal for layer in layers)

    def init_state(self, batch_size, device=None, dtype=None) -> StackState:
        return StackState(tuple(layer.init_state(batch_size, device, dtype) for layer in self.layers))

    def _forward(self, x, state, lengths=None):
        new_states = []
        for i, (layer, s) in enumerate(zip(self.layers, state.layers)):
            if i > 0:
                x = self.dropout(x)
            x, s = layer(x, s, lengths)  # (B, T, width of layer i)
            new_states.append(s)
        return x, StackState(tuple(new_states))

    def _forward_padded(self, x, state, lengths):
        return self._forward(x, state, lengths)

    def _step(self, x_t, state):
        new_states = []
        for i, (layer, s) in enumerate(zip(self.layers, state.layers)):
            if i > 0:
                x_t = self.dropout(x_t)
            x_t, s = layer.step(x_t, s)  # (B, width of layer i)
            new_states.append(s)
        return x_t, StackState(tuple(new_states))
