"""Linear attention (Katharopoulos et al. 2020) as a mixer: causal attention with a feature map instead of
the softmax, i.e. an RNN whose state is the running sum of phi(k) v^T."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.components import RMSNorm
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.linear_attention import linear_attention

FEATURE_MAPS = ("elu1", "relu", "identity")
NORMS = ("rms", "denominator")
MODES = ("chunk", "recurrent")
DENOMINATOR_EPS = 1e-6


class LinearAttentionState(NamedTuple):
    kv: torch.Tensor  # (B, H, K, V), or (B, H, K, V + 1) with normalization='denominator': the last is z


def check_heads(owner: str, d_model: int, n_heads: int | None, expand_k: float,
                expand_v: float) -> tuple[int, int, int]:
    """n_heads (default max(1, d_model // 64)) and the per-head widths K = expand_k * d_model / n_heads,
    V = expand_v * d_model / n_heads; a ConfigError when the totals are not whole or do not split evenly."""
    n_heads = max(1, d_model // 64) if n_heads is None else n_heads
    check_int(owner, "n_heads", n_heads)
    widths = []
    for name, expand in (("expand_k", expand_k), ("expand_v", expand_v)):
        total = expand * d_model if isinstance(expand, (int, float)) and not isinstance(expand, bool) else None
        if total is None or total <= 0 or total != int(total) or int(total) % n_heads:
            raise ConfigError(f"{owner}: {name} * d_model must be a whole multiple of n_heads={n_heads}, got "
                              f"{name}={expand!r} with d_model={d_model}; pick {name} or n_heads to fit")
        widths.append(int(total) // n_heads)
    return n_heads, widths[0], widths[1]


def feature_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "elu1":
        return F.elu(x) + 1
    if kind == "relu":
        return F.relu(x)
    return x


@register_mixer("linear_attention", "Linear attention (Katharopoulos et al. 2020): S_t = S_{t-1} + phi(k_t) v_t^T")
class LinearAttention(Mixer):
    """Causal linear attention with H heads, per head (phi applied to q_t and k_t, scale = K**-0.5):

        S_t = S_{t-1} + phi(k_t) v_t^T,   o_t = S_t^T phi(q_t) scale              normalization='rms'
        z_t = z_{t-1} + phi(k_t),         o_t = S_t^T phi(q_t) / (z_t^T phi(q_t))  normalization='denominator'
        y_t = W_o norm(o_t)  (norm = per-head RMSNorm for 'rms', none for 'denominator')

    'denominator' is the paper's normaliser; z rides along as an extra column of ones appended to v, so the
    op computes numerator and denominator together. 'rms' (per-head RMSNorm, fla's default) drops z.
    Options: ``n_heads`` (default max(1, d_model // 64)), ``expand_k``, ``expand_v`` (total key / value
    widths as multiples of d_model), ``feature_map`` ('elu1' = elu + 1, 'relu', 'identity'),
    ``normalization``, ``mode`` ('chunk' or 'recurrent', passed to the op), ``chunk_size``.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 1.0, expand_v: float = 1.0,
                 feature_map: str = "elu1", normalization: str = "rms", mode: str = "chunk",
                 chunk_size: int = 64):
        name = "linear_attention"
        H, K, V = check_heads(name, d_model, n_heads, expand_k, expand_v)
        check_choice(name, "feature_map", feature_map, FEATURE_MAPS)
        check_choice(name, "normalization", normalization, NORMS)
        check_choice(name, "mode", mode, MODES)
        check_int(name, "chunk_size", chunk_size)
        if normalization == "denominator" and feature_map == "identity":
            raise ConfigError("linear_attention: normalization='denominator' divides by phi(q)^T sum phi(k), "
                              "which needs a non-negative feature map; use feature_map='elu1' or 'relu'")
        super().__init__(d_model)
        self.n_heads, self.head_k, self.head_v = H, K, V
        self.feature_map, self.normalization, self.mode, self.chunk_size = feature_map, normalization, mode, chunk_size
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * K, bias=False)
        self.v_proj = nn.Linear(d_model, H * V, bias=False)
        self.norm = RMSNorm(V) if normalization == "rms" else None
        self.o_proj = nn.Linear(H * V, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> LinearAttentionState:
        dtype = dtype or self.q_proj.weight.dtype
        V = self.head_v + (self.normalization == "denominator")
        return LinearAttentionState(torch.zeros(batch_size, self.n_heads, self.head_k, V, device=device, dtype=dtype))

    def _qkv(self, x):
        """x (..., d_model) -> phi(q), phi(k) (..., H, K) and v (..., H, V), with a column of ones on v for z."""
        q = feature_map(self.q_proj(x).unflatten(-1, (self.n_heads, self.head_k)), self.feature_map)
        k = feature_map(self.k_proj(x).unflatten(-1, (self.n_heads, self.head_k)), self.feature_map)
        v = self.v_proj(x).unflatten(-1, (self.n_heads, self.head_v))
        if self.normalization == "denominator":
            v = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)
        return q, k, v

    def _out(self, o):
        """o (..., H, V or V + 1) -> y (..., d_model)."""
        if self.normalization == "denominator":
            o = o[..., :-1] / (o[..., -1:] + DENOMINATOR_EPS)
        else:
            o = self.norm(o)
        return self.o_proj(o.flatten(-2))

    def _forward(self, x, state):
        q, k, v = self._qkv(x)  # (B, T, H, K), (B, T, H, K), (B, T, H, V or V + 1)
        o, kv = linear_attention(q, k, v, initial_state=state.kv, mode=self.mode,
                                 chunk_size=self.chunk_size)  # (B, T, H, V or V + 1)
        return self._out(o), LinearAttentionState(kv)

    def _step(self, x_t, state):
        q, k, v = self._qkv(x_t)  # (B, H, K), (B, H, K), (B, H, V or V + 1)
        kv = state.kv + k.unsqueeze(-1) * v.unsqueeze(-2)  # (B, H, K, V or V + 1)
        o = torch.einsum("bhk,bhkv->bhv", q * self.head_k ** -0.5, kv)  # (B, H, V or V + 1)
        return self._out(o), LinearAttentionState(kv)

    def read(self, x, states):
        """``Mixer.read`` without copies: the step's o = kv^T phi(q_t) scale + (phi(q_t) . phi(k_t)) v_t scale
        (z riding along in kv and v) is linear in the old kv, so one einsum reads every slot.
        x (B, n, d_model), states.kv (B, S, H, K, V or V + 1) -> y (B, S, n, d_model)."""
        q, k, v = self._qkv(x)  # (B, n, H, K) x 2, (B, n, H, V or V + 1)
        q = q * self.head_k ** -0.5
        own = (q * k).sum(-1, keepdim=True) * v  # (B, n, H, V or V + 1)
        return self._out(torch.einsum("bnhk,bshkv->bsnhv", q, states.kv) + own.unsqueeze(1))
