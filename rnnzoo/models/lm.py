"""A token-level language model around any causal mixer stack.

    logits, state = model(tokens, state)      # tokens (B, T) int -> logits (B, T, V)
    logits, state = model.step(token, state)  # token (B,) int -> logits (B, V), one step
    for tok in model.generate(prompt, 100, temperature=0.8, top_k=20): ...

Layout: embedding (V, d) -> dropout -> Stack of n_layers mixers -> [final norm] -> dropout -> Linear (V).
``residual=False`` is the classic multi-layer RNN (char-rnn): mixers stacked plainly with dropout between
them. ``residual=True`` wraps each mixer in a pre-norm residual block with an MLP and adds a final LayerNorm;
the blocks listed in ``memory_layers`` have a product-key memory (``memory_options``) in place of the MLP.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.blocks import build_stack
from rnnzoo.blocks.memory_layer import check_memory_layers
from rnnzoo.errors import ConfigError, ShapeError


@dataclass
class LMConfig:
    """Everything needed to rebuild a LanguageModel; saved as JSON beside its weights."""

    vocab_size: int
    mixer: str = "lstm"
    d_model: int = 256
    n_layers: int = 2
    residual: bool = False
    dropout: float = 0.0
    mlp_ratio: float = 4.0
    tie_weights: bool = False
    mixer_options: dict = field(default_factory=dict)
    memory_layers: list = field(default_factory=list)
    memory_options: dict = field(default_factory=dict)

    def __post_init__(self):
        def fail(name, want):
            raise ConfigError(f"LMConfig.{name} must be {want}, got {getattr(self, name)!r}")

        for name in ("vocab_size", "d_model", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, "an int >= 1")
        if not isinstance(self.mixer, str):
            fail("mixer", "a mixer name (str)")
        for name in ("residual", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")
        for name, ok in (("dropout", lambda v: 0 <= v < 1), ("mlp_ratio", lambda v: v >= 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                fail(name, "a number in [0, 1)" if name == "dropout" else "a number >= 0")
        if not isinstance(self.mixer_options, dict) or not all(isinstance(k, str) for k in self.mixer_options):
            fail("mixer_options", "a dict with str keys")
        clash = sorted(set(self.mixer_options) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise ConfigError(f"LMConfig.mixer_options holds {', '.join(clash)}, which are model settings; "
                              "set them as LMConfig fields instead")
        if not isinstance(self.memory_options, dict):
            fail("memory_options", "a dict of ProductKeyMemory options")
        self.memory_layers = list(check_memory_layers(self.memory_layers, self.n_layers, self.residual,
                                                      self.memory_options))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LMConfig:
        """Strict: an unknown key or a missing vocab_size is a ConfigError that names it."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a dict, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown model config keys {', '.join(map(repr, unknown))}; "
                              f"valid keys: {', '.join(known)}")
        if "vocab_size" not in d:
            raise ConfigError("a model config needs vocab_size")
        return cls(**d)


class LanguageModel(nn.Module):
    """Next-token prediction: p(x_{t+1} | x_{<=t}) = softmax(head(stack(embed(x))_t))."""

    def __init__(self, vocab_size: int, mixer: str = "lstm", d_model: int = 256, n_layers: int = 2, *,
                 residual: bool = False, dropout: float = 0.0, mlp_ratio: float = 4.0, tie_weights: bool = False,
                 memory_layers: tuple[int, ...] | list[int] = (), memory_options: dict | None = None,
                 **mixer_options):
        super().__init__()
        memory_options = {} if memory_options is None else memory_options
        self.config = LMConfig(vocab_size, mixer, d_model, n_layers, residual, dropout, mlp_ratio, tie_weights,
                               dict(mixer_options), memory_layers, memory_options)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.stack = build_stack(mixer, d_model, n_layers, residual=residual, dropout=dropout,
                                 mlp_ratio=mlp_ratio, memory_layers=memory_layers, memory_options=memory_options,
                                 **mixer_options)
        if not self.stack.causal:
            raise ConfigError(f"a language model needs a causal mixer, but {mixer!r} with {mixer_options} reads "
                              "the future; drop bidirectional=True")
        self.norm = nn.LayerNorm(d_model) if residual else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, vocab_size)  # build_mixer guarantees the stack writes width d_model
        if tie_weights:
            self.head.weight = self.embed.weight

    @classmethod
    def from_config(cls, cfg: LMConfig | dict) -> LanguageModel:
        if isinstance(cfg, dict):
            cfg = LMConfig.from_dict(cfg)
        if not isinstance(cfg, LMConfig):
            raise ConfigError(f"from_config takes an LMConfig or a dict, got {type(cfg).__name__}")
        return cls(cfg.vocab_size, cfg.mixer, cfg.d_model, cfg.n_layers, residual=cfg.residual,
                   dropout=cfg.dropout, mlp_ratio=cfg.mlp_ratio, tie_weights=cfg.tie_weights,
                   memory_layers=cfg.memory_layers, memory_options=cfg.memory_options, **cfg.mixer_options)

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None):
        return self.stack.init_state(batch_size, device, dtype)

    def forward(self, tokens: torch.Tensor, state=None) -> tuple[torch.Tensor, Any]:
        self._check_tokens(tokens, 2, "tokens", "(B, T)")
        x = self.drop(self.embed(tokens))  # (B, T, d)
        y, state = self.stack(x, state)  # (B, T, d_out)
        return self._logits(y), state  # (B, T, V)

    def step(self, token: torch.Tensor, state=None) -> tuple[torch.Tensor, Any]:
        self._check_tokens(token, 1, "token", "(B,)")
        x = self.drop(self.embed(token))  # (B, d)
        y, state = self.stack.step(x, state)  # (B, d_out)
        return self._logits(y), state  # (B, V)

    def _logits(self, y: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            y = self.norm(y)
        return self.head(self.drop(y))

    def _check_tokens(self, tokens, rank: int, name: str, layout: str) -> None:
        if not isinstance(tokens, torch.Tensor):
            raise ShapeError(f"LanguageModel: {name} must be a tensor of token ids {layout}, "
                             f"got {type(tokens).__name__}")
        if tokens.dim() != rank:
            raise ShapeError(f"LanguageModel: {name} must have shape {layout}, got {tuple(tokens.shape)}")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise ShapeError(f"LanguageModel: {name} must hold integer token ids, got {tokens.dtype}; "
                             "encode text with a vocabulary first")
        if tokens.numel():
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self.config.vocab_size:
                bad = lo if lo < 0 else hi
                raise ShapeError(f"LanguageModel: token id {bad} is outside [0, {self.config.vocab_size}); "
                                 "was the text encoded with the vocabulary this model was built for?")

    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Yield ``max_new_tokens`` sampled tokens one at a time: (B,) each for a (B, T0) prompt, 0-D for a
        (T0,) prompt. The prompt is read by one forward; each new token costs one step(), so memory does not
        grow with the text. ``temperature=0`` is greedy; ``top_k`` keeps the k likeliest tokens. Runs without
        gradients in the model's current mode: call ``model.eval()`` first when it has dropout. A
        ``generator`` must live on the model's device.
        """
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
            raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ConfigError(f"top_k must be None or an int >= 1, got {top_k!r}")
        if not isinstance(prompt, torch.Tensor) or prompt.dim() not in (1, 2):
            shape = tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else type(prompt).__name__
            raise ShapeError(f"generate: prompt must be a tensor of ids (T0,) or (B, T0), got {shape}")
        if prompt.shape[-1] == 0:
            raise ConfigError("generate: the prompt is empty; give at least one token to start from")
        self._check_tokens(prompt, prompt.dim(), "prompt", "(T0,) or (B, T0)")
        return self._generate(prompt, max_new_tokens, temperature, top_k, generator)

    @torch.no_grad()
    def _generate(self, prompt, max_new_tokens, temperature, top_k, generator):
        squeeze = prompt.dim() == 1
        logits, state = self(prompt.unsqueeze(0) if squeeze else prompt)  # (B, T0, V)
        last = logits[:, -1]  # (B, V)
        for n in range(max_new_tokens):
            token = sample(last, temperature, top_k, generator)  # (B,)
            yield token[0] if squeeze else token
            if n + 1 < max_new_tokens:
                last, state = self.step(token, state)

    def num_parameters(self) -> int:
        """Number of parameters, counting tied weights once."""
        return sum(p.numel() for p in self.parameters())


def sample(logits: torch.Tensor, temperature: float, top_k: int | None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): argmax when temperature is 0, else a draw from
    softmax(logits / temperature) restricted to the ``top_k`` largest logits."""
    if temperature == 0:
        return logits.argmax(-1)  # (B,)
    logits = logits.float() / temperature  # (B, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
