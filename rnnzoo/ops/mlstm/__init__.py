"""The mLSTM: the matrix-memory cell of xLSTM (Beck et al. 2024), with exponential input gating.

    m_t = max(log f_t + m_{t-1}, i_t)                       stabiliser
    C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t v_t^T
    n_t = exp(log f_t + m_{t-1} - m_t) n_{t-1} + exp(i_t - m_t) k_t
    h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps),  q_t scaled by ``scale`` (default K**-0.5)

i is the input-gate pre-activation (the gate is exp(i)); f is the forget-gate pre-activation, with
log f_t = logsigmoid(f) for ``forget="sigmoid"`` and log f_t = f for ``forget="exp"``. C and n are the true
memory and normaliser divided by exp(m_t), so they stay bounded for any pre-activations; h is unchanged by
that rescaling except through the exp(-m_t) floor, which is the paper's.

Layout: q, k (B, T, H, K), v (B, T, H, V), i and f (B, T, H); the state is ``MLSTMState(C, n, m)`` with
C (B, H, K, V), n (B, H, K), m (B, H). ``initial_state=None`` means C = 0, n = 0, m = 0 (the cell's usual zero
state). Returns ``(o, final_state)`` with o = h (B, T, H, V); the final state is always returned, and its m is
the loop's m in both modes, so a sequence split anywhere and run in two calls gives the same result.

``mode="recurrent"`` is the loop in naive.py, ``mode="chunk"`` the chunkwise form in chunk.py (``chunk_size``
steps per chunk, autograd for the backward), ``mode="auto"`` the chunk form.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import MODES, check_choice, check_chunk_size, check_qkv, check_tensor
from rnnzoo.ops.mlstm.chunk import mlstm_chunk
from rnnzoo.ops.mlstm.naive import MLSTMState, mlstm_recurrent

__all__ = ["mlstm", "MLSTMState"]

FORGET = ("sigmoid", "exp")


def check_inputs(q, k, v, i, f, initial_state, mode, chunk_size, forget, eps) -> None:
    """Check every input of ``mlstm``."""
    B, T, H, K, V = check_qkv("mlstm", q, k, v)
    check_tensor("mlstm", "i", i, (B, T, H), "(B, T, H)", q)
    check_tensor("mlstm", "f", f, (B, T, H), "(B, T, H)", q)
    if initial_state is not None:
        if not isinstance(initial_state, tuple) or len(initial_state) != 3:
            raise ShapeError("mlstm: initial_state must be a tuple (C, n, m) such as MLSTMState, "
                             f"got {type(initial_state).__name__}")
        C, n, m = initial_state
        check_tensor("mlstm", "initial_state.C", C, (B, H, K, V), "(B, H, K, V)", q)
        check_tensor("mlstm", "initial_state.n", n, (B, H, K), "(B, H, K)", q)
        check_tensor("mlstm", "initial_state.m", m, (B, H), "(B, H)", q)
    check_choice("mlstm", "mode", mode, MODES)
    check_chunk_size("mlstm", chunk_size)
    check_choice("mlstm", "forget", forget, FORGET)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ConfigError(f"mlstm: eps must be a number >= 0, got {eps!r}")


def mlstm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
          scale: float | None = None, initial_state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
          mode: str = "auto", chunk_size: int = 64, forget: str = "sigmoid",
          eps: float = 1e-6) -> tuple[torch.Tensor, MLSTMState]:
    """mLSTM over a sequence: q, k (B, T, H, K), v (B, T, H, V), gate pre-activations i, f (B, T, H),
    initial_state (C (B, H, K, V), n (B, H, K), m (B, H)) or None (all zeros). Returns o (B, T, H, V) and the
    final ``MLSTMState``. Equations in the module docstring."""
    check_inputs(q, k, v, i, f, initial_state, mode, chunk_size, forget, eps)
    B, T, H, K = q.shape
    V = v.shape[-1]
    q = q * (K ** -0.5 if scale is None else scale)
    if initial_state is None:
        state = MLSTMState(q.new_zeros(B, H, K, V), q.new_zeros(B, H, K), q.new_zeros(B, H))
    else:
        state = MLSTMState(*initial_state)
    if T == 0:
        return q.new_zeros(B, 0, H, V), state
    log_f = F.logsigmoid(f) if forget == "sigmoid" else f
    if mode == "recurrent":
        return mlstm_recurrent(q, k, v, i, log_f, state, eps)
    return mlstm_chunk(q, k, v, i, log_f, state, eps, chunk_size)
