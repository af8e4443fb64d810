"""Polyphonic music as piano rolls: 88 independent Bernoulli outputs per time step, each frame read by a mixer
stack that has seen only the frames before it (the setting of Chung et al. 2014)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.blocks import build_stack
from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.mixers.base import check_lengths

N_KEYS = 88  # piano keys, MIDI 21 (A0) to 108 (C8)


class PianoRollModel(nn.Module):
    """Next-frame model: Linear(88, d) -> Stack of ``n_layers`` mixers -> [LayerNorm] -> Linear(d, 88) logits.

    ``residual=False`` stacks the mixers plainly (a classic RNN); ``residual=True`` puts each in a pre-norm
    residual block and adds a final LayerNorm, as ``LanguageModel`` does."""

    def __init__(self, mixer: str = "gru", d_model: int = 64, n_layers: int = 1, *, residual: bool = False,
                 dropout: float = 0.0, mlp_ratio: float = 4.0, **mixer_options):
        super().__init__()
        self.inp = nn.Linear(N_KEYS, d_model)
        self.stack = build_stack(mixer, d_model, n_layers, residual=residual, dropout=dropout,
                                 mlp_ratio=mlp_ratio, **mixer_options)
        if not self.stack.causal:
            raise ConfigError(f"a piano-roll model predicts the next frame, so it needs a causal mixer, but "
                              f"{mixer!r} with {mixer_options} reads the future; drop bidirectional=True")
        self.norm = nn.LayerNorm(d_model) if residual else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, N_KEYS)

    def forward(self, rolls: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, 88) of p(v_t | v_<t) for each frame of ``rolls`` (B, T, 88); frame t reads frames < t."""
        _check_rolls(rolls)
        prev = F.pad(rolls, (0, 0, 1, -1))  # (B, T, 88): v_{t-1}, zeros at t = 0
        y, _ = self.stack(self.drop(self.inp(prev)))  # (B, T, d); causal, so padding after a row's end is harmless
        if self.norm is not None:
            y = self.norm(y)
        return self.head(self.drop(y))  # (B, T, 88)

    def frame_nll(self, rolls: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(v_t | v_<t) in nats, (B, T), zero at padded frames t >= lengths[b]."""
        return self._masked_nll(rolls, _valid_mask(rolls, lengths))

    def nll_per_step(self, rolls: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per valid time step of the batch (a scalar, differentiable): the training loss."""
        valid = _valid_mask(rolls, lengths)
        return self._masked_nll(rolls, valid).sum() / valid.sum().clamp_min(1)

    def _masked_nll(self, rolls: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        logits = self(rolls)  # (B, T, 88)
        nll = F.binary_cross_entropy_with_logits(logits, rolls.to(logits.dtype), reduction="none").sum(-1)  # (B, T)
        return nll * valid.to(nll.dtype)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _check_rolls(rolls) -> None:
    if not isinstance(rolls, torch.Tensor) or rolls.dim() != 3 or rolls.shape[-1] != N_KEYS:
        shape = tuple(rolls.shape) if isinstance(rolls, torch.Tensor) else type(rolls).__name__
        raise ShapeError(f"PianoRollModel: rolls must be a tensor (B, T, {N_KEYS}), got {shape}; "
                         "batch single rolls with pad_rolls")
    if not rolls.is_floating_point():
        raise ShapeError(f"PianoRollModel: rolls must be a floating tensor of 0s and 1s, got {rolls.dtype}; "
                         "call .float() first")


def _valid_mask(rolls: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, T) bool, True at t < lengths[b] (everywhere when lengths is None or covers every frame)."""
    B, T = rolls.shape[:2]
    lengths = check_lengths(lengths, rolls, "PianoRollModel")  # None when every row is full
    if lengths is None:
        return torch.ones(B, T, dtype=torch.bool, device=rolls.device)
    return torch.arange(T, device=rolls.device) < lengths[:, None]
