"""Linear attention and its gated forms: a (K, V) matrix state per head, updated by outer products.

    linear_attention   S_t = S_{t-1} + k_t v_t^T
    simple_gla         S_t = exp(g_t) S_{t-1} + k_t v_t^T,           g (B, T, H) <= 0
    gla                S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,     g (B, T, H, K) <= 0
    all three          o_t = S_t^T (scale q_t)

Shapes: q, k (B, T, H, K), v (B, T, H, V), initial_state (B, H, K, V) or None for zeros; ``scale`` defaults to
K**-0.5. Each returns ``(o (B, T, H, V), final_state (B, H, K, V))``. ``mode="recurrent"`` is the reference loop
(naive.py), ``mode="chunk"`` the chunkwise form (chunk.py, ``chunk_size`` steps per chunk), ``mode="auto"`` =
chunk. RetNet's retention is simple_gla with a fixed decay gamma_h per head:
``g = torch.log(gamma).expand(B, T, H)`` with gamma (H,) in (0, 1].
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.linear_attention.chunk import chunk_gla, chunk_simple_gla
from rnnzoo.ops.linear_attention.naive import recurrent_gla

MODES = ("auto", "chunk", "recurrent")


def check_args(owner: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None,
               g_layout: str, initial_state: torch.Tensor | None, mode: str, chunk_size: int) -> None:
    """Raise ShapeError / ConfigError naming the bad argument and the expected layout."""
    if mode not in MODES:
        raise ConfigError(f"{owner}: mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigError(f"{owner}: chunk_size must be an int >= 1, got {chunk_size!r}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
            raise ShapeError(f"{owner}: {name} must be a floating tensor of shape (B, T, H, D), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if q.shape != k.shape:
        raise ShapeError(f"{owner}: q {tuple(q.shape)} and k {tuple(k.shape)} must have the same shape (B, T, H, K)")
    if v.shape[:3] != q.shape[:3]:
        raise ShapeError(f"{owner}: v {tuple(v.shape)} must share (B, T, H) = {tuple(q.shape[:3])} with q and k")
    B, T, H, K = q.shape
    if g_layout:
        want = (B, T, H) if g_layout == "(B, T, H)" else (B, T, H, K)
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != want:
            got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise ShapeError(f"{owner}: g must have shape {g_layout} = {want}, got {got}")
        if (g > 0).any():
            raise ConfigError(f"{owner}: g is a log-decay and must be <= 0 everywhere, got max {g.max().item():.3g}; "
                              "pass e.g. g = -softplus(x) or logsigmoid(x)")
    if initial_state is not None and tuple(initial_state.shape) != (B, H, K, v.shape[-1]):
        raise ShapeError(f"{owner}: initial_state must have shape (B, H, K, V) = {(B, H, K, v.shape[-1])}, "
                         f"got {tuple(initial_state.shape)}")
    dtypes = {x.dtype for x in (q, k, v, g, initial_state) if isinstance(x, torch.Tensor)}
    if len(dtypes) > 1:
        raise ShapeError(f"{owner}: q, k, v, g and initial_state must share one dtype, got {sorted(map(str, dtypes))}")


def run(q, k, v, g, scale, initial_state, mode, chunk_size, chunk_fn):
    """Dispatch on mode after the checks; T = 0 returns the initial (or zero) state unchanged."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if q.shape[1] == 0:
        S = q.new_zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[-1]) if initial_state is None else initial_state
        return v.new_zeros(v.shape), S
    if mode == "recurrent":
        return recurrent_gla(q, k, v, g if g is None or g.dim() == 4 else g.unsqueeze(-1), scale, initial_state)
    return chunk_fn(q, k, v, g, scale, initial_state, chunk_size)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     initial_state: torch.Tensor | None = None, mode: str = "auto",
                     chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal linear attention (Katharopoulos et al. 2020, no normaliser).

    S_t = S_{t-1} + k_t v_t^T,  o_t = S_t^T (scale q_t).
    """
    check_args("linear_attention", q, k, v, None, "", initial_state, mode, chunk_size)
    return run(q, k, v, None, scale, initial_state, mode, chunk_size, chunk_simple_gla)


def simple_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float | None = None,
               initial_state: torch.Tensor | None = None, mode: str = "auto",
               chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """One decay per head: S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = S_t^T (scale q_t), g (B, T, H) <= 0."""
    check_args("simple_gla", q, k, v, g, "(B, T, H)", initial_state, mode, chunk_size)
    return run(q, k, v, g, scale, initial_state, mode, chunk_size, chunk_simple_gla)


def gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, scale: float | None = None,
        initial_state: torch.Tensor | None = None, mode: str = "auto",
        chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated linear attention (Yang et al. 2024): S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, g (B, T, H, K) <= 0."""
    check_args("gla", q, k, v, g, "(B, T, H, K)", initial_state, mode, chunk_size)
    return run(q, k, v, g, scale, initial_state, mode, chunk_size, chunk_gla)


__all__ = ["linear_attention", "simple_gla", "gla"]
