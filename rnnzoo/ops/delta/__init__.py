"""The delta-rule family: DeltaNet, Gated DeltaNet and DeltaProduct.

    delta_rule        S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T              (Schlag et al. 2021)
    gated_delta_rule  S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T      (Yang et al. 2024)
    delta_product     n_h such steps per token, the gate once per token                     (Siems et al. 2025)
    o_t = S_t^T (scale q_t)

Layout: q, k (B, T, H, K), v (B, T, H, V), beta and g (B, T, H), state (B, H, K, V); o (B, T, H, V).
DeltaProduct puts the n_h Householder steps on a new axis after T: k (B, T, n_h, H, K), v (B, T, n_h, H, V),
beta (B, T, n_h, H); q (B, T, H, K) and g (B, T, H) stay per token. ``scale`` defaults to K**-0.5.
The ops do not normalise k: with unit-norm keys each transition I - beta k k^T has eigenvalues 1 and
1 - beta, so beta in (0, 2) keeps it a contraction and beta > 1 gives the negative eigenvalues of Grazzi et
al. (2024). g is a log-decay and must be <= 0. Every op returns ``(o, final_state)``.

``mode="recurrent"`` is the loop in naive.py, ``mode="chunk"`` the chunkwise UT-transform form in chunk.py
(``chunk_size`` steps per chunk, autograd for the backward), ``mode="auto"`` the chunk form.
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ShapeError
from rnnzoo.ops.checks import (MODES, check_choice, check_chunk_size, check_log_decay, check_qkv, check_tensor,
                               empty_output, start_state)
from rnnzoo.ops.delta.chunk import delta_product_chunk, delta_rule_chunk
from rnnzoo.ops.delta.naive import delta_product_recurrent, delta_rule_recurrent

__all__ = ["delta_rule", "gated_delta_rule", "delta_product"]


def check_inputs(op: str, q, k, v, beta, g, initial_state, mode, chunk_size, n_h: int | None = None) -> None:
    """Check every input of a delta-rule op; ``n_h`` is None for the per-token ops, else DeltaProduct's."""
    B, T, H, K, V = check_qkv(op, q, k, v, n_h=n_h)
    steps = (B, T, H) if n_h is None else (B, T, n_h, H)
    check_tensor(op, "beta", beta, steps, "(B, T, H)" if n_h is None else "(B, T, n_h, H)", q)
    if g is not None:
        check_tensor(op, "g", g, (B, T, H), "(B, T, H)", q)
        check_log_decay(op, "g", g)
    if initial_state is not None:
        check_tensor(op, "initial_state", initial_state, (B, H, K, V), "(B, H, K, V)", q)
    check_choice(op, "mode", mode, MODES)
    check_chunk_size(op, chunk_size)


def dispatch(q, k, v, beta, g, scale, initial_state, mode, chunk_size, recurrent, chunk):
    """Shared tail of the three ops: default scale and state, the T = 0 case, dispatch on mode."""
    q = q * (q.shape[-1] ** -0.5 if scale is None else scale)
    initial_state = start_state(initial_state, q, v)
    if q.shape[1] == 0:
        return empty_output(q, v), initial_state
    if mode == "recurrent":
        return recurrent(q, k, v, beta, g, initial_state)
    return chunk(q, k, v, beta, g, initial_state, chunk_size)


def delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, scale: float | None = None,
               initial_state: torch.Tensor | None = None, mode: str = "auto",
               chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """DeltaNet: S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T (scale q_t).

    q, k (B, T, H, K), v (B, T, H, V), beta (B, T, H), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V).
    """
    check_inputs("delta_rule", q, k, v, beta, None, initial_state, mode, chunk_size)
    return dispatch(q, k, v, beta, None, scale, initial_state, mode, chunk_size, delta_rule_recurrent, delta_rule_chunk)


def gated_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                     scale: float | None = None, initial_state: torch.Tensor | None = None, mode: str = "auto",
                     chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated DeltaNet: S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T (scale q_t).

    q, k (B, T, H, K), v (B, T, H, V), g <= 0 and beta (B, T, H), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V).
    """
    if g is None:
        raise ShapeError("gated_delta_rule: g must be a tensor of log-decays (B, T, H); use delta_rule for no gate")
    check_inputs("gated_delta_rule", q, k, v, beta, g, initial_state, mode, chunk_size)
    return dispatch(q, k, v, beta, g, scale, initial_state, mode, chunk_size, delta_rule_recurrent, delta_rule_chunk)


def delta_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor | None = None,
                  scale: float | None = None, initial_state: torch.Tensor | None = None, mode: str = "auto",
                  chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """DeltaProduct: per token, S <- exp(g_t) S, then for j = 0..n_h-1
    S <- (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T; then o_t = S^T (scale q_t).

    Equivalently S_t = exp(g_t) prod_j (I - beta_tj k_tj k_tj^T) S_{t-1} + (the n_h writes, each carried through
    the later steps of the same token). q (B, T, H, K), k (B, T, n_h, H, K), v (B, T, n_h, H, V),
    beta (B, T, n_h, H), g (B, T, H) or None (no gate), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V). ``chunk_size`` counts micro-steps (T * n_h in all).
    """
    if not isinstance(k, torch.Tensor) or k.dim() != 5 or k.shape[2] == 0:
        got = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
        raise ShapeError(f"delta_product: k must have shape (B, T, n_h, H, K) with n_h >= 1, got {got}")
    n_h = k.shape[2]
    check_inputs("delta_product", q, k, v, beta, g, initial_state, mode, chunk_size, n_h=n_h)
    return dispatch(q, k, v, beta, g, scale, initial_state, mode, chunk_size,
                    delta_product_recurrent, delta_product_chunk)
