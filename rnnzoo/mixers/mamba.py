"""Mamba (Gu & Dao 2023) and Mamba-2 (Dao & Gu 2024): gated, input-selective state-space layers.

Both expand d_model to d_inner = expand * d_model, run a short causal depthwise convolution with SiLU, a
selective state space whose step size, input and readout depend on the token, gate the result with SiLU(z)
and project back. The convolution's window and the state-space state are the layer's state, so ``step``
continues exactly where ``forward`` stopped.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_expand, check_int, token_rows
from rnnzoo.mixers.components import RMSNorm, ShortConv, dt_bias_init
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.ssm.selective import selective_scan, ssd, transition

MODES = ("chunk", "recurrent")


class MambaState(NamedTuple):
    conv: torch.Tensor  # (B, d_conv - 1, d_inner), the convolution's window
    ssm: torch.Tensor  # (B, d_inner, d_state)


class Mamba2State(NamedTuple):
    conv: torch.Tensor  # (B, d_conv - 1, d_inner + 2 * n_groups * d_state)
    ssm: torch.Tensor  # (B, n_heads, d_state, head_dim)


def check_dt_range(owner: str, dt_min: object, dt_max: object) -> None:
    if not (isinstance(dt_min, (int, float)) and isinstance(dt_max, (int, float)) and 0 < dt_min <= dt_max):
        raise ConfigError(f"{owner}: need 0 < dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")


@register_mixer("mamba", "Mamba (Gu & Dao 2023): selective state space, input-dependent delta, B, C; conv + SiLU gate")
class Mamba(Mixer):
    """The Mamba-1 layer. With d_inner = expand * d_model channels and a state of d_state per channel:

        x, z    = W_in u_t                                           (d_inner each)
        x       = SiLU(conv1d(x))_t                                  (depthwise, causal, d_conv taps)
        dt_r, B_t, C_t = W_x x                                       (dt_rank, d_state, d_state)
        delta_t = softplus(W_dt dt_r + b_dt)                         (d_inner)
        h_t     = exp(delta_t A) * h_{t-1} + (delta_t x) B_t^T,      A = -exp(A_log)   (d_inner, d_state)
        y_t     = W_out ((h_t C_t + D x) * SiLU(z))

    Initialisation as in the paper: A = -(1, 2, ..., d_state) per channel (S4D-real), D = 1, softplus(b_dt)
    log-uniform in [dt_min, dt_max]. Options: ``d_state`` (16), ``d_conv`` (4), ``expand`` (2), ``dt_rank``
    (default ceil(d_model / 16)), ``dt_min``/``dt_max`` (1e-3, 0.1), ``allow_neg_eigval`` (transition
    2 exp(delta A) - 1 in (-1, 1): Grazzi et al. 2024, which makes parity learnable), ``mode`` ('chunk', the
    fast op, or 'recurrent', its reference loop) and ``chunk_size``.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2,
                 dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 0.1,
                 allow_neg_eigval: bool = False, mode: str = "chunk", chunk_size: int = 64):
        name = "mamba"
        d_inner = check_expand(name, expand, d_model)
        dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        for opt, value, least in (("d_state", d_state, 1), ("d_conv", d_conv, 2), ("dt_rank", dt_rank, 1),
                                  ("chunk_size", chunk_size, 1)):
            check_int(name, opt, value, least)
        check_dt_range(name, dt_min, dt_max)
        check_bool(name, "allow_neg_eigval", allow_neg_eigval)
        check_choice(name, "mode", mode, MODES)
        super().__init__(d_model)
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.allow_neg_eigval, self.mode, self.chunk_size = allow_neg_eigval, mode, chunk_size
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv = ShortConv(d_inner, d_conv)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        nn.init.uniform_(self.dt_proj.weight, -dt_rank ** -0.5, dt_rank ** -0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(d_inner, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.arange(1, d_state + 1, dtype=torch.float32).log().repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> MambaState:
        dtype = dtype or self.in_proj.weight.dtype
        return MambaState(self.conv.init_state(batch_size, device, dtype),
                          torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype))

    def _selective_inputs(self, x):
        """x (..., d_inner) after the conv -> delta before softplus (..., d_inner), B, C (..., d_state)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return dt @ self.dt_proj.weight.T, B, C  # the bias is the op's delta_bias

    def _forward(self, u, state):
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, T, d_inner) each
        x, window = self.conv(x, state.conv)
        delta, B, C = self._selective_inputs(x)
        y, h = selective_scan(x, delta, -self.A_log.exp(), B, C, self.D, z, self.dt_proj.bias, True, state.ssm,
                              self.allow_neg_eigval, self.mode, self.chunk_size)  # (B, T, d_inner)
        return self.out_proj(y), MambaState(window, h)

    def _step(self, u_t, state):
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, d_inner) each
        x, window = self.conv.step(x, state.conv)
        delta, B, C = self._selective_inputs(x)
        delta = F.softplus(delta + self.dt_proj.bias)  # (B, d_inner)
        a = transition(delta.unsqueeze(-1) * -self.A_log.exp(), self.allow_neg_eigval)  # (B, d_inner, d_state)
        h = a * state.ssm + (delta * x).unsqueeze(-1) * B.unsqueeze(1)  # (B, d_inner, d_state)
        y = (h * C.unsqueeze(1)).sum(-1) + self.D * x  # (B, d_inner)
        return self.out_proj(y * F.silu(z)), MambaState(window, h)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, "
                f"allow_neg_eigval={self.allow_neg_eigval}, mode={self.mode!r}")


@register_mixer("mamba2", "Mamba-2 (Dao & Gu 2024): SSD, a scalar decay per head, chunked state-space duality")
class Mamba2(Mixer):
    """The Mamba-2 layer. d_inner = expand * d_model channels in H = d_inner / head_dim heads; B and C in
    n_groups groups shared by the heads:

        z, xBC, dt = W_in u_t                                   (d_inner, d_inner + 2 G N, H)
        x, B, C    = SiLU(conv1d(xBC))_t                        (depthwise, causal, d_conv taps)
        dt_t       = softplus(dt + dt_bias)                     (H)
        a_t        = exp(dt_t A_h),                             A = -exp(A_log)
        h_t        = a_t h_{t-1} + dt_t B_t x_t^T                                  (d_state, head_dim) per head
        y_t        = W_out RMSNorm((h_t^T C_t + D_h x_t) * SiLU(z_t))

    Initialisation as in the paper: A uniform in [1, 16], softplus(dt_bias) log-uniform in [dt_min, dt_max],
    D = 1. Options: ``d_state`` (64), ``d_conv`` (4), ``expand`` (2), ``head_dim`` (gcd(d_inner, 64), so 64 when
    64 divides d_inner), ``n_groups`` (1), ``dt_min``/``dt_max``, ``allow_neg_eigval`` (a_t = 2 exp(dt_t A_h) - 1
    in (-1, 1), as the mamba mixer's option, after Grazzi et al. 2024), ``mode`` ('chunk', the SSD chunk
    algorithm, or 'recurrent') and ``chunk_size``.
    """

    def __init__(self, d_model: int, d_state: int = 64, d_conv: int = 4, expand: float = 2,
                 head_dim: int | None = None,
                 n_groups: int = 1, dt_min: float = 1e-3, dt_max: float = 0.1, allow_neg_eigval: bool = False,
                 mode: str = "chunk", chunk_size: int = 64):
        name = "mamba2"
        d_inner = check_expand(name, expand, d_model)
        head_dim = math.gcd(d_inner, 64) if head_dim is None else head_dim
        for opt, value, least in (("d_state", d_state, 1), ("d_conv", d_conv, 2), ("head_dim", head_dim, 1),
                                  ("n_groups", n_groups, 1), ("chunk_size", chunk_size, 1)):
            check_int(name, opt, value, least)
        if d_inner % head_dim:
            raise ConfigError(f"mamba2: d_inner = expand * d_model = {d_inner} must be a multiple of head_dim="
                              f"{head_dim}; pick head_dim (e.g. {math.gcd(d_inner, 64)}) or expand to fit")
        H = d_inner // head_dim
        if H % n_groups:
            raise ConfigError(f"mamba2: n_groups={n_groups} must divide the number of heads {H}")
        check_dt_range(name, dt_min, dt_max)
        check_bool(name, "allow_neg_eigval", allow_neg_eigval)
        check_choice(name, "mode", mode, MODES)
        super().__init__(d_model)
        self.d_inner, self.d_state, self.head_dim, self.n_heads, self.n_groups = d_inner, d_state, head_dim, H, n_groups
        self.allow_neg_eigval, self.mode, self.chunk_size = allow_neg_eigval, mode, chunk_size
        conv_dim = d_inner + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, d_inner + conv_dim + H, bias=False)
        self.conv = ShortConv(conv_dim, d_conv)
        self.dt_bias = nn.Parameter(dt_bias_init(H, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.empty(H).uniform_(1, 16).log())
        self.D = nn.Parameter(torch.ones(H))
        self.norm = RMSNorm(d_inner, eps=1e-5)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> Mamba2State:
        dtype = dtype or self.in_proj.weight.dtype
        return Mamba2State(self.conv.init_state(batch_size, device, dtype),
                           torch.zeros(batch_size, self.n_heads, self.d_state, self.head_dim, device=device,
                                       dtype=dtype))

    def _inputs(self, u, window, step):
        """u (..., d_model) -> z (..., d_inner), x (..., H, P), B and C (..., G, N), dt (..., H), the window."""
        z, xBC, dt = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * self.n_groups * self.d_state,
                                            self.n_heads], dim=-1)
        xBC, window = self.conv.step(xBC, window) if step else self.conv(xBC, window)
        x, B, C = xBC.split([self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], dim=-1)
        x = x.unflatten(-1, (self.n_heads, self.head_dim))  # (..., H, P)
        B, C = (t.unflatten(-1, (self.n_groups, self.d_state)) for t in (B, C))  # (..., G, N)
        return z, x, B, C, F.softplus(dt + self.dt_bias), window

    def _output(self, y, x, z):
        y = y + self.D.unsqueeze(-1) * x  # (..., H, P)
        return self.out_proj(self.norm(y.flatten(-2) * F.silu(z)))

    def _forward(self, u, state):
        z, x, B, C, dt, window = self._inputs(u, state.conv, step=False)
        y, h = ssd(x, dt, -self.A_log.exp(), B, C, self.chunk_size, state.ssm, self.mode,
                   self.allow_neg_eigval)  # (B, T, H, P)
        return self._output(y, x, z), Mamba2State(window, h)

    def _step(self, u_t, state):
        z, x, B, C, dt, window = self._inputs(u_t, state.conv, step=True)  # x (B, H, P), B, C (B, G, N)
        B, C = (t.repeat_interleave(self.n_heads // self.n_groups, dim=1) for t in (B, C))  # (B, H, N)
        decay = transition(dt * -self.A_log.exp(), self.allow_neg_eigval)[..., None, None]  # (B, H, 1, 1)
        h = decay * state.ssm + dt[..., None, None] * B.unsqueeze(-1) * x.unsqueeze(-2)  # (B, H, N, P)
        y = (h * C.unsqueeze(-1)).sum(-2)  # (B, H, P)
        return self._output(y, x, z), Mamba2State(window, h)

    def read(self, u, states):
        """``Mixer.read`` without copying the SSM states: the step's h_t^T C_t = exp(dt_t A_h) h^T C_t +
        dt_t (B_t . C_t) x_t is linear in the old h. The inputs depend on each slot's conv window, so they run on
        B S n rows; then one einsum reads every slot. u (B, n, d_model), states.ssm (B, S, H, N, P) ->
        y (B, S, n, d_model)."""
        batch, n, _ = u.shape
        slots = states.ssm.shape[1]
        z, x, B, C, dt, _ = self._inputs(*token_rows(u, states.conv, slots), step=True)  # rows R = B S n
        B, C = (t.repeat_interleave(self.n_heads // self.n_groups, dim=1) for t in (B, C))  # (R, H, N)
        read = torch.einsum("bsnhk,bshkp->bsnhp", C.unflatten(0, (batch, slots, n)), states.ssm)  # (B, S, n, H, P)
        decay = transition(dt * -self.A_log.exp(), self.allow_neg_eigval)[..., None]  # (R, H, 1)
        y = decay * read.flatten(0, 2) + (dt * (B * C).sum(-1))[..., None] * x  # (R, H, P)
        return self._output(y, x, z).unflatten(0, (batch, slots, n))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, d_inner={self.d_inner}, n_heads={self.n_heads}, d_state={self.d_state}, "
                f"n_groups={self.n_groups}, allow_neg_eigval={self.allow_neg_eigval}, mode={self.mode!r}")
