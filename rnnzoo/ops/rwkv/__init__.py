"""RWKV-6 "Finch" and RWKV-7 "Goose" time mixing as pure ops on tensors.

    rwkv6  o_t = (S_{t-1} + diag(u) k_t v_t^T)^T r_t,   S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T     (Peng et al. 2024)
    rwkv7  S_t = (diag(exp(w_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T,   o_t = S_t^T r_t                 (Peng et al. 2025)

Layout: r, k, w, a, b (B, T, H, K), v (B, T, H, V), u (H, K), state (B, H, K, V); o (B, T, H, V). w is the
per-channel log-decay and must be <= 0. ``scale`` multiplies r and defaults to 1, as in RWKV. RWKV-6 reads the
state before decaying it, with the bonus u on the current token; RWKV-7 reads after the update. Every op
returns ``(o, final_state)``.

``mode="recurrent"`` is the loop in naive.py, ``mode="chunk"`` the chunkwise form in chunk.py (``chunk_size``
steps per chunk, autograd for the backward), ``mode="auto"`` the chunk form.
"""
from __future__ import annotations

import torch

from rnnzoo.ops.checks import (MODES, check_choice, check_chunk_size, check_log_decay, check_qkv, check_tensor,
                               empty_output, start_state)
from rnnzoo.ops.rwkv.chunk import rwkv6_chunk, rwkv7_chunk
from rnnzoo.ops.rwkv.naive import rwkv6_recurrent, rwkv7_recurrent

__all__ = ["rwkv6", "rwkv7"]


def check_inputs(op: str, r, k, v, w, initial_state, mode, chunk_size) -> tuple[int, int, int, int, int]:
    """Check r, k, w <= 0 (B, T, H, K), v (B, T, H, V), the state and the options; return (B, T, H, K, V)."""
    B, T, H, K, V = check_qkv(op, r, k, v, ref="r")
    check_tensor(op, "w", w, (B, T, H, K), "(B, T, H, K)", r, ref="r")
    check_log_decay(op, "w", w, fix="-exp(x) or -softplus(x)")
    if initial_state is not None:
        check_tensor(op, "initial_state", initial_state, (B, H, K, V), "(B, H, K, V)", r, ref="r")
    check_choice(op, "mode", mode, MODES)
    check_chunk_size(op, chunk_size)
    return B, T, H, K, V


def rwkv6(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor, scale: float = 1.0,
          initial_state: torch.Tensor | None = None, mode: str = "auto",
          chunk_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-6: o_t = (S_{t-1} + diag(u) k_t v_t^T)^T (scale r_t), S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T.

    The state is read before this step's decay, and the current token enters only through the bonus u.
    r, k, w <= 0 (B, T, H, K), v (B, T, H, V), u (H, K), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V).
    """
    B, T, H, K, V = check_inputs("rwkv6", r, k, v, w, initial_state, mode, chunk_size)
    check_tensor("rwkv6", "u", u, (H, K), "(H, K)", r, ref="r")
    r, S0 = r * scale, start_state(initial_state, r, v)
    if T == 0:
        return empty_output(r, v), S0
    if mode == "recurrent":
        return rwkv6_recurrent(r, k, v, w, u, S0)
    return rwkv6_chunk(r, k, v, w, u, S0, chunk_size)


def rwkv7(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
          scale: float = 1.0, initial_state: torch.Tensor | None = None, mode: str = "auto",
          chunk_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-7 generalised delta rule: S_t = (diag(exp(w_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T,
    o_t = S_t^T (scale r_t).

    RWKV writes the state as (V, K): S'_t = S'_{t-1} (diag(exp(w_t)) + a_t b_t^T) + v_t k_t^T, o_t = S'_t r_t.
    rnnzoo keeps (K, V) with S = S'^T, which gives the equation above. In RWKV-7 a = -kappa_hat and
    b = kappa_hat * lr (kappa_hat the unit removal key, lr the in-context learning rate), so the transition is
    diag(exp(w)) - lr kappa_hat kappa_hat^T; the op accepts any a, b.
    r, w <= 0, k, a, b (B, T, H, K), v (B, T, H, V), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V).
    """
    B, T, H, K, V = check_inputs("rwkv7", r, k, v, w, initial_state, mode, chunk_size)
    for name, x in (("a", a), ("b", b)):
        check_tensor("rwkv7", name, x, (B, T, H, K), "(B, T, H, K)", r, ref="r")
    r, S0 = r * scale, start_state(initial_state, r, v)
    if T == 0:
        return empty_output(r, v), S0
    if mode == "recurrent":
        return rwkv7_recurrent(r, w, k, v, a, b, S0)
    return rwkv7_chunk(r, w, k, v, a, b, S0, chunk_size)
