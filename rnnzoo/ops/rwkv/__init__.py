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

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.rwkv.chunk import rwkv6_chunk, rwkv7_chunk
from rnnzoo.ops.rwkv.naive import rwkv6_recurrent, rwkv7_recurrent

__all__ = ["rwkv6", "rwkv7"]

MODES = ("auto", "chunk", "recurrent")


def check_tensor(op: str, name: str, x: object, shape: tuple[int, ...], layout: str, like: torch.Tensor) -> None:
    """Raise a ShapeError unless ``x`` is a tensor of ``shape`` with the dtype and device of ``like``."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{op}: {name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ShapeError(f"{op}: {name} must have shape {layout} = {tuple(shape)} to match r, got {tuple(x.shape)}")
    if x.dtype != like.dtype or x.device != like.device:
        raise ShapeError(f"{op}: {name} is {x.dtype} on {x.device} but r is {like.dtype} on {like.device}; "
                         "cast every input to one dtype and device")


def check_inputs(op: str, r, keyed: dict, v, extra: dict, initial_state, mode, chunk_size) -> None:
    """Check r (B, T, H, K), the other (B, T, H, K) inputs in ``keyed`` (w among them), v (B, T, H, V), the
    inputs in ``extra`` (name -> (tensor, shape, layout)), the state and the options."""
    if not isinstance(r, torch.Tensor) or r.dim() != 4:
        got = f"{r.dim()} dims {tuple(r.shape)}" if isinstance(r, torch.Tensor) else type(r).__name__
        raise ShapeError(f"{op}: r must have shape (B, T, H, K), got {got}")
    if not r.is_floating_point():
        raise ShapeError(f"{op}: r must be a floating tensor, got {r.dtype}")
    B, T, H, K = r.shape
    for name, x in keyed.items():
        check_tensor(op, name, x, (B, T, H, K), "(B, T, H, K)", r)
    if not isinstance(v, torch.Tensor) or v.dim() != 4:
        got = f"{v.dim()} dims {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
        raise ShapeError(f"{op}: v must have shape (B, T, H, V), got {got}")
    V = v.shape[-1]
    check_tensor(op, "v", v, (B, T, H, V), "(B, T, H, V)", r)
    for name, (x, shape, layout) in extra.items():
        check_tensor(op, name, x, shape, layout, r)
    w = keyed["w"]
    if bool((w > 0).any()):
        raise ConfigError(f"{op}: w is a log-decay and must be <= 0, got a maximum of {w.max().item():.4g}; "
                          "pass e.g. -exp(x) or -softplus(x)")
    if initial_state is not None:
        check_tensor(op, "initial_state", initial_state, (B, H, K, V), "(B, H, K, V)", r)
    if mode not in MODES:
        raise ConfigError(f"{op}: mode must be one of {MODES}, got {mode!r}")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0:
        raise ConfigError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")


def start(r: torch.Tensor, v: torch.Tensor, scale: float, initial_state: torch.Tensor | None):
    """Scaled r and the initial state (zeros when None)."""
    B, T, H, K = r.shape
    if initial_state is None:
        initial_state = r.new_zeros(B, H, K, v.shape[-1])
    return r * scale, initial_state


def rwkv6(r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor, scale: float = 1.0,
          initial_state: torch.Tensor | None = None, mode: str = "auto",
          chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-6: o_t = (S_{t-1} + diag(u) k_t v_t^T)^T (scale r_t), S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T.

    The state is read before this step's decay, and the current token enters only through the bonus u.
    r, k, w <= 0 (B, T, H, K), v (B, T, H, V), u (H, K), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V).
    """
    H_K = tuple(r.shape[2:]) if isinstance(r, torch.Tensor) and r.dim() == 4 else ()
    check_inputs("rwkv6", r, {"k": k, "w": w}, v, {"u": (u, H_K, "(H, K)")}, initial_state, mode, chunk_size)
    r, S0 = start(r, v, scale, initial_state)
    if r.shape[1] == 0:
        return r.new_zeros(*r.shape[:3], v.shape[-1]), S0
    if mode == "recurrent":
        return rwkv6_recurrent(r, k, v, w, u, S0)
    return rwkv6_chunk(r, k, v, w, u, S0, chunk_size)


def rwkv7(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
          scale: float = 1.0, initial_state: torch.Tensor | None = None, mode: str = "auto",
          chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-7 generalised delta rule: S_t = (diag(exp(w_t)) + b_t a_t^T) S_{t-1} + k_t v_t^T,
    o_t = S_t^T (scale r_t).

    RWKV writes the state as (V, K): S'_t = S'_{t-1} (diag(exp(w_t)) + a_t b_t^T) + v_t k_t^T, o_t = S'_t r_t.
    rnnzoo keeps (K, V) with S = S'^T, which gives the equation above. In RWKV-7 a = -kappa_hat and
    b = kappa_hat * lr (kappa_hat the unit removal key, lr the in-context learning rate), so the transition is
    diag(exp(w)) - lr kappa_hat kappa_hat^T; the op accepts any a, b.
    r, w <= 0, k, a, b (B, T, H, K), v (B, T, H, V), initial_state (B, H, K, V) or None (zeros).
    Returns o (B, T, H, V) and the final state (B, H, K, V).
    """
    check_inputs("rwkv7", r, {"w": w, "k": k, "a": a, "b": b}, v, {}, initial_state, mode, chunk_size)
    r, S0 = start(r, v, scale, initial_state)
    if r.shape[1] == 0:
        return r.new_zeros(*r.shape[:3], v.shape[-1]), S0
    if mode == "recurrent":
        return rwkv7_recurrent(r, w, k, v, a, b, S0)
    return rwkv7_chunk(r, w, k, v, a, b, S0, chunk_size)
