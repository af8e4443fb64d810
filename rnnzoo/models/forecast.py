"""A forecasting network around any causal mixer stack, in the two usual strategies.

    recursive (DeepAR, Salinas et al. 2020): row t = [z_{t-1}, observed_{t-1}, future-known_t, static]
        -> stack -> head(params of y_t). Forecasts feed each draw back as the next row's z; any horizon.
    direct (MQ-RNN style, Wen et al. 2017): row t = [z_t, observed_t, past-only_t, future-known_t, static]
        -> stack -> last output e_T; [e_T, future-known_{T+1..T+h} flattened] -> MLP -> params of y_{T+1..T+h}.

z is the target scaled by its window's (loc, scale); the head turns raw outputs into a likelihood.
"""
from __future__ import annotations

import torch
from torch import nn

from rnnzoo.blocks import build_stack
from rnnzoo.errors import ConfigError
from rnnzoo.models.distributions import Head

STRATEGIES = ("recursive", "direct")


class ForecastNet(nn.Module):
    def __init__(self, n_inputs: int, head: Head, *, strategy: str = "recursive", h: int = 1, n_future: int = 0,
                 mixer: str = "lstm", d_model: int = 64, n_layers: int = 1, residual: bool = False,
                 dropout: float = 0.0, decoder_hidden: int = 128, **mixer_options):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy, self.head, self.h = strategy, head, h
        self.inp = nn.Linear(n_inputs, d_model)
        self.stack = build_stack(mixer, d_model, n_layers, residual=residual, dropout=dropout, **mixer_options)
        if not self.stack.causal:
            raise ConfigError(f"a forecaster needs a causal mixer, but {mixer!r} with {mixer_options} reads the "
                              "future")
        width = self.stack.d_out
        if strategy == "recursive":
            self.out = nn.Linear(width, head.n_params)
        else:
            self.out = nn.Sequential(nn.Linear(width + h * n_future, decoder_hidden), nn.GELU(),
                                     nn.Linear(decoder_hidden, h * head.n_params))

    def init_state(self, batch_size: int):
        return self.stack.init_state(batch_size)

    def encode(self, rows: torch.Tensor, state=None):
        """rows (B, T, n_inputs) -> outputs (B, T, width), state after the last row."""
        return self.stack(self.inp(rows), state)

    def step(self, row: torch.Tensor, state):
        """Recursive strategy, one row (B, n_inputs) -> raw params (B, n_params), state."""
        e, state = self.stack.step(self.inp(row), state)  # (B, width)
        return self.out(e), state

    def recursive_params(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.out(encoded)  # (B, T, n_params)

    def direct_params(self, last: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """last (B, width), future-known features (B, h, F) -> raw params (B, h, n_params)."""
        raw = self.out(torch.cat([last, future.flatten(1)], 1))
        return raw.view(last.shape[0], self.h, self.head.n_params)
