"""Gated linear attention (Yang et al. 2024) as a mixer: linear attention whose state decays per key channel by
a data-dependent gate."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.components import RMSNorm
from rnnzoo.mixers.linear_attention import check_heads
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.linear_attention import gla

MODES = ("chunk", "recurrent")


class GLAState(NamedTuple):
    kv: torch.Tensor  # (B, H, K, V)


@register_mixer("gla", "Gated linear attention (Yang et al. 2024): S_t = diag(alpha_t) S_{t-1} + k_t v_t^T")
class GLA(Mixer):
    """Gated linear attention with H heads; per head (scale = K**-0.5):

        alpha_t = sigmoid(x_t W_a1 W_a2 + b_a)^(1/tau),  i.e. log alpha_t = logsigmoid(...) / tau,  (K,)
        S_t = diag(alpha_t) S_{t-1} + k_t v_t^T,   o_t = S_t^T q_t scale
        y_t = W_o (RMSNorm(o_t) * swish(x_t W_r))        (RMSNorm per head)

    The gate is low rank (W_a1: d_model x r, W_a2: r x K H) and tau = 16 keeps alpha near 1 (slow forgetting)
    at initialisation. Options, with fla's GatedLinearAttention defaults: ``n_heads`` (default
    max(1, d_model // 64)), ``expand_k`` (0.5), ``expand_v`` (1), ``gate_low_rank_dim`` r (16),
    ``gate_logit_normalizer`` tau (16), ``mode`` ('chunk' or 'recurrent', passed to the op), ``chunk_size``.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 0.5, expand_v: float = 1.0,
                 gate_low_rank_dim: int = 16, gate_logit_normalizer: float = 16.0, mode: str = "chunk",
                 chunk_size: int = 32):
        name = "gla"
        H, K, V = check_heads(name, d_model, n_heads, expand_k, expand_v)
        check_int(name, "gate_low_rank_dim", gate_low_rank_dim)
        check_choice(name, "mode", mode, MODES)
        check_int(name, "chunk_size", chunk_size)
        tau = gate_logit_normalizer
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
            raise ConfigError(f"gla: gate_logit_normalizer must be a positive number, got {tau!r}")
        super().__init__(d_model)
        self.n_heads, self.head_k, self.head_v = H, K, V
        self.gate_logit_normalizer, self.mode, self.chunk_size = float(tau), mode, chunk_size
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * K, bias=False)
        self.v_proj = nn.Linear(d_model, H * V, bias=False)
        self.gk_proj = nn.Sequential(nn.Linear(d_model, gate_low_rank_dim, bias=False),
                                     nn.Linear(gate_low_rank_dim, H * K))
        self.g_proj = nn.Linear(d_model, H * V, bias=False)
        self.norm = RMSNorm(V)
        self.o_proj = nn.Linear(H * V, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> GLAState:
        dtype = dtype or self.q_proj.weight.dtype
        return GLAState(torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype))

    def _project(self, x):
        """x (..., d_model) -> q, k (..., H, K), v (..., H, V) and the log-decay g = log alpha (..., H, K)."""
        heads = (self.n_heads, self.head_k)
        g = F.logsigmoid(self.gk_proj(x)) / self.gate_logit_normalizer
        return (self.q_proj(x).unflatten(-1, heads), self.k_proj(x).unflatten(-1, heads),
                self.v_proj(x).unflatten(-1, (self.n_heads, self.head_v)), g.unflatten(-1, heads))

    def _out(self, o, x):
        """o (..., H, V), x (..., d_model) -> y (..., d_model)."""
        return self.o_proj(self.norm(o).flatten(-2) * F.silu(self.g_proj(x)))

    def _forward(self, x, state):
        q, k, v, g = self._project(x)  # (B, T, H, K) x 2, (B, T, H, V), (B, T, H, K)
        o, kv = gla(q, k, v, g, initial_state=state.kv, mode=self.mode, chunk_size=self.chunk_size)
        return self._out(o, x), GLAState(kv)

    def _step(self, x_t, state):
        q, k, v, g = self._project(x_t)  # (B, H, K) x 2, (B, H, V), (B, H, K)
        kv = g.exp().unsqueeze(-1) * state.kv + k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V)
        o = torch.einsum("bhk,bhkv->bhv", q * self.head_k ** -0.5, kv)  # (B, H, V)
        return self._out(o, x_t), GLAState(kv)

    def read(self, x, states):
        """``Mixer.read`` without copies: the step's o = (kv' of the step)^T q scale is linear in the old kv,
        o = kv^T (alpha_t * q_t) scale + (q_t . k_t) v_t scale, so one einsum reads every slot.
        x (B, n, d_model), states.kv (B, S, H, K, V) -> y (B, S, n, d_model)."""
        q, k, v, g = self._project(x)  # (B, n, H, K) x 2, (B, n, H, V), (B, n, H, K)
        q = q * self.head_k ** -0.5
        own = (q * k).sum(-1, keepdim=True) * v  # (B, n, H, V)
        o = torch.einsum("bnhk,bshkv->bsnhv", q * g.exp(), states.kv) + own.unsqueeze(1)  # (B, S, n, H, V)
        return self._out(o, x.unsqueeze(1))
