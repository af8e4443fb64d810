"""Mamba's selective scan (Gu & Dao 2023) and Mamba-2's state-space duality (SSD, Dao & Gu 2024) as pure ops.

    selective_scan   h_t = exp(delta_t A) * h_{t-1} + (delta_t u_t) B_t^T,   y_t = h_t C_t + D u_t   (per channel)
    ssd              h_t = exp(dt_t A_h) h_{t-1} + dt_t B_t x_t^T,            y_t = h_t^T C_t        (per head)

rnnzoo puts time second, so the layouts are those of mamba-ssm with time moved: u, delta, z (B, T, D) instead
of (B, D, L), B and C (B, T, N) instead of (B, N, L). ``mode="recurrent"`` is the loop in selective_naive.py,
``mode="chunk"`` the fast form, ``mode="auto"`` the fast form.

The fast selective scan. Every channel has its own decay per state entry, so there is no chunkwise matmul form
(that is why Mamba-2 made the decay a scalar per head); a time-parallel scan has to write the (B, T, D, N)
states several times over, which on a CPU costs more memory traffic than the loop it replaces. The fast form is
instead the loop run the way mamba-ssm's kernel runs it: a custom autograd Function that keeps no graph,
computes a chunk of ``chunk_size`` steps' transitions in one vectorised call, steps the state with one fused
multiply-add per step, saves only the state at each chunk start, and in the backward recomputes each chunk's
states and runs the adjoint recurrence lam_t = dL/dh_t = C_t dy_t + a_{t+1} lam_{t+1} backwards in time.
SSD has a scalar decay per head, so it is chunked linear attention with q = C, k = B, v = dt x and log-decay
dt A: the fast form is ``rnnzoo.ops.linear_attention.simple_gla``'s chunk form (the duality of the paper).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.checks import MODES, check_chunk_size, check_choice, check_rank, check_tensor
from rnnzoo.ops.linear_attention import simple_gla
from rnnzoo.ops.ssm.selective_naive import selective_scan_recurrent, ssd_recurrent, transition

__all__ = ["selective_scan", "ssd"]


class SelectiveScanFn(torch.autograd.Function):
    """y_t = h_t C_t with h_t = a_t * h_{t-1} + (delta_t u_t) B_t^T; see the module docstring."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0, neg_eigval: bool, chunk_size: int):
        T = u.shape[1]
        ys, starts, h = [], [], h0
        for t0 in range(0, T, chunk_size):
            sl = slice(t0, min(t0 + chunk_size, T))
            starts.append(h)
            H = _chunk_states(u[:, sl], delta[:, sl], A, B[:, sl], h, neg_eigval)[0]  # (B, L, D, N)
            ys.append((H * C[:, sl].unsqueeze(2)).sum(-1))  # (B, L, D)
            h = H[:, -1].clone()  # a copy, so that the chunk's states can be freed
        ctx.save_for_backward(u, delta, A, B, C, *starts)
        ctx.neg_eigval, ctx.chunk_size = neg_eigval, chunk_size
        return torch.cat(ys, dim=1), h

    @staticmethod
    def backward(ctx, dy, dh_T):
        u, delta, A, B, C, *starts = ctx.saved_tensors
        T, L = u.shape[1], ctx.chunk_size
        du, ddelta, dB, dC = (torch.empty_like(x) for x in (u, delta, B, C))
        dA = torch.zeros_like(A)
        carry = dh_T  # dL/dh_t arriving from t + 1 (through a_{t+1}) and from the final state
        for i in reversed(range(len(starts))):
            sl = slice(i * L, min((i + 1) * L, T))
            u_c, dt_c, B_c, C_c, dy_c = u[:, sl], delta[:, sl], B[:, sl], C[:, sl], dy[:, sl]
            H, a, dtu = _chunk_states(u_c, dt_c, A, B_c, starts[i], ctx.neg_eigval)  # (B, L, D, N) x2, (B, L, D)
            lam = dy_c.unsqueeze(-1) * C_c.unsqueeze(2)  # (B, L, D, N): C_t dy_t, then dL/dh_t
            for lam_t, a_t in zip(reversed(lam.unbind(1)), reversed(a.unbind(1))):
                lam_t.add_(carry)
                carry = a_t * lam_t
            dC[:, sl] = (dy_c.unsqueeze(2) @ H).squeeze(2)  # (B, L, N)
            ddtu = (lam * B_c.unsqueeze(2)).sum(-1)  # (B, L, D)
            dB[:, sl] = (dtu.unsqueeze(2) @ lam).squeeze(2)  # (B, L, N)
            h_prev = torch.cat([starts[i].unsqueeze(1), H[:, :-1]], dim=1)  # (B, L, D, N)
            # d a / d(delta A) = exp(delta A), doubled for 2 exp(delta A) - 1
            da = lam * h_prev * (a + 1 if ctx.neg_eigval else a)  # (B, L, D, N): dL/d(delta A)
            du[:, sl] = ddtu * dt_c
            ddelta[:, sl] = ddtu * u_c + (da * A).sum(-1)
            dA += (da * dt_c.unsqueeze(-1)).sum((0, 1))
        return du, ddelta, dA, dB, dC, carry, None, None


def _chunk_states(u, delta, A, B, h0, neg_eigval):
    """The states h_t (B, L, D, N) of one chunk from h0, its transitions a_t and the inputs delta_t u_t."""
    a = transition(delta.unsqueeze(-1) * A, neg_eigval)  # (B, L, D, N)
    dtu = delta * u  # (B, L, D)
    H = dtu.unsqueeze(-1) * B.unsqueeze(2)  # (B, L, D, N): the inputs, overwritten with the states
    h = h0
    for a_t, H_t in zip(a.unbind(1), H.unbind(1)):
        h = H_t.addcmul_(a_t, h)  # h_t = a_t * h_{t-1} + (delta_t u_t) B_t, in place in H
    return H, a, dtu


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                   initial_state: torch.Tensor | None = None, neg_eigval: bool = False, mode: str = "auto",
                   chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba's selective state-space scan, per channel d (D channels, state size N):

        delta_t = softplus(delta_t + delta_bias) if delta_softplus else delta_t + delta_bias
        h_t = exp(delta_t A) * h_{t-1} + (delta_t u_t) B_t^T,   y_t = h_t C_t + D u_t,   y_t *= silu(z_t)

    u, delta, z (B, T, D); A (D, N), real, normally < 0 (-exp(A_log)); B, C (B, T, N); D, delta_bias (D,);
    initial_state (B, D, N) or None (zeros). ``neg_eigval`` uses the transition 2 exp(delta A) - 1, in
    (-1, 1) for A < 0, whose negative range lets the layer learn parity (Grazzi et al. 2024).
    Returns y (B, T, D) and the final state (B, D, N).
    """
    op = "selective_scan"
    check_rank(op, "u", u, 3, "(B, T, D)")
    if not u.is_floating_point():
        raise ShapeError(f"{op}: u must be a floating tensor, got {u.dtype}")
    Bsz, T, Dm = u.shape
    check_tensor(op, "delta", delta, (Bsz, T, Dm), "(B, T, D)", u, ref="u")
    check_rank(op, "A", A, 2, "(D, N)")
    N = A.shape[1]
    check_tensor(op, "A", A, (Dm, N), "(D, N)", u, ref="u")
    for name, x in (("B", B), ("C", C)):
        check_tensor(op, name, x, (Bsz, T, N), "(B, T, N)", u, ref="u")
    for name, x in (("D", D), ("delta_bias", delta_bias)):
        if x is not None:
            check_tensor(op, name, x, (Dm,), "(D,)", u, ref="u")
    if z is not None:
        check_tensor(op, "z", z, (Bsz, T, Dm), "(B, T, D)", u, ref="u")
    if initial_state is not None:
        check_tensor(op, "initial_state", initial_state, (Bsz, Dm, N), "(B, D, N)", u, ref="u")
    check_choice(op, "mode", mode, MODES)
    check_chunk_size(op, chunk_size)

    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)
    h0 = initial_state if initial_state is not None else u.new_zeros(Bsz, Dm, N)
    if T == 0:
        return u.new_zeros(Bsz, 0, Dm), h0
    if mode == "recurrent":
        y, h = selective_scan_recurrent(u, delta, A, B, C, h0, neg_eigval)
    else:
        y, h = SelectiveScanFn.apply(u, delta, A, B, C, h0, neg_eigval, chunk_size)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y, h


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
        chunk_size: int = 64, initial_state: torch.Tensor | None = None,
        mode: str = "auto", neg_eigval: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2's state-space layer with a scalar decay per head (H heads of width P, G groups of B and C):

        a_t = exp(dt_t A_h), or 2 exp(dt_t A_h) - 1 in (-1, 1] with ``neg_eigval`` (Grazzi et al. 2024)
        h_t = a_t h_{t-1} + dt_t B_t x_t^T                 (N, P) per head
        y_t = h_t^T C_t                                    (P,)

    x (B, T, H, P); dt (B, T, H) >= 0 (after softplus and the bias); A (H,) <= 0; B, C (B, T, G, N) with G
    dividing H, head h reading group h // (H / G); initial_state (B, H, N, P) or None (zeros). The skip D x and
    the gate belong to the layer. Returns y (B, T, H, P) and the final state (B, H, N, P).

    A negative a_t has no logarithm, which the chunk form's decays are built from. It is split as
    a_t = s_t |a_t| with s_t = +-1: the product of a over (s, t] is sigma_t sigma_s exp(sum log |a|), with
    sigma_t = s_1 ... s_t (and 1 / sigma_s = sigma_s), so the chunk form runs on log |a_t| with C_t and B_s
    multiplied by sigma_t and sigma_s and the final state by sigma_T.
    """
    op = "ssd"
    check_rank(op, "x", x, 4, "(B, T, H, P)")
    if not x.is_floating_point():
        raise ShapeError(f"{op}: x must be a floating tensor, got {x.dtype}")
    Bsz, T, H, P = x.shape
    check_tensor(op, "dt", dt, (Bsz, T, H), "(B, T, H)", x, ref="x")
    check_tensor(op, "A", A, (H,), "(H,)", x, ref="x")
    check_rank(op, "B", B, 4, "(B, T, G, N)")
    G, N = B.shape[2], B.shape[3]
    check_tensor(op, "B", B, (Bsz, T, G, N), "(B, T, G, N)", x, ref="x")
    check_tensor(op, "C", C, (Bsz, T, G, N), "(B, T, G, N)", x, ref="x")
    if G == 0 or H % G:
        raise ShapeError(f"{op}: the number of groups G={G} of B and C must divide the number of heads H={H}")
    if initial_state is not None:
        check_tensor(op, "initial_state", initial_state, (Bsz, H, N, P), "(B, H, N, P)", x, ref="x")
    check_choice(op, "mode", mode, MODES)
    check_chunk_size(op, chunk_size)
    if bool((A > 0).any()):
        raise ConfigError(f"{op}: A must be <= 0 (a decay exp(dt A) <= 1), got a maximum of {A.max().item():.4g}; "
                          "pass -exp(A_log)")
    if bool((dt < 0).any()):
        raise ConfigError(f"{op}: dt must be >= 0, got a minimum of {dt.min().item():.4g}; pass softplus(dt + dt_bias)")

    B, C = (t.repeat_interleave(H // G, dim=2) for t in (B, C))  # (B, T, H, N): head h reads group h // (H/G)
    h0 = initial_state if initial_state is not None else x.new_zeros(Bsz, H, N, P)
    if T == 0:
        return x.new_zeros(Bsz, 0, H, P), h0
    if mode == "recurrent":
        return ssd_recurrent(x, dt, A, B, C, h0, neg_eigval)
    v = x * dt.unsqueeze(-1)  # (B, T, H, P)
    if not neg_eigval:
        return simple_gla(C, B, v, dt * A, scale=1.0, initial_state=h0, mode="chunk", chunk_size=chunk_size)
    a = transition(dt * A, True)  # (B, T, H), in (-1, 1]
    sigma = torch.where(a < 0, -1.0, 1.0).to(a.dtype).cumprod(1).unsqueeze(-1)  # (B, T, H, 1), +-1
    log_abs = a.abs().clamp_min(torch.finfo(a.dtype).tiny).log()  # (B, T, H); a of exactly 0 decays to ~1e-38
    y, h = simple_gla(sigma * C, sigma * B, v, log_abs, scale=1.0, initial_state=h0, mode="chunk",
                      chunk_size=chunk_size)
    return y, sigma[:, -1, :, :, None] * h  # (B, T, H, P), (B, H, N, P)
