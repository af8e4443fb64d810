"""The neural long-term memory of Titans (Behrouz, Zhong and Mirrokni 2025, "Titans: Learning to Memorize at
Test Time"): an MLP whose weights are the state, trained while it reads by gradient descent with momentum and
weight decay on the associative loss l(M; k, v) = ||M(k) - v||^2:

    u_t = grad_M ||M(k_t) - v_t||^2 at the anchor (the weights at the start of t's chunk), clipped to a norm
          of at most ``max_grad_norm`` when one is given
    S_t = eta_t S_{t-1} - theta_t u_t          (the surprise: momentum, with decay eta_t)
    M_t = (1 - alpha_t) M_{t-1} + S_t          (alpha_t: weight decay, the forget gate)
    o_t = M_t(q_t)                             (retrieval after token t's update)

With ``chunk_size = 1`` the anchor is M_{t-1}: plain online gradient descent. With C > 1 it is the paper's
mini-batch form, the gradients of a chunk of C tokens all taken at the weights where the chunk starts.
Chunks are aligned to the absolute position: ``offset`` says how many tokens of the current chunk were read
before this call, so splitting a sequence anywhere, with the state and offset carried, changes nothing.

The MLP M has L >= 1 layers without biases, SiLU between them (memory.py). Layout: q, k (B, T, H, K),
v (B, T, H, V), eta, theta, alpha (B, T, H) in [0, 1]; the state is a ``MemoryState`` of three tuples
(weights, momentum, anchor) of L tensors (B, H, d_l, d_{l-1}), d_0 = K and d_L = V; o (B, T, H, V).
``mode="recurrent"`` is the token loop (naive.py), ``mode="chunk"`` the chunked form (chunk.py),
``mode="auto"`` the chunked form. Gradients are analytic, so the outer model trains through them by autograd.
"""
from __future__ import annotations

import torch

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import MODES, check_choice, check_chunk_size, check_qkv, check_tensor
from rnnzoo.ops.titans.chunk import titans_chunk
from rnnzoo.ops.titans.memory import MemoryState, mlp
from rnnzoo.ops.titans.naive import memory_step, titans_recurrent

__all__ = ["titans_memory", "memory_step", "MemoryState", "mlp"]


def check_memory_state(op: str, state: object, B: int, H: int, K: int, V: int, like: torch.Tensor) -> None:
    """Raise a ShapeError unless ``state`` holds three tuples of L >= 1 layers chaining K -> ... -> V."""
    if not isinstance(state, tuple) or len(state) != 3 or not all(isinstance(s, tuple) for s in state):
        raise ShapeError(f"{op}: initial_state must be a MemoryState(weights, momentum, anchor) of tuples of "
                         f"tensors, got {type(state).__name__}")
    weights = state[0]
    if not weights or any(len(s) != len(weights) for s in state):
        raise ShapeError(f"{op}: weights, momentum and anchor must hold the same number (>= 1) of layers, got "
                         f"{[len(s) for s in state]}")
    d_in = K
    for l, W in enumerate(weights):
        if not isinstance(W, torch.Tensor) or W.dim() != 4:
            raise ShapeError(f"{op}: layer {l} of the weights must be a tensor (B, H, d_out, d_in)")
        d_out = V if l == len(weights) - 1 else W.shape[2]
        for field, s in zip(MemoryState._fields, state):
            check_tensor(op, f"{field}[{l}]", s[l], (B, H, d_out, d_in), "(B, H, d_out, d_in)", like)
        d_in = d_out


def check_gates(op: str, gates: dict[str, object], B: int, T: int, H: int, like: torch.Tensor) -> None:
    for name, g in gates.items():
        check_tensor(op, name, g, (B, T, H), "(B, T, H)", like)
        if bool(((g < 0) | (g > 1)).any()):
            raise ConfigError(f"{op}: {name} must lie in [0, 1], got values in [{g.min().item():.4g}, "
                              f"{g.max().item():.4g}]; pass e.g. sigmoid of a projection")


def titans_memory(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor, theta: torch.Tensor,
                  alpha: torch.Tensor, initial_state: MemoryState, chunk_size: int = 16, offset: int = 0,
                  mode: str = "auto", max_grad_norm: float | None = None) -> tuple[torch.Tensor, MemoryState]:
    """Read and write the memory over a sequence (equations in the module docstring).

    q, k (B, T, H, K), v (B, T, H, V), eta, theta, alpha (B, T, H) in [0, 1], initial_state a MemoryState;
    ``offset`` in [0, chunk_size): tokens of the current chunk already read; ``max_grad_norm`` > 0 clips each
    token's gradient (its norm over all layers) before it enters the momentum, None does not. Returns
    o (B, T, H, V) and the final MemoryState. The state has no zero default: an MLP with all-zero weights has
    zero gradients.
    """
    op = "titans_memory"
    check_choice(op, "mode", mode, MODES)
    check_chunk_size(op, chunk_size)
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < chunk_size:
        raise ConfigError(f"{op}: offset must be an int in [0, chunk_size={chunk_size}), got {offset!r}")
    real = isinstance(max_grad_norm, (int, float)) and not isinstance(max_grad_norm, bool)
    if max_grad_norm is not None and not (real and 0 < max_grad_norm < float("inf")):
        raise ConfigError(f"{op}: max_grad_norm must be a positive finite number or None, got {max_grad_norm!r}")
    B, T, H, K, V = check_qkv(op, q, k, v)
    check_gates(op, {"eta": eta, "theta": theta, "alpha": alpha}, B, T, H, q)
    check_memory_state(op, initial_state, B, H, K, V, q)
    state = MemoryState(*initial_state)
    if T == 0:
        return q.new_zeros(B, 0, H, V), state
    run = titans_recurrent if mode == "recurrent" else titans_chunk
    return run(q, k, v, eta, theta, alpha, state, chunk_size, offset, max_grad_norm)
