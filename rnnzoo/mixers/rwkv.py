"""RWKV-6 "Finch" and RWKV-7 "Goose" time mixing as mixers.

An RWKV block is a time-mix followed by a channel-mix (a token-shifted feed-forward). Only the time-mix is a
sequence mixer; the channel-mix is left out, and the MLP of rnnzoo's ResidualBlock plays its role.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.rwkv import rwkv6, rwkv7

MODES = ("chunk", "recurrent")


class RWKV6State(NamedTuple):
    S: torch.Tensor  # (B, H, K, V) matrix-valued memory
    x_prev: torch.Tensor  # (B, d_model) the last input, read by the token shift


class RWKV7State(NamedTuple):
    S: torch.Tensor  # (B, H, K, V) matrix-valued memory
    x_prev: torch.Tensor  # (B, d_model) the last input, read by the token shift


def resolve_heads(owner: str, d_model: int, n_heads: int | None) -> int:
    n_heads = max(1, d_model // 64) if n_heads is None else n_heads
    check_int(owner, "n_heads", n_heads)
    return n_heads


def head_width(owner: str, d_model: int, n_heads: int, name: str, expand: float) -> int:
    """Per-head width d_model * expand / n_heads; a ConfigError unless that is a positive integer."""
    if isinstance(expand, bool) or not isinstance(expand, (int, float)) or expand <= 0:
        raise ConfigError(f"{owner}: {name} must be a positive number, got {expand!r}")
    total = d_model * expand
    if total != int(total) or int(total) % n_heads:
        raise ConfigError(f"{owner}: d_model * {name} = {d_model} * {expand} = {total:g} must be a whole multiple "
                          f"of n_heads={n_heads}; change {name} or n_heads")
    return int(total) // n_heads


def shifted(x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
    """The previous input at every step: (x_prev, x_1, ..., x_{T-1}) for x (B, T, D), x_prev (B, D)."""
    return torch.cat([x_prev.unsqueeze(1), x[:, :-1]], dim=1)  # (B, T, D)


def channel_ramp(n: int) -> torch.Tensor:
    """0, 1/n, ..., (n-1)/n: the per-channel position the reference initialisations are written in."""
    return torch.arange(n, dtype=torch.float32) / n


def group_norm(norm: nn.GroupNorm, o: torch.Tensor) -> torch.Tensor:
    """Normalise each head of o (..., H, V) on its own, with a per-channel gain and bias."""
    return norm(o.reshape(-1, norm.num_channels)).reshape(o.shape)


@register_mixer("rwkv6", "RWKV-6 Finch (Peng et al. 2024): data-dependent token shift and decay, matrix state")
class RWKV6(Mixer):
    """The Finch time mix of Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic
    Recurrence". With x_0 = state.x_prev (zeros at the start) and delta_t = x_{t-1} - x_t, the data-dependent
    token shift (ddlerp, one low-rank map A shared by the five streams, B_c and lambda_c per stream c) is

        m^c_t = lambda_c + tanh((x_t + mu_x * delta_t) A) B_c              c in {r, w, k, v, g}
        x^c_t = x_t + m^c_t * delta_t
        r_t, k_t, v_t, g_t = W_r x^r_t, W_k x^k_t, W_v x^v_t, W_g x^g_t
        d_t  = lambda_d + tanh(x^w_t A_d) B_d,    w_t = exp(-exp(d_t)) in (0, 1)   (log-decay -exp(d_t))

    and per head, with the bonus u (H, K) on the current token (op ``rwkv6``):

        o_t = (S_{t-1} + diag(u) k_t v_t^T)^T r_t,     S_t = diag(w_t) S_{t-1} + k_t v_t^T
        y_t = W_o (GroupNorm_head(o_t) * silu(g_t))

    Shapes: r, k, w (B, T, H, K), v, g (B, T, H, V), S (B, H, K, V). The channel-mix half of the RWKV block is
    not part of this mixer (see the module docstring).

    Options: ``n_heads`` (default max(1, d_model // 64)), ``expand_k`` / ``expand_v`` (key and value widths
    d_model * expand, split over heads; 0.5 and 1 as in fla), ``mix_low_rank_dim`` (rank of the shift LoRA, 32)
    and ``decay_low_rank_dim`` (rank of the decay LoRA, 64), ``mode`` ('chunk' or 'recurrent', the op's two
    forms) and ``chunk_size``. Parameters start as the reference code starts a layer halfway up the stack;
    the GroupNorm eps is 1e-5 * V (the reference's 64e-5 at head width 64).
    """

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 0.5, expand_v: float = 1.0,
                 mix_low_rank_dim: int = 32, decay_low_rank_dim: int = 64, mode: str = "chunk",
                 chunk_size: int = 32):
        name = "rwkv6"
        super().__init__(d_model)
        n_heads = resolve_heads(name, d_model, n_heads)
        K = head_width(name, d_model, n_heads, "expand_k", expand_k)
        V = head_width(name, d_model, n_heads, "expand_v", expand_v)
        check_int(name, "mix_low_rank_dim", mix_low_rank_dim)
        check_int(name, "decay_low_rank_dim", decay_low_rank_dim)
        check_choice(name, "mode", mode, MODES)
        check_int(name, "chunk_size", chunk_size)
        self.n_heads, self.head_k, self.head_v = n_heads, K, V
        self.mode, self.chunk_size = mode, chunk_size
        D, HK, HV, R = d_model, n_heads * K, n_heads * V, mix_low_rank_dim

        ramp = channel_ramp(D)
        self.mu_x = nn.Parameter(1 - ramp ** 0.5)  # (D,)
        self.mix_A = nn.Parameter(torch.zeros(D, 5 * R))
        self.mix_B = nn.Parameter(torch.empty(5, R, D).uniform_(-0.01, 0.01))
        # lambda for r, w, k, v, g: how far each stream leans towards x_{t-1} before the data-dependent part
        self.mix_bias = nn.Parameter(torch.stack([1 - ramp ** 0.25, 1 - ramp ** 0.5, 1 - ramp ** 0.5,
                                                  1 - (ramp ** 0.5 + 0.15), 1 - ramp ** 0.25]))  # (5, D)
        n = torch.arange(HK, dtype=torch.float32) / max(HK - 1, 1)
        self.decay_bias = nn.Parameter(-6 + 5 * n ** 1.35)  # (HK,), slow to fast decay across channels
        self.decay_A = nn.Parameter(torch.zeros(D, decay_low_rank_dim))
        self.decay_B = nn.Parameter(torch.empty(decay_low_rank_dim, HK).uniform_(-0.01, 0.01))
        idx = torch.arange(HK)
        self.bonus = nn.Parameter((0.5 * (1 - n) + ((idx + 1) % 3 - 1) * 0.1).reshape(n_heads, K))  # (H, K)
        self.r_proj = nn.Linear(D, HK, bias=False)
        self.k_proj = nn.Linear(D, HK, bias=False)
        self.v_proj = nn.Linear(D, HV, bias=False)
        self.g_proj = nn.Linear(D, HV, bias=False)
        self.norm = nn.GroupNorm(n_heads, HV, eps=1e-5 * V)
        self.o_proj = nn.Linear(HV, D, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> RWKV6State:
        dtype = dtype or self.o_proj.weight.dtype
        S = torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype)
        return RWKV6State(S, torch.zeros(batch_size, self.d_model, device=device, dtype=dtype))

    def _streams(self, x: torch.Tensor, x_prev: torch.Tensor):
        """r, k, log-decay (..., H, K), v, g (..., H, V) from x and the previous inputs x_prev (..., D)."""
        delta = x_prev - x  # (..., D)
        m = torch.tanh((x + delta * self.mu_x) @ self.mix_A).unflatten(-1, (5, -1))  # (..., 5, R)
        m = torch.einsum("...cr,crd->...cd", m, self.mix_B) + self.mix_bias  # (..., 5, D)
        xr, xw, xk, xv, xg = (x.unsqueeze(-2) + m * delta.unsqueeze(-2)).unbind(-2)  # (..., D) each
        d = self.decay_bias + torch.tanh(xw @ self.decay_A) @ self.decay_B  # (..., HK)
        heads = (self.n_heads, -1)
        r, k, log_w = (t.unflatten(-1, heads) for t in (self.r_proj(xr), self.k_proj(xk), -torch.exp(d)))
        v, g = (t.unflatten(-1, heads) for t in (self.v_proj(xv), self.g_proj(xg)))
        return r, k, log_w, v, g

    def _output(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """o, g (..., H, V) -> (..., d_model)."""
        return self.o_proj((group_norm(self.norm, o) * F.silu(g)).flatten(-2))

    def _forward(self, x, state):
        r, k, log_w, v, g = self._streams(x, shifted(x, state.x_prev))  # (B, T, H, K|V)
        o, S = rwkv6(r, k, v, log_w, self.bonus, initial_state=state.S, mode=self.mode,
                     chunk_size=self.chunk_size)  # (B, T, H, V)
        return self._output(o, g), RWKV6State(S, x[:, -1])

    def _step(self, x_t, state):
        r, k, log_w, v, g = self._streams(x_t, state.x_prev)  # (B, H, K|V)
        kv = k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V)
        o = (r.unsqueeze(-1) * (state.S + self.bonus.unsqueeze(-1) * kv)).sum(-2)  # (B, H, V), read before decay
        S = log_w.exp().unsqueeze(-1) * state.S + kv  # (B, H, K, V)
        return self._output(o, g), RWKV6State(S, x_t)


def lora_rank(d_model: int, factor: float, power: float) -> int:
    """The reference's LoRA width: factor * d_model^power rounded to a multiple of 32, at least 32."""
    return max(32, int(round(factor * d_model ** power / 32)) * 32)


@register_mixer("rwkv7", "RWKV-7 Goose (Peng et al. 2025): generalised delta rule with in-context learning rate")
class RWKV7(Mixer):
    """The Goose time mix of Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution".
    With x_0 = state.x_prev (zeros at the start), each stream c has a static token shift
    x^c_t = x_t + mu_c * (x_{t-1} - x_t), c in {r, w, k, v, a, g}, and

        r_t = W_r x^r_t,   k0_t = W_k x^k_t,   v_t = W_v x^v_t
        w_t = exp(-e^{-0.5} sigmoid(w0 + tanh(x^w_t A_w) B_w))          decay per channel, in (0.545, 1)
        a_t = sigmoid(a0 + x^a_t A_a B_a)                                in-context learning rate, in (0, 1)
        g_t = sigmoid(x^g_t A_g) B_g                                     output gate
        kappa_t = normalize_head(k0_t * k_k),   k_t = k0_t * (1 + (a_t - 1) * k_a)

    The decay is the paper's form. The reference code writes d = -softplus(-(w0 + lora)) - 0.5 and decays by
    exp(-exp(d)); since exp(-softplus(-z)) = sigmoid(z), that is the same log-decay -e^{-0.5} sigmoid(w0 + lora).
    Per head (op ``rwkv7`` with a = -kappa_t and b = a_t * kappa_t), the transition is
    diag(w_t) - (a_t * kappa_t) kappa_t^T in rnnzoo's (K, V) orientation (the paper's
    diag(w_t) - kappa^T (a_t * kappa) for its transposed state):

        S_t = (diag(w_t) - (a_t * kappa_t) kappa_t^T) S_{t-1} + k_t v_t^T,       o_t = S_t^T r_t
        y_t = W_o ((GroupNorm_head(o_t) + ((r_t * k_t * r_k) . 1) v_t) * g_t)

    Shapes: r, k, a, w (B, T, H, K), v (B, T, H, V), S (B, H, K, V), with K = V = d_model / n_heads. The
    channel-mix half of the block is not part of this mixer (see the module docstring), and neither is the
    optional value residual from the first layer (v mixed with layer 0's v), which would need state shared
    across layers.

    ``allow_neg_eigval`` scales the learning rate to a_t = (1 + w_t) sigmoid(.), in (0, 1 + w_t) within (0, 2):
    the removal can then exceed 1, and the transition's eigenvalues, those of diag(w) - q q^T with
    q = sqrt(a) * kappa, fill (-1, 1] (the secular equation sum_i q_i^2 / (w_i - lambda) = 1 has no root at or
    below -1 because sum_i q_i^2 / (w_i + 1) = sum_i sigmoid_i kappa_i^2 < 1). A plain 2 sigmoid(.) could go
    below -1 where the decay is strong. The scaled a_t also scales k_t. Without the option the eigenvalues lie
    in (min w - 1, 1], above -0.455.

    Options: ``n_heads`` (default max(1, d_model // 64), heads of width 64), the LoRA ranks
    ``decay_low_rank_dim``, ``a_low_rank_dim``, ``gate_low_rank_dim`` (None: the reference's sizes from
    d_model), ``allow_neg_eigval``, ``mode`` ('chunk' or 'recurrent') and ``chunk_size``. Parameters start as
    the reference code starts a layer halfway up the stack, except the output projection (zero there, torch's
    default here); the GroupNorm eps is 1e-5 * V.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, decay_low_rank_dim: int | None = None,
                 a_low_rank_dim: int | None = None, gate_low_rank_dim: int | None = None,
                 allow_neg_eigval: bool = False, mode: str = "chunk", chunk_size: int = 32):
        name = "rwkv7"
        super().__init__(d_model)
        n_heads = resolve_heads(name, d_model, n_heads)
        if d_model % n_heads:
            raise ConfigError(f"{name}: d_model={d_model} must be a multiple of n_heads={n_heads}")
        D, K = d_model, d_model // n_heads
        Rw = lora_rank(D, 1.8, 0.5) if decay_low_rank_dim is None else decay_low_rank_dim
        Ra = lora_rank(D, 1.8, 0.5) if a_low_rank_dim is None else a_low_rank_dim
        Rg = lora_rank(D, 0.6, 0.8) if gate_low_rank_dim is None else gate_low_rank_dim
        for opt, rank in (("decay_low_rank_dim", Rw), ("a_low_rank_dim", Ra), ("gate_low_rank_dim", Rg)):
            check_int(name, opt, rank)
        check_bool(name, "allow_neg_eigval", allow_neg_eigval)
        check_choice(name, "mode", mode, MODES)
        check_int(name, "chunk_size", chunk_size)
        self.n_heads, self.head_dim = n_heads, K
        self.allow_neg_eigval, self.mode, self.chunk_size = allow_neg_eigval, mode, chunk_size

        ramp = channel_ramp(D)
        # static shift per stream r, w, k, v, a, g: the fraction of x_{t-1} mixed in
        self.mu = nn.Parameter(torch.stack([1 - ramp ** p for p in (0.1, 0.45, 0.35, 0.35, 0.45, 0.1)]))  # (6, D)
        n = torch.arange(D, dtype=torch.float32) / max(D - 1, 1)
        self.w0 = nn.Parameter(-6.5 + 5 * n ** (0.85 + 0.5 ** 0.5))  # (D,), slow to fast decay across channels
        self.w_A = nn.Parameter(torch.zeros(D, Rw))
        self.w_B = nn.Parameter(nn.init.orthogonal_(torch.empty(Rw, D), gain=0.1))
        self.a0 = nn.Parameter(torch.zeros(D))
        self.a_A = nn.Parameter(torch.zeros(D, Ra))
        self.a_B = nn.Parameter(nn.init.orthogonal_(torch.empty(Ra, D), gain=0.1))
        self.g_A = nn.Parameter(torch.zeros(D, Rg))
        self.g_B = nn.Parameter(nn.init.orthogonal_(torch.empty(Rg, D), gain=0.1))
        self.k_k = nn.Parameter(torch.full((D,), 0.85))
        self.k_a = nn.Parameter(torch.ones(D))
        self.r_k = nn.Parameter(torch.zeros(n_heads, K))
        self.r_proj, self.k_proj, self.v_proj = (nn.Linear(D, D, bias=False) for _ in range(3))
        for proj, scale in ((self.r_proj, 0.5), (self.k_proj, 0.05), (self.v_proj, 0.5)):
            nn.init.uniform_(proj.weight, -scale / D ** 0.5, scale / D ** 0.5)
        self.norm = nn.GroupNorm(n_heads, D, eps=1e-5 * K)
        self.o_proj = nn.Linear(D, D, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> RWKV7State:
        dtype = dtype or self.o_proj.weight.dtype
        S = torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_dim, device=device, dtype=dtype)
        return RWKV7State(S, torch.zeros(batch_size, self.d_model, device=device, dtype=dtype))

    def _streams(self, x: torch.Tensor, x_prev: torch.Tensor):
        """r, log-decay, k, v, kappa, learning rate a (..., H, K) and the gate g (..., D) from x and x_prev."""
        xr, xw, xk, xv, xa, xg = (x.unsqueeze(-2) + self.mu * (x_prev - x).unsqueeze(-2)).unbind(-2)  # (..., D)
        log_w = -math.exp(-0.5) * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w_A) @ self.w_B)  # (..., D)
        a = torch.sigmoid(self.a0 + xa @ self.a_A @ self.a_B)  # (..., D)
        if self.allow_neg_eigval:
            a = a * (1 + log_w.exp())
        g = torch.sigmoid(xg @ self.g_A) @ self.g_B  # (..., D)
        k = self.k_proj(xk)  # (..., D)
        heads = (self.n_heads, -1)
        kappa = F.normalize((k * self.k_k).unflatten(-1, heads), dim=-1)  # (..., H, K)
        k = k * (1 + (a - 1) * self.k_a)
        r, log_w, k, v, a = (t.unflatten(-1, heads) for t in (self.r_proj(xr), log_w, k, self.v_proj(xv), a))
        return r, log_w, k, v, kappa, a, g

    def _output(self, o, r, k, v, g):
        """o, r, k, v (..., H, K|V), g (..., D) -> (..., d_model)."""
        bonus = (r * k * self.r_k).sum(-1, keepdim=True) * v  # (..., H, V)
        return self.o_proj((group_norm(self.norm, o) + bonus).flatten(-2) * g)

    def _forward(self, x, state):
        r, log_w, k, v, kappa, a, g = self._streams(x, shifted(x, state.x_prev))  # (B, T, H, K|V)
        o, S = rwkv7(r, log_w, k, v, -kappa, a * kappa, initial_state=state.S, mode=self.mode,
                     chunk_size=self.chunk_size)  # (B, T, H, V)
        return self._output(o, r, k, v, g), RWKV7State(S, x[:, -1])

    def _step(self, x_t, state):
        r, log_w, k, v, kappa, a, g = self._streams(x_t, state.x_prev)  # (B, H, K|V)
        removed = (kappa.unsqueeze(-1) * state.S).sum(-2)  # (B, H, V), kappa^T S
        S = (log_w.exp().unsqueeze(-1) * state.S - (a * kappa).unsqueeze(-1) * removed.unsqueeze(-2)
             + k.unsqueeze(-1) * v.unsqueeze(-2))  # (B, H, K, V)
        o = (r.unsqueeze(-1) * S).sum(-2)  # (B, H, V), read after the update
        return self._output(o, r, k, v, g), RWKV7State(S, x_t)
