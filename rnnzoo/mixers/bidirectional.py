"""Bidirectional wrapping: one mixer reads the sequence forwards, another reads it reversed."""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, mask_padding


class BidirectionalState(NamedTuple):
    forward: Any   # the forward mixer's state after the last step
    backward: Any  # the backward mixer's state after reading back to the first step


class Bidirectional(Mixer):
    """y_t = merge(fwd(x)_t, bwd(reverse(x))_{T-1-t}).

    ``merge='project'`` (default) concatenates and maps 2*d_out -> d_model with a Linear, so the width stays
    d_model; ``merge='concat'`` keeps the 2*d_out concatenation (torch.nn's bidirectional layout);
    ``merge='sum'`` adds. Not causal: ``step()`` raises. A given state seeds the forward reader at the start
    and the backward reader at the end, as torch.nn's h_0 does.
    """

    causal = False

    def __init__(self, forward_mixer: Mixer, backward_mixer: Mixer, merge: str = "project"):
        check_choice("bidirectional", "merge", merge, ("project", "concat", "sum"))
        if forward_mixer.d_model != backward_mixer.d_model or forward_mixer.d_out != backward_mixer.d_out:
            raise ConfigError("bidirectional: the two directions must have the same d_model and d_out")
        width = forward_mixer.d_out
        d_out = {"project": forward_mixer.d_model, "concat": 2 * width, "sum": width}[merge]
        super().__init__(forward_mixer.d_model, d_out)
        self.fwd, self.bwd, self.merge = forward_mixer, backward_mixer, merge
        self.out_proj = nn.Linear(2 * width, d_out) if merge == "project" else None

    def init_state(self, batch_size, device=None, dtype=None) -> BidirectionalState:
        return BidirectionalState(self.fwd.init_state(batch_size, device, dtype),
                                  self.bwd.init_state(batch_size, device, dtype))

    def _forward(self, x, state):
        y_f, s_f = self.fwd(x, state.forward)                          # (B, T, W)
        y_b, s_b = self.bwd(x.flip(1), state.backward)                 # (B, T, W), reversed time
        return self._merge(y_f, y_b.flip(1)), BidirectionalState(s_f, s_b)

    def _forward_padded(self, x, state, lengths):
        # Reverse each row within its own length; the permutation is its own inverse.
        t = torch.arange(x.shape[1], device=x.device)
        rev = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
        y_f, s_f = self.fwd(x, state.forward, lengths)
        y_b, s_b = self.bwd(reverse_rows(x, rev), state.backward, lengths)
        y = self._merge(y_f, reverse_rows(y_b, rev))
        return mask_padding(y, lengths), BidirectionalState(s_f, s_b)

    def _merge(self, y_f, y_b):
        if self.merge == "sum":
            y = y_f + y_b
        else:
            y = torch.cat([y_f, y_b], dim=-1)                          # (B, T, 2W)
            if self.out_proj is not None:
                y = self.out_proj(y)
        return y


def reverse_rows(x: torch.Tensor, rev: torch.Tensor) -> torch.Tensor:
    """x (B, T, D) with row b's time order permuted by rev[b] (B, T)."""
    return x.gather(1, rev[:, :, None].expand(-1, -1, x.shape[2]))
