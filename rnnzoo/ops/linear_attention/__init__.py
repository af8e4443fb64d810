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

from rnnzoo.ops.checks import (MODES, check_choice, check_chunk_size, check_log_decay, check_qkv, check_tensor,
                               empty_output, start_state)
from rnnzoo.ops.linear_attention.chunk import chunk_gla, chunk_simple_gla
from rnnzoo.ops.linear_attention.naive import recurrent_gla


def check_args(owner: str, q, k, v, g, g_layout: str, initial_state, mode: str, chunk_size: int) -> None:
    """Check q, k (B, T, H, K), v (B, T, H, V), the log-decay g <= 0 of ``g_layout`` ("" for none), the state
    and the options."""
    check_choice(owner, "mode", mode, MODES)
    check_chunk_size(owner, chunk_size)
    B, T, H, K, V = check_qkv(owner, q, k, v)
    if g_layout:
        check_tensor(owner, "g", g, (B, T, H) if g_layout == "(B, T, H)" else (B, T, H, K), g_layout, q)
        check_log_decay(owner, "g", g)
    if initial_state is not None:
        check_tensor(owner, "initial_state", initial_state, (B, H, K, V), "(B, H, K, V)", q)


def run(q, k, v, g, scale, initial_state, mode, chunk_size, chunk_fn):
    """Dispatch on mode after the checks; T = 0 returns the initial (or zero) state unchanged."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if q.shape[1] == 0:
        return empty_output(q, v), start_state(initial_state, q, v)
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
        chunk_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated linear attention (Yang et al. 2024): S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T, g (B, T, H, K) <= 0."""
    check_args("gla", q, k, v, g, "(B, T, H, K)", initial_state, mode, chunk_size)
    return run(q, k, v, g, scale, initial_state, mode, chunk_size, chunk_gla)


__all__ = ["linear_attention", "simple_gla", "gla"]
