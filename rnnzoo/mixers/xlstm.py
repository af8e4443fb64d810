"""The two blocks of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory") as mixers: "mlstm", the
matrix-memory cell in a pre up-projection block, and "slstm", the scalar-memory cell with recurrent head mixing in
a post up-projection block."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int, token_rows
from rnnzoo.mixers.components import ShortConv
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.mlstm import mlstm
from rnnzoo.ops.slstm import SLSTMState, slstm, slstm_cell

EPS = 1e-6  # the mLSTM read-out's denominator floor, as in the op


def check_heads(owner: str, n_heads: int | None, width: int, what: str) -> int:
    """The number of heads (default max(1, d_model // 64)), checked to divide ``width``."""
    check_int(owner, "n_heads", n_heads)
    if width % n_heads:
        raise ConfigError(f"{owner}: n_heads={n_heads} must divide {what} ({width}); pick a divisor of {width}")
    return n_heads


def forget_bias(n: int, forget: str) -> torch.Tensor:
    """Forget-gate biases that start the memory long: sigmoid(b) from sigmoid(3) to sigmoid(6), as the paper's
    code; for the exponential gate the same initial gate values, b = logsigmoid(3..6)."""
    b = torch.linspace(3.0, 6.0, n)
    return F.logsigmoid(b) if forget == "exp" else b


def head_norm(norm: nn.GroupNorm, h: torch.Tensor) -> torch.Tensor:
    """Group norm with one group per head: h (..., H, D) -> (..., H * D), each head normalised on its own."""
    flat = h.flatten(-2)  # (..., H * D)
    return norm(flat.reshape(-1, flat.shape[-1])).reshape(flat.shape)


class BlockLinear(nn.Module):
    """Block-diagonal linear map without bias: width d cut into d / S blocks of S units, each with its own S x S
    matrix (the mLSTM's q, k, v projections)."""

    def __init__(self, d: int, block_size: int):
        super().__init__()
        self.block_size = block_size
        self.weight = nn.Parameter(torch.empty(d // block_size, block_size, block_size))  # (N, S, S)
        nn.init.uniform_(self.weight, -block_size ** -0.5, block_size ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb = x.unflatten(-1, (-1, self.block_size))  # (..., N, S)
        return torch.einsum("...ns,nst->...nt", xb, self.weight).flatten(-2)  # (..., d)


class MLSTMBlockState(NamedTuple):
    C: torch.Tensor  # (B, H, D, D), memory divided by exp(m)
    n: torch.Tensor  # (B, H, D), normaliser divided by exp(m)
    m: torch.Tensor  # (B, H), stabiliser
    conv: torch.Tensor  # (B, conv_size - 1, 2 * d_model), the short convolution's window


@register_mixer("mlstm", "xLSTM mLSTM block (2024): matrix memory, exponential input gate, pre up-projection")
class MLSTM(Mixer):
    """The mLSTM block of xLSTM (Beck et al. 2024, pre up-projection block), inner width E = 2 d_model, H heads
    of width D = E / H:

        x_m, z = split(W_up x_t)                         (E each)
        c_t = silu(causal_conv(x_m)_t)                   (kernel ``conv_size``)
        q_t = W_q c_t,  k_t = W_k c_t,  v_t = W_v x_m,t  (block-diagonal, blocks of ``qkv_block_size``)
        i_t, f_t = w_i [q_t, k_t, v_t] + b_i,  w_f [q_t, k_t, v_t] + b_f      (one scalar per head)
        h_t = mLSTM(q_t, k_t, v_t, i_t, f_t)             (rnnzoo.ops.mlstm: exponential input gate, stabilised)
        y_t = W_down ((GroupNorm(h_t) + s * c_t) * silu(z_t))

    with the stabilised cell m_t = max(log f_t + m_{t-1}, i_t), C_t = f' C_{t-1} + i' k_t v_t^T,
    n_t = f' n_{t-1} + i' k_t, h_t = C_t^T q_t / max(|n_t^T q_t|, exp(-m_t)) (equations in rnnzoo.ops.mlstm).
    GroupNorm has one group per head; s is a learnable per-unit skip weight (starts at 1). As in the paper's code,
    the projections have no bias, the gate weights start at zero, the input-gate bias ~ N(0, 0.1) and the
    forget-gate bias linspace(3, 6) over heads, so the memory starts long.

    Options: ``n_heads`` (default max(1, d_model // 64)); ``conv_size`` (>= 2); ``qkv_block_size`` (4 as in the
    paper; set it to 2 d_model / n_heads for per-head projections, or 2 d_model for plain dense ones);
    ``forget`` ('sigmoid', the paper's, or 'exp'); ``mode`` ('chunk', the chunkwise-parallel form, or
    'recurrent', the op's reference loop); ``chunk_size``. State: the op's (C, n, m) and the conv window.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, conv_size: int = 4, qkv_block_size: int = 4,
                 forget: str = "sigmoid", mode: str = "chunk", chunk_size: int = 64):
        name = "mlstm"
        check_int(name, "d_model", d_model)
        inner = 2 * d_model
        n_heads = check_heads(name, max(1, d_model // 64) if n_heads is None else n_heads, inner,
                              "the inner width 2 * d_model")
        check_int(name, "conv_size", conv_size, minimum=2)
        check_int(name, "qkv_block_size", qkv_block_size)
        if inner % qkv_block_size:
            raise ConfigError(f"{name}: qkv_block_size={qkv_block_size} must divide the inner width 2 * d_model "
                              f"({inner}); pick a divisor of {inner}, e.g. 2 or 1")
        check_choice(name, "forget", forget, ("sigmoid", "exp"))
        check_choice(name, "mode", mode, ("chunk", "recurrent"))
        check_int(name, "chunk_size", chunk_size)
        super().__init__(d_model)
        self.n_heads, self.head_dim = n_heads, inner // n_heads
        self.forget, self.mode, self.chunk_size = forget, mode, chunk_size
        self.up_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv = ShortConv(inner, conv_size, "silu")
        self.q_proj = BlockLinear(inner, qkv_block_size)
        self.k_proj = BlockLinear(inner, qkv_block_size)
        self.v_proj = BlockLinear(inner, qkv_block_size)
        self.i_proj = nn.Linear(3 * inner, n_heads)
        self.f_proj = nn.Linear(3 * inner, n_heads)
        self.norm = nn.GroupNorm(n_heads, inner)
        self.skip = nn.Parameter(torch.ones(inner))
        self.down_proj = nn.Linear(inner, d_model, bias=False)
        with torch.no_grad():
            self.i_proj.weight.zero_()
            self.f_proj.weight.zero_()
            self.i_proj.bias.normal_(0.0, 0.1)
            self.f_proj.bias.copy_(forget_bias(n_heads, forget))

    def init_state(self, batch_size, device=None, dtype=None) -> MLSTMBlockState:
        dtype = dtype or self.up_proj.weight.dtype
        B, H, D = batch_size, self.n_heads, self.head_dim
        return MLSTMBlockState(torch.zeros(B, H, D, D, device=device, dtype=dtype),
                               torch.zeros(B, H, D, device=device, dtype=dtype),
                               torch.zeros(B, H, device=device, dtype=dtype),
                               self.conv.init_state(B, device=device, dtype=dtype))

    def _inputs(self, x, conv_out):
        """q, k, v (..., H, D) and gate pre-activations i, f (..., H) from the branch x and its conv output."""
        q, k, v = self.q_proj(conv_out), self.k_proj(conv_out), self.v_proj(x)  # (..., E) each
        qkv = torch.cat([q, k, v], dim=-1)  # (..., 3E)
        q, k, v = (t.unflatten(-1, (self.n_heads, self.head_dim)) for t in (q, k, v))  # (..., H, D) each
        return q, k, v, self.i_proj(qkv), self.f_proj(qkv)

    def _output(self, h, conv_out, z):
        return self.down_proj((head_norm(self.norm, h) + self.skip * conv_out) * F.silu(z))

    def _forward(self, x, state):
        xm, z = self.up_proj(x).chunk(2, dim=-1)  # (B, T, E) each
        conv_out, window = self.conv(xm, state.conv)  # (B, T, E)
        q, k, v, i, f = self._inputs(xm, conv_out)  # (B, T, H, D) x 3, (B, T, H) x 2
        h, (C, n, m) = mlstm(q, k, v, i, f, initial_state=state[:3], mode=self.mode, chunk_size=self.chunk_size,
                             forget=self.forget, eps=EPS)  # (B, T, H, D)
        return self._output(h, conv_out, z), MLSTMBlockState(C, n, m, window)

    def _step(self, x_t, state):
        xm, z = self.up_proj(x_t).chunk(2, dim=-1)  # (B, E) each
        conv_out, window = self.conv.step(xm, state.conv)  # (B, E)
        q, k, v, i, f = self._inputs(xm, conv_out)  # (B, H, D) x 3, (B, H) x 2
        q = q * self.head_dim ** -0.5
        log_f = F.logsigmoid(f) if self.forget == "sigmoid" else f  # (B, H)
        m = torch.maximum(log_f + state.m, i)  # (B, H)
        f_gate = torch.exp(log_f + state.m - m)[..., None]  # (B, H, 1), <= 1
        i_gate = torch.exp(i - m)[..., None]  # (B, H, 1), <= 1
        C = f_gate[..., None] * state.C + (i_gate * k)[..., :, None] * v[..., None, :]  # (B, H, D, D)
        n = f_gate * state.n + i_gate * k  # (B, H, D)
        # h = C^T q / (max(|n^T q|, exp(-m)) + EPS) with both sides times s = exp(min(m, 0)), as in the op:
        # every factor stays <= 1, while exp(-m) alone overflows once m < -88 in float32
        s = torch.exp(m.clamp(max=0))  # (B, H), <= 1
        num = s[..., None] * (q[..., :, None] * C).sum(-2)  # (B, H, D)
        den = torch.maximum(s * (q * n).sum(-1).abs(), torch.exp(-m.clamp(min=0))) + s * EPS  # (B, H)
        h = num / den[..., None]  # (B, H, D)
        return self._output(h, conv_out, z), MLSTMBlockState(C, n, m, window)

    def read(self, x, states):
        """``Mixer.read`` without copying the memories: the step's C_t^T q_t = f' C^T q_t + i' (q_t . k_t) v_t is
        linear in the old C. Everything else (the gates, n, m, the conv window) is small, so ``_step``'s
        arithmetic runs on B S n rows, with one einsum reading every slot's C.
        x (B, n, d_model), states: C (B, S, H, D, D), n (B, S, H, D), m (B, S, H), conv -> y (B, S, n, d_model)."""
        batch, steps, _ = x.shape
        slots = states.C.shape[1]
        x, (n, m, window) = token_rows(x, (states.n, states.m, states.conv), slots)  # rows R = B S n
        xm, z = self.up_proj(x).chunk(2, dim=-1)  # (R, E) each
        conv_out, _ = self.conv.step(xm, window)  # (R, E)
        q, k, v, i, f = self._inputs(xm, conv_out)  # (R, H, D) x 3, (R, H) x 2
        q = q * self.head_dim ** -0.5
        log_f = F.logsigmoid(f) if self.forget == "sigmoid" else f  # (R, H)
        m_new = torch.maximum(log_f + m, i)  # (R, H)
        f_gate = torch.exp(log_f + m - m_new)[..., None]  # (R, H, 1)
        i_gate = torch.exp(i - m_new)[..., None]  # (R, H, 1)
        qC = torch.einsum("bsnhd,bshde->bsnhe", q.unflatten(0, (batch, slots, steps)), states.C).flatten(0, 2)
        qC = f_gate * qC + i_gate * (q * k).sum(-1, keepdim=True) * v  # (R, H, D), C_t^T q_t
        qn = (q * (f_gate * n + i_gate * k)).sum(-1)  # (R, H), n_t^T q_t
        s = torch.exp(m_new.clamp(max=0))  # (R, H), scaling as in _step
        den = torch.maximum(s * qn.abs(), torch.exp(-m_new.clamp(min=0))) + s * EPS  # (R, H)
        h = s[..., None] * qC / den[..., None]  # (R, H, D)
        return self._output(h, conv_out, z).unflatten(0, (batch, slots, steps))


class SLSTMConvState(NamedTuple):
    h: torch.Tensor  # (B, H, D)
    c: torch.Tensor  # (B, H, D), divided by exp(m)
    n: torch.Tensor  # (B, H, D), divided by exp(m)
    m: torch.Tensor  # (B, H, D), stabiliser
    conv: torch.Tensor  # (B, conv_size - 1, d_model), the short convolution's window


@register_mixer("slstm", "xLSTM sLSTM block (2024): exponential gating, per-head recurrent mixing, gated MLP")
class SLSTM(Mixer):
    """The sLSTM of xLSTM (Beck et al. 2024), H heads of width D = d_model / H:

        a_t = W_a x_t + b_a + R_a h_{t-1}     for a in (i, f, z, o); R_a block-diagonal (one D x D block per head)
        m_t = max(log f_t + m_{t-1}, i_t),  i' = exp(i_t - m_t),  f' = exp(log f_t + m_{t-1} - m_t)
        c_t = f' c_{t-1} + i' tanh(z_t),  n_t = f' n_{t-1} + i',  h_t = sigmoid(o_t) * c_t / n_t

    with log f_t = logsigmoid(f_t) (``forget='sigmoid'``) or f_t (``'exp'``); rnnzoo.ops.slstm has the details.
    W is dense, as in the paper's equations (the paper's code uses per-head input projections).

    ``block='post_up'`` (default) is the paper's post up-projection block (its figure of the sLSTM block): a
    causal conv (kernel ``conv_size``, SiLU) feeds the i and f gates, z and o read x_t directly; then a group norm
    with one group per head and a GeLU-gated MLP of width ceil(4/3 d_model):

        g_t = GroupNorm(h_t),  y_t = W_down (gelu(W_gate g_t) * W_up g_t)

    The residual around the block is the caller's (ResidualBlock); the paper's code adds a second residual and
    layer norm before the MLP, the figure does not. ``block='none'`` is the cell alone, y_t = W_out h_t.

    Options: ``n_heads`` (default max(1, d_model // 64)); ``block``; ``conv_size`` (default 4 with 'post_up',
    0 = no conv with 'none'; an explicit value applies to either); ``forget``. The forget-gate bias starts at
    linspace(3, 6) over each head's units, R ~ U(-1/sqrt(D), 1/sqrt(D)). State: (h, c, n, m), plus the conv
    window when there is a conv.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, block: str = "post_up",
                 conv_size: int | None = None, forget: str = "sigmoid"):
        name = "slstm"
        check_int(name, "d_model", d_model)
        n_heads = check_heads(name, max(1, d_model // 64) if n_heads is None else n_heads, d_model, "d_model")
        check_choice(name, "block", block, ("post_up", "none"))
        conv_size = (4 if block == "post_up" else 0) if conv_size is None else conv_size
        check_int(name, "conv_size", conv_size, minimum=0)
        if conv_size == 1:
            raise ConfigError(f"{name}: conv_size must be 0 (no conv) or >= 2, got 1")
        check_choice(name, "forget", forget, ("sigmoid", "exp"))
        super().__init__(d_model)
        H, D = n_heads, d_model // n_heads
        self.n_heads, self.head_dim, self.block, self.forget = H, D, block, forget
        self.conv = ShortConv(d_model, conv_size, "silu") if conv_size else None
        self.if_proj = nn.Linear(d_model, 2 * d_model)  # i and f, from the conv output
        self.zo_proj = nn.Linear(d_model, 2 * d_model)  # z and o, from x
        self.R = nn.Parameter(torch.empty(4, H, D, D))  # (gate, head, D, D), gates (i, f, z, o)
        nn.init.uniform_(self.R, -D ** -0.5, D ** -0.5)
        with torch.no_grad():
            bias = self.if_proj.bias.view(2, H, D)
            bias[0].zero_()
            bias[1].copy_(forget_bias(D, forget))
        if block == "post_up":
            width = math.ceil(4 * d_model / 3)
            self.norm = nn.GroupNorm(H, d_model)
            self.ffn_up = nn.Linear(d_model, 2 * width, bias=False)
            self.ffn_down = nn.Linear(width, d_model, bias=False)
        else:
            self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> SLSTMState | SLSTMConvState:
        dtype = dtype or self.R.dtype
        cell = [torch.zeros(batch_size, self.n_heads, self.head_dim, device=device, dtype=dtype) for _ in range(4)]
        if self.conv is None:
            return SLSTMState(*cell)
        return SLSTMConvState(*cell, self.conv.init_state(batch_size, device=device, dtype=dtype))

    def _gates(self, x, conv_out):
        """Input pre-activations i, f, z, o (..., H, D)."""
        heads = (2, self.n_heads, self.head_dim)
        i, f = self.if_proj(conv_out).unflatten(-1, heads).unbind(-3)
        z, o = self.zo_proj(x).unflatten(-1, heads).unbind(-3)
        return i, f, z, o

    def _output(self, h):
        if self.block == "none":
            return self.out_proj(h.flatten(-2))
        gate, up = self.ffn_up(head_norm(self.norm, h)).chunk(2, dim=-1)  # (..., width) each
        return self.ffn_down(F.gelu(gate) * up)

    def _state(self, cell, window):
        return SLSTMState(*cell) if self.conv is None else SLSTMConvState(*cell, window)

    def _forward(self, x, state):
        conv_out, window = (x, None) if self.conv is None else self.conv(x, state.conv)  # (B, T, d)
        h, cell = slstm(*self._gates(x, conv_out), self.R, initial_state=tuple(state[:4]),
                        forget=self.forget)  # (B, T, H, D)
        return self._output(h), self._state(cell, window)

    def _step(self, x_t, state):
        conv_out, window = (x_t, None) if self.conv is None else self.conv.step(x_t, state.conv)  # (B, d)
        pre = torch.stack(self._gates(x_t, conv_out), dim=1)  # (B, 4, H, D)
        h, cell = slstm_cell(pre, SLSTMState(*state[:4]), self.R, self.forget)  # (B, H, D)
        return self._output(h), self._state(cell, window)
