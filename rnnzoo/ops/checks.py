"""Input checks shared by the sequence ops (scan, linear attention, delta rule, mLSTM, RWKV), and the zero state
and empty output of the matrix-state ops.

Each check raises a ShapeError or ConfigError whose message starts with the op's name, names the argument, the layout
it should have (with the sizes read from the other inputs) and what it got. ``ref`` names the tensor whose dtype
and device every other input must share: q, or r for RWKV.
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ConfigError, ShapeError

MODES = ("auto", "chunk", "recurrent")
# The classic cells: torch's fused kernel or the loop; cells without a fused kernel only have the loop.
CLASSIC_MODES = ("auto", "fused", "reference")
LOOP_MODES = ("auto", "reference")


def check_tensor(op: str, name: str, x: object, shape: tuple[int, ...], layout: str, like: torch.Tensor,
                 ref: str = "q") -> None:
    """Raise a ShapeError unless ``x`` is a tensor of ``shape`` with the dtype and device of ``like`` (named
    ``ref``); ``layout`` spells the shape in letters, e.g. "(B, T, H, K)"."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{op}: {name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ShapeError(f"{op}: {name} must have shape {layout} = {tuple(shape)} to match the other inputs, "
                         f"got {tuple(x.shape)}")
    if x.dtype != like.dtype or x.device != like.device:
        raise ShapeError(f"{op}: {name} is {x.dtype} on {x.device} but {ref} is {like.dtype} on {like.device}; "
                         "cast every input to one dtype and device")


def check_rank(op: str, name: str, x: object, dims: int, layout: str) -> None:
    """Raise a ShapeError unless ``x`` is a tensor with ``dims`` dimensions."""
    if not isinstance(x, torch.Tensor) or x.dim() != dims:
        got = f"{x.dim()} dims {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{op}: {name} must have shape {layout}, got {got}")


def check_qkv(op: str, q: object, k: object, v: object, ref: str = "q",
              n_h: int | None = None) -> tuple[int, int, int, int, int]:
    """Check q (B, T, H, K) floating, k (B, T, H, K) and v (B, T, H, V) of q's dtype and device; return
    (B, T, H, K, V). With ``n_h`` (DeltaProduct's steps per token) k is (B, T, n_h, H, K), v (B, T, n_h, H, V)."""
    check_rank(op, ref, q, 4, "(B, T, H, K)")
    if not q.is_floating_point():
        raise ShapeError(f"{op}: {ref} must be a floating tensor, got {q.dtype}")
    B, T, H, K = q.shape
    steps = (B, T, H) if n_h is None else (B, T, n_h, H)
    axes = "(B, T, H" if n_h is None else "(B, T, n_h, H"
    check_tensor(op, "k", k, (*steps, K), axes + ", K)", q, ref)
    check_rank(op, "v", v, len(steps) + 1, axes + ", V)")
    V = v.shape[-1]
    check_tensor(op, "v", v, (*steps, V), axes + ", V)", q, ref)
    return B, T, H, K, V


def check_log_decay(op: str, name: str, g: torch.Tensor, fix: str = "-softplus(x) or logsigmoid(x)") -> None:
    """Raise a ConfigError unless every entry of the log-decay ``g`` is <= 0 (a decay exp(g) in (0, 1])."""
    if bool((g > 0).any()):
        raise ConfigError(f"{op}: {name} is a log-decay and must be <= 0, got a maximum of {g.max().item():.4g}; "
                          f"pass e.g. {fix}")


def check_choice(op: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{op}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_chunk_size(op: str, chunk_size: object) -> None:
    """Raise a ConfigError unless ``chunk_size`` is an int >= 1 (bool is not an int here)."""
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0:
        raise ConfigError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")


def start_state(initial_state: torch.Tensor | None, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``initial_state``, or the zero matrix state (B, H, K, V) for q (B, T, H, K) and v (B, T, H, V)."""
    if initial_state is not None:
        return initial_state
    B, _, H, K = q.shape
    return q.new_zeros(B, H, K, v.shape[-1])


def empty_output(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The output of a length-0 sequence: zeros (B, 0, H, V)."""
    return q.new_zeros(q.shape[0], 0, q.shape[2], v.shape[-1])
