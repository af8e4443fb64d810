"""ParaRNN (Danieli et al. 2025): nonlinear RNNs with a diagonal recurrence, trained in parallel over time by
Newton's method (DEER, Lim et al. 2024), and the 2x2-block linear recurrence their LSTM needs.

    para_gru   h_t = (1 - z_t) h_{t-1} + z_t c_t with gates reading u * h_{t-1} elementwise
    para_lstm  c_t = f_t c_{t-1} + i_t g_t, h_t = o_t tanh(c_t), likewise
    block_scan s_t = a_t @ s_{t-1} + b_t with a 2x2 matrix per unit

Layout: the input projections (W x + b, computed for all t by one matmul) are (B, T, H) each, the recurrent
weights u are (H,), states (B, H). ``mode="sequential"`` is the loop in naive.py (autograd through it);
``mode="newton"`` solves for all t at once with Newton's method and scans (newton.py, its own backward);
``mode="auto"`` = newton. Newton stops when its last step moved no state by more than ``tol`` (None: 1e-10
for float64, 1e-5 for float32, ``default_tol``), or after min(``max_iters``, T) steps (it is exact after T);
if it has not converged by then, ``on_fail="sequential"`` runs the loop instead, warning once per process, and
``on_fail="raise"`` raises DivergedError. ``return_info=True`` appends a NewtonInfo (iterations, last step,
converged; None in sequential mode and for T = 0) to the returned tuple.
"""
from __future__ import annotations

import math

import torch

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import MODES, check_chunk_size, check_choice, check_tensor
from rnnzoo.ops.pararnn.block_scan import block_scan_chunked
from rnnzoo.ops.pararnn.naive import block_scan_naive, para_gru_loop, para_lstm_loop
from rnnzoo.ops.pararnn.newton import GRU, LSTM, NewtonInfo, newton_rnn

__all__ = ["para_gru", "para_lstm", "block_scan", "NewtonInfo", "default_tol"]

NEWTON_MODES = ("auto", "newton", "sequential")
ON_FAIL = ("sequential", "raise")


def default_tol(dtype: torch.dtype) -> float:
    """Newton's stopping tolerance on max |s^(k) - s^(k-1)|: well above rounding, so rounding cannot stall it,
    while near the solution the error left after a step is of the order of the step squared, far below it."""
    if dtype == torch.float64:
        return 1e-10
    return max(1e-5, 10 * torch.finfo(dtype).eps)


def check_newton_options(op: str, mode: object, tol: object, max_iters: object, on_fail: object) -> None:
    """Raise a ConfigError naming the first bad option."""
    check_choice(op, "mode", mode, NEWTON_MODES)
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < math.inf):
        raise ConfigError(f"{op}: tol must be a positive number (or None for the dtype's default), got {tol!r}")
    if not isinstance(max_iters, int) or isinstance(max_iters, bool) or max_iters < 1:
        raise ConfigError(f"{op}: max_iters must be an int >= 1, got {max_iters!r}")
    check_choice(op, "on_fail", on_fail, ON_FAIL)


def check_projections(op: str, xs: dict[str, object], us: dict[str, object]) -> tuple[int, int, int]:
    """Check the projections (B, T, H), floating, of one dtype and device, and the weights u (H,); return B, T, H."""
    (ref, x), *rest = xs.items()
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"{op}: {ref} must be a floating tensor of shape (B, T, H), got {got}")
    B, T, H = x.shape
    for name, t in rest:
        check_tensor(op, name, t, (B, T, H), "(B, T, H)", x, ref=ref)
    for name, u in us.items():
        check_tensor(op, name, u, (H,), "(H,)", x, ref=ref)
    return B, T, H


def para_gru(xz: torch.Tensor, xr: torch.Tensor, xc: torch.Tensor, uz: torch.Tensor, ur: torch.Tensor,
             uc: torch.Tensor, initial_state: torch.Tensor | None = None, mode: str = "auto",
             tol: float | None = None, max_iters: int = 20, on_fail: str = "sequential", return_info: bool = False):
    """The diagonal GRU over xz, xr, xc (B, T, H) (the projections W x + b), u (H,), initial_state h_0 (B, H):

        z_t = sigmoid(xz_t + uz * h_{t-1}),  r_t = sigmoid(xr_t + ur * h_{t-1}),
        c_t = tanh(xc_t + uc * (r_t * h_{t-1})),  h_t = (1 - z_t) * h_{t-1} + z_t * c_t

    Returns (h (B, T, H), h_T (B, H)), plus a NewtonInfo (None in sequential mode) with ``return_info=True``.
    """
    B, T, H = check_projections("para_gru", {"xz": xz, "xr": xr, "xc": xc}, {"uz": uz, "ur": ur, "uc": uc})
    check_newton_options("para_gru", mode, tol, max_iters, on_fail)
    if initial_state is not None:
        check_tensor("para_gru", "initial_state", initial_state, (B, H), "(B, H)", xz, ref="xz")
    h0 = xz.new_zeros(B, H) if initial_state is None else initial_state
    if T == 0:
        h, h_T, info = xz.new_zeros(B, 0, H), h0, None
    elif mode == "sequential":
        (h, h_T), info = para_gru_loop(xz, xr, xc, uz, ur, uc, h0), None
    else:
        tol = default_tol(xz.dtype) if tol is None else tol
        h, info = newton_rnn(GRU, h0, (xz, xr, xc), (uz, ur, uc), tol, max_iters, on_fail, "para_gru")  # (B, T, H)
        h_T = h[:, -1]
    return (h, h_T, info) if return_info else (h, h_T)


def para_lstm(xi: torch.Tensor, xf: torch.Tensor, xg: torch.Tensor, xo: torch.Tensor, ui: torch.Tensor,
              uf: torch.Tensor, ug: torch.Tensor, uo: torch.Tensor,
              initial_state: tuple[torch.Tensor, torch.Tensor] | None = None, mode: str = "auto",
              tol: float | None = None, max_iters: int = 20, on_fail: str = "sequential", return_info: bool = False):
    """The diagonal LSTM over the projections xi, xf, xg, xo (B, T, H) (torch.nn.LSTM's gate order), u (H,),
    initial_state (h_0, c_0), each (B, H):

        i_t, f_t, o_t = sigmoid(x*_t + u* * h_{t-1}),  g_t = tanh(xg_t + ug * h_{t-1}),
        c_t = f_t * c_{t-1} + i_t * g_t,  h_t = o_t * tanh(c_t)

    Returns (h (B, T, H), (h_T, c_T)), plus a NewtonInfo (None in sequential mode) with ``return_info=True``.
    Newton's Jacobian is a 2x2 block per unit on (h, c), solved by ``block_scan``.
    """
    xs = {"xi": xi, "xf": xf, "xg": xg, "xo": xo}
    B, T, H = check_projections("para_lstm", xs, {"ui": ui, "uf": uf, "ug": ug, "uo": uo})
    check_newton_options("para_lstm", mode, tol, max_iters, on_fail)
    if initial_state is None:
        h0 = c0 = xi.new_zeros(B, H)
    elif isinstance(initial_state, tuple) and len(initial_state) == 2:
        h0, c0 = initial_state
        check_tensor("para_lstm", "initial_state[0] (h_0)", h0, (B, H), "(B, H)", xi, ref="xi")
        check_tensor("para_lstm", "initial_state[1] (c_0)", c0, (B, H), "(B, H)", xi, ref="xi")
    else:
        raise ShapeError(f"para_lstm: initial_state must be None or a pair (h_0, c_0) of (B, H) tensors, got "
                         f"{type(initial_state).__name__}")
    if T == 0:
        h, state, info = xi.new_zeros(B, 0, H), (h0, c0), None
    elif mode == "sequential":
        (h, state), info = para_lstm_loop(xi, xf, xg, xo, ui, uf, ug, uo, h0, c0), None
    else:
        tol = default_tol(xi.dtype) if tol is None else tol
        s0 = torch.stack([h0, c0], dim=-1)  # (B, H, 2)
        s, info = newton_rnn(LSTM, s0, (xi, xf, xg, xo), (ui, uf, ug, uo), tol, max_iters, on_fail, "para_lstm")
        h, state = s[..., 0], (s[:, -1, :, 0], s[:, -1, :, 1])  # h (B, T, H)
    return (h, state, info) if return_info else (h, state)


def block_scan(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None, mode: str = "auto",
               chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """s_t = a_t @ s_{t-1} + b_t with a (B, T, ..., 2, 2), b (B, T, ..., 2), s_0 = initial_state (B, ..., 2)
    (zeros if None). Returns (s (B, T, ..., 2), s_T (B, ..., 2)). ``mode="recurrent"`` is the loop,
    ``"chunk"`` (and ``"auto"``) the chunked doubling scan in block_scan.py."""
    check_choice("block_scan", "mode", mode, MODES)
    check_chunk_size("block_scan", chunk_size)
    if chunk_size < 2:
        raise ConfigError("block_scan: chunk_size must be at least 2 (each level of the scan shrinks time by it), "
                          f"got {chunk_size}")
    if not isinstance(b, torch.Tensor) or b.dim() < 3 or b.shape[-1] != 2 or not b.is_floating_point():
        raise ShapeError(f"block_scan: b must be a floating tensor of shape (B, T, ..., 2), got "
                         f"{getattr(b, 'shape', type(b).__name__)}")
    check_tensor("block_scan", "a", a, (*b.shape, 2), "(B, T, ..., 2, 2)", b, ref="b")
    s0 = initial_state
    if s0 is not None:
        check_tensor("block_scan", "initial_state", s0, (b.shape[0], *b.shape[2:]), "(B, ..., 2)", b, ref="b")
    if b.shape[1] == 0:
        return b.new_zeros(b.shape), b.new_zeros(b.shape[0], *b.shape[2:]) if s0 is None else s0
    if mode == "recurrent":
        return block_scan_naive(a, b, b.new_zeros(b.shape[0], *b.shape[2:]) if s0 is None else s0)
    return block_scan_chunked(a, b, s0, chunk_size)
