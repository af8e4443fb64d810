"""The training configuration: one typed dataclass, built strictly from dicts and ``key=value`` strings."""
from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnzoo.errors import ConfigError

# What a field's annotation (a string, from ``from __future__ import annotations``) accepts, for messages.
_KIND_WORDS = {
    "int": "an int", "float": "a number", "bool": "true or false", "str": "a string", "dict": "a dict",
    "list": "a list, e.g. [1]",
    "tuple[float, float]": "two numbers, e.g. 0.9,0.99",
}
_PLAIN_TYPES = {"bool": bool, "str": str, "dict": dict}


@dataclass
class TrainConfig:
    """Everything one training run needs; saved beside every checkpoint.

    Truncated BPTT has two lengths (Williams & Peng 1990). Every update reads ``seq_len`` (k1) new tokens of
    each stream, and gradients reach back ``bptt`` (k2, default k1) tokens:
      * k2 == k1: one forward over the chunk from the carried, detached state.
      * k2 > k1: the k2 - k1 tokens before the chunk are run again from a stored detached state, so the loss on
        the chunk's k1 tokens (the only ones scored) sends gradients up to k2 steps back.
      * k2 < k1: the state is detached every k2 tokens inside the chunk; one update still covers k1 tokens.

    ``carry_state=False`` starts every chunk, in training and in evaluation, from a fresh state instead: each
    chunk of ``seq_len`` tokens is an independent sequence, as attention models are trained. Mixers without
    forgetting (plain linear attention) need it: carried through a whole text, their state sums all of it.

    The learning rate warms up linearly over ``warmup_steps``, then follows a cosine from ``lr`` down to
    ``min_lr`` at ``decay_steps`` (default ``steps``). ``eval_every``/``save_every`` of 0 mean only at the end;
    ``eval_batches=None`` evaluates on the whole validation split. ``data=None`` is the default corpus.
    ``mlp_ratio`` sizes the MLP of each residual block (``residual=True``; 0 drops it). ``memory_layers``
    (block indices, e.g. ``[1]``) put a product-key memory layer in place of those blocks' MLP, with
    ``memory_options`` for it (``n_keys``, ``k_dim``, ``top_k``, ``n_heads``).
    ``max_minutes`` is a wall-clock budget for this invocation (evaluation included): when it runs out, the
    current step is the last one (evaluated and saved as usual) and ``--resume`` can continue later.
    """

    data: str | None = None
    out_dir: str = "runs/train"
    mixer: str = "lstm"
    d_model: int = 128
    n_layers: int = 1
    residual: bool = False
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    mixer_options: dict = field(default_factory=dict)
    memory_layers: list = field(default_factory=list)
    memory_options: dict = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 64
    bptt: int | None = None
    carry_state: bool = True
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    decay_steps: int | None = None
    max_minutes: float | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 200
    eval_batches: int | None = 20
    log_every: int = 10
    save_every: int = 500
    device: str = "cpu"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        self._check_ranges()

    def _check_ranges(self) -> None:
        def fail(key: str, rule: str, fix: str) -> None:
            raise ConfigError(f"train config: {key} {rule}, got {getattr(self, key)!r}; {fix}")

        for key in ("d_model", "n_layers", "steps", "batch_size", "seq_len", "log_every"):
            if getattr(self, key) < 1:
                fail(key, "must be >= 1", f"set {key} to a positive int")
        for key in ("bptt", "decay_steps", "eval_batches"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                fail(key, "must be >= 1 or none", f"set {key} to a positive int, or to none for the default")
        for key in ("warmup_steps", "eval_every", "save_every", "seed"):
            if getattr(self, key) < 0:
                fail(key, "must be >= 0", f"set {key} to 0 or more")
        if not self.carry_state and self.bptt is not None and self.bptt > self.seq_len:
            fail("bptt", f"must be <= seq_len={self.seq_len} with carry_state=false",
                 "a fresh state per chunk has no earlier tokens to reach back to; drop bptt or carry the state")
        if not self.mlp_ratio >= 0:
            fail("mlp_ratio", "must be >= 0", "use e.g. mlp_ratio=4, or 0 for residual blocks without an MLP")
        if not 0 <= self.dropout < 1:
            fail("dropout", "must be in [0, 1)", "use e.g. dropout=0.1, or 0 for none")
        if self.max_minutes is not None and not self.max_minutes > 0:
            fail("max_minutes", "must be > 0 or none", "use e.g. max_minutes=10, or none for no limit")
        if not self.lr > 0:
            fail("lr", "must be > 0", "use e.g. lr=0.003")
        if not 0 <= self.min_lr <= self.lr:
            fail("min_lr", f"must be in [0, lr={self.lr}]", "use a min_lr no larger than lr")
        for key in ("weight_decay", "grad_clip"):
            if not getattr(self, key) >= 0:
                fail(key, "must be >= 0", f"use 0 to turn {key} off")
        if not all(0 <= b < 1 for b in self.betas):
            fail("betas", "must both be in [0, 1)", "use e.g. betas=0.9,0.99")
        if not self.mixer:
            fail("mixer", "must name a mixer", "run `rnnzoo list` to see them")
        try:
            torch.device(self.device)
        except (RuntimeError, ValueError):
            fail("device", "is not a torch device", "use cpu, cuda or cuda:N")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Strict: an unknown key, a wrong type or a value out of range is a ConfigError naming it."""
        if not isinstance(d, dict):
            raise ConfigError(f"a train config must be a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown train config key {', '.join(map(repr, unknown))}; "
                              f"valid keys: {', '.join(cls.keys())}")
        return cls(**d)

    @classmethod
    def from_overrides(cls, overrides: list[str], base: dict[str, Any] | None = None) -> TrainConfig:
        """Apply ``key=value`` strings (``steps=500``, ``betas=0.9,0.95``, ``bptt=none``) on top of ``base``."""
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        d = dict(base or {})
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"expected key=value, got {item!r}; e.g. steps=500")
            if key not in kinds:
                raise ConfigError(f"unknown train config key {key!r}; valid keys: {', '.join(cls.keys())}")
            d[key] = _parse_for(kinds[key], text)
        return cls.from_dict(d)


def parse_value(text: str) -> Any:
    """The value of a ``key=value`` string: a Python or JSON literal (``5``, ``0.1``, ``true``, ``none``,
    ``0.9,0.95``, ``{"a": 1}``), otherwise the text itself."""
    word = text.strip().lower()
    if word in ("true", "false"):
        return word == "true"
    if word in ("none", "null"):
        return None
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _parse_for(kind: str, text: str) -> Any:
    """A string field takes the text as it is ('none' aside), so paths and names never turn into numbers."""
    if kind.removesuffix(" | None") == "str":
        return None if kind.endswith("| None") and text.strip().lower() in ("none", "null") else text
    return parse_value(text)


def _coerce(key: str, kind: str, value: Any) -> Any:
    """``value`` as the annotated type (an int is a fine float, a list of two numbers a fine tuple)."""
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None and optional:
        return None
    if base == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base == "float" and is_number:
        return float(value)
    if base == "list" and isinstance(value, (list, tuple)):
        return list(value)
    if base in _PLAIN_TYPES and isinstance(value, _PLAIN_TYPES[base]):
        if base == "dict" and not all(isinstance(k, str) for k in value):
            raise ConfigError(f"train config: {key} must have string keys, got {value!r}")
        return dict(value) if base == "dict" else value
    if (base == "tuple[float, float]" and isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return tuple(float(v) for v in value)
    want = _KIND_WORDS[base] + (" or none" if optional else "")
    raise ConfigError(f"train config: {key} must be {want}, got {value!r} ({type(value).__name__})")
