"""RetNet's multi-scale retention (Sun et al. 2023) as a mixer: linear attention with a fixed decay per head."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.linear_attention import check_heads
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.linear_attention import simple_gla

MODES = ("chunk", "recurrent")
ROTARY_BASE = 10000.0


class RetNetState(NamedTuple):
    kv: torch.Tensor  # (B, H, K, V)
    pos: torch.Tensor  # (B,) long: how many steps each row has read, for the rotary angle


def retention_decay(n_heads: int, device=None, dtype=None) -> torch.Tensor:
    """gamma_h = 1 - 2^(-5 - h), h = 0 .. H-1 (the paper's multi-scale decays), shape (H,)."""
    return 1 - 2.0 ** (-5 - torch.arange(n_heads, device=device, dtype=dtype))


def rotate(x: torch.Tensor, pos: torch.Tensor, base: float = ROTARY_BASE) -> torch.Tensor:
    """Rotary position embedding: x (..., H, K) at integer positions pos (...), K even.

    Channel pairs (i, i + K/2) turn by the angle pos * base^(-2i/K), so q_t . k_s depends on t - s only.
    """
    K = x.shape[-1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    inv_freq = base ** -(torch.arange(0, K, 2, device=x.device, dtype=dtype) / K)  # (K/2,)
    angle = (pos.to(dtype).unsqueeze(-1) * inv_freq).unsqueeze(-2)  # (..., 1, K/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)  # (..., H, K/2) each
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


@register_mixer("retnet", "RetNet multi-scale retention (Sun et al. 2023): S_t = gamma_h S_{t-1} + k_t v_t^T")
class RetNet(Mixer):
    """Multi-scale retention with H heads; per head h, with rotary position on q and k (scale = K**-0.5):

        S_t = gamma_h S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t scale,   gamma_h = 1 - 2^(-5 - h)
        y_t = W_O (GroupNorm_H(o_t) * swish(W_G x_t))

    Equivalently (parallel form) O = (Q K^T * D) V with D_nm = gamma^(n - m) for n >= m, else 0. GroupNorm
    normalises each head on its own; the rotary angle needs absolute positions, so the state carries a step
    counter. Options: ``n_heads`` (default max(1, d_model // 64)), ``expand_k`` (1), ``expand_v`` (2, as
    in the paper and fla), ``mode`` ('chunk' or 'recurrent', passed to the op), ``chunk_size``.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 1.0, expand_v: float = 2.0,
                 mode: str = "chunk", chunk_size: int = 64):
        name = "retnet"
        H, K, V = check_heads(name, d_model, n_heads, expand_k, expand_v)
        check_choice(name, "mode", mode, MODES)
        check_int(name, "chunk_size", chunk_size)
        if K % 2:
            raise ConfigError(f"retnet: rotary position needs an even key width per head, got "
                              f"expand_k * d_model / n_heads = {K}; change expand_k or n_heads")
        super().__init__(d_model)
        self.n_heads, self.head_k, self.head_v, self.mode, self.chunk_size = H, K, V, mode, chunk_size
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * K, bias=False)
        self.v_proj = nn.Linear(d_model, H * V, bias=False)
        self.g_proj = nn.Linear(d_model, H * V, bias=False)
        self.group_norm = nn.GroupNorm(H, H * V)
        self.o_proj = nn.Linear(H * V, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> RetNetState:
        dtype = dtype or self.q_proj.weight.dtype
        kv = torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype)
        return RetNetState(kv, torch.zeros(batch_size, device=device, dtype=torch.long))

    def _log_gamma(self, x):
        wide = torch.promote_types(x.dtype, torch.float32)  # 1 - 2^-12 rounds to 1 in bfloat16
        return retention_decay(self.n_heads, x.device, wide).log().to(x.dtype)  # (H,)

    def _qkv(self, x, pos):
        """x (..., d_model) at positions pos (...) -> rotated q, k (..., H, K) and v (..., H, V)."""
        q = rotate(self.q_proj(x).unflatten(-1, (self.n_heads, self.head_k)), pos)
        k = rotate(self.k_proj(x).unflatten(-1, (self.n_heads, self.head_k)), pos)
        return q, k, self.v_proj(x).unflatten(-1, (self.n_heads, self.head_v))

    def _out(self, o, x):
        """o (..., H, V), x (..., d_model) -> y (..., d_model)."""
        y = self.group_norm(o.reshape(-1, o.shape[-2] * o.shape[-1])).reshape(*o.shape[:-2], -1)  # (..., H * V)
        return self.o_proj(y * F.silu(self.g_proj(x)))

    def _forward(self, x, state):
        B, T, _ = x.shape
        pos = state.pos.unsqueeze(1) + torch.arange(T, device=x.device)  # (B, T)
        q, k, v = self._qkv(x, pos)  # (B, T, H, K), (B, T, H, K), (B, T, H, V)
        g = self._log_gamma(x).expand(B, T, self.n_heads)  # (B, T, H)
        o, kv = simple_gla(q, k, v, g, initial_state=state.kv, mode=self.mode, chunk_size=self.chunk_size)
        return self._out(o, x), RetNetState(kv, state.pos + T)

    def _step(self, x_t, state):
        q, k, v = self._qkv(x_t, state.pos)  # (B, H, K), (B, H, K), (B, H, V)
        gamma = self._log_gamma(x_t).exp()[:, None, None]  # (H, 1, 1)
        kv = gamma * state.kv + k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V)
        o = torch.einsum("bhk,bhkv->bhv", q * self.head_k ** -0.5, kv)  # (B, H, V)
        return self._out(o, x_t), RetNetState(kv, state.pos + 1)

    def read(self, x, states):
        """``Mixer.read`` without copies: the step's o = gamma_h kv^T q_t scale + (q_t . k_t) v_t scale is
        linear in the old kv (q_t, k_t rotated to each slot's position), so one einsum reads every slot.
        x (B, n, d_model), states: kv (B, S, H, K, V), pos (B, S) -> y (B, S, n, d_model)."""
        q, k, v = self._qkv(x.unsqueeze(1), states.pos.unsqueeze(-1))  # (B, S, n, H, K) x 2, (B, 1, n, H, V)
        q = q * self.head_k ** -0.5
        gamma = self._log_gamma(x).exp()[:, None]  # (H, 1)
        o = gamma * torch.einsum("bsnhk,bshkv->bsnhv", q, states.kv) + (q * k).sum(-1, keepdim=True) * v
        return self._out(o, x.unsqueeze(1))  # o (B, S, n, H, V)
