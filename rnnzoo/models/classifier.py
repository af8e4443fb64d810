"""A sequence classifier around any mixer stack: one label per (possibly right-padded) sequence.

    logits = net(x, lengths)    # x (B, T, C) float or (B, T) int token ids, lengths (B,) -> logits (B, K)

Layout: input projection (Linear C -> d for real values, Embedding V -> d for token ids) -> dropout -> Stack of
n_layers mixers (reading both directions when ``bidirectional``) -> [final LayerNorm when residual] -> pooling
over time -> dropout -> Linear (K). Pooling respects ``lengths``: ``last`` takes h_{L_b - 1}, the output at each
row's last valid step; ``mean`` takes (1 / L_b) sum_{t < L_b} h_t. Padded steps never reach the logits, because
the mixers' forward with lengths freezes each row at its own end and pooling reads only valid steps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rnnzoo.blocks import build_stack
from rnnzoo.errors import ConfigError, ShapeError

POOLINGS = ("last", "mean")


@dataclass
class ClassifierConfig:
    """Everything needed to rebuild a ClassifierNet. Exactly one of n_inputs (real-valued channels) and
    vocab_size (token ids) is set."""

    n_classes: int
    n_inputs: int | None = None
    vocab_size: int | None = None
    mixer: str = "lstm"
    d_model: int = 64
    n_layers: int = 1
    residual: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    pooling: str = "last"
    mixer_options: dict = field(default_factory=dict)

    def __post_init__(self):
        def fail(name, want):
            raise ConfigError(f"ClassifierConfig.{name} must be {want}, got {getattr(self, name)!r}")

        def is_count(value, minimum):
            return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

        if (self.n_inputs is None) == (self.vocab_size is None):
            raise ConfigError("ClassifierNet needs exactly one of n_inputs (channels of real-valued input) and "
                              f"vocab_size (token-id input), got n_inputs={self.n_inputs!r}, "
                              f"vocab_size={self.vocab_size!r}")
        for name in ("n_inputs", "vocab_size"):
            if getattr(self, name) is not None and not is_count(getattr(self, name), 1):
                fail(name, "None or an int >= 1")
        if not is_count(self.n_classes, 2):
            fail("n_classes", "an int >= 2")
        for name in ("d_model", "n_layers"):
            if not is_count(getattr(self, name), 1):
                fail(name, "an int >= 1")
        if not isinstance(self.mixer, str):
            fail("mixer", "a mixer name (str)")
        for name in ("residual", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            fail("dropout", "a number in [0, 1)")
        if self.pooling not in POOLINGS:
            fail("pooling", " or ".join(map(repr, POOLINGS)))
        if not isinstance(self.mixer_options, dict) or not all(isinstance(k, str) for k in self.mixer_options):
            fail("mixer_options", "a dict with str keys")
        clash = sorted(set(self.mixer_options) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise ConfigError(f"ClassifierConfig.mixer_options holds {', '.join(clash)}, which are model "
                              "settings; set them as ClassifierConfig fields instead")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ClassifierNet(nn.Module):
    """p(class | x_{<L}) = softmax(head(pool(stack(project(x)), L)))."""

    def __init__(self, n_classes: int, *, n_inputs: int | None = None, vocab_size: int | None = None,
                 mixer: str = "lstm", d_model: int = 64, n_layers: int = 1, residual: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, pooling: str = "last", **mixer_options):
        super().__init__()
        self.config = cfg = ClassifierConfig(n_classes, n_inputs, vocab_size, mixer, d_model, n_layers, residual,
                                             dropout, bidirectional, pooling, dict(mixer_options))
        self.embed = nn.Linear(n_inputs, d_model) if vocab_size is None else nn.Embedding(vocab_size, d_model)
        options = dict(mixer_options, bidirectional=True) if bidirectional else mixer_options
        self.stack = build_stack(cfg.mixer, d_model, n_layers, residual=residual, dropout=dropout, **options)
        self.norm = nn.LayerNorm(d_model) if residual else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) float or (B, T) int, right-padded when ``lengths`` (B,) is given -> logits (B, K)."""
        lengths = self._check(x, lengths)
        h = self.drop(self.embed(x))  # (B, T, d)
        h, _ = self.stack(h, None, lengths)  # (B, T, d)
        if self.norm is not None:
            h = self.norm(h)
        return self.head(self.drop(pool(h, lengths, self.config.pooling)))  # (B, K)

    def _check(self, x: Any, lengths: Any) -> torch.Tensor:
        cfg = self.config
        tokens = cfg.vocab_size is not None
        layout = "(B, T) token ids" if tokens else f"(B, T, C={cfg.n_inputs})"
        if not isinstance(x, torch.Tensor):
            raise ShapeError(f"ClassifierNet: x must be a tensor {layout}, got {type(x).__name__}")
        if x.dim() != (2 if tokens else 3) or x.shape[1] == 0 or (not tokens and x.shape[2] != cfg.n_inputs):
            raise ShapeError(f"ClassifierNet: x must have shape {layout} with T >= 1, got {tuple(x.shape)}")
        if tokens:
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise ShapeError(f"ClassifierNet: this model reads token ids, got {x.dtype} values")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.vocab_size):
                raise ShapeError(f"ClassifierNet: token ids must lie in [0, {cfg.vocab_size}), got "
                                 f"[{int(x.min())}, {int(x.max())}]")
        elif not x.is_floating_point():
            raise ShapeError(f"ClassifierNet: this model reads real values, got {x.dtype}; convert to float")
        B, T = x.shape[:2]
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=x.device)
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.shape != (B,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ShapeError(f"ClassifierNet: lengths must be integers of shape (B,) = ({B},), got "
                             f"{lengths.dtype} {tuple(lengths.shape)}")
        if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ShapeError(f"ClassifierNet: every length must lie in [1, T={T}] (a sequence needs at least "
                             f"one step to classify), got {lengths.tolist()}")
        return lengths.long()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def pool(h: torch.Tensor, lengths: torch.Tensor, how: str) -> torch.Tensor:
    """h (B, T, d), lengths (B,) in [1, T] -> (B, d): the last valid step, or the mean over valid steps."""
    if how == "last":
        return h[torch.arange(h.shape[0], device=h.device), lengths - 1]  # (B, d)
    valid = (torch.arange(h.shape[1], device=h.device) < lengths[:, None]).to(h.dtype)  # (B, T)
    return (h * valid[:, :, None]).sum(1) / lengths[:, None].to(h.dtype)  # (B, d)
