"""Causal softmax self-attention (Vaswani et al. 2017) with rotary positions, as a mixer whose state is its KV
cache. This is the attention half of a transformer block; LanguageModel(residual=True) adds the norms and MLP."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError, StateError
from rnnzoo.mixers.base import Mixer, check_bool, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.mixers.retnet import rotate


class TransformerState(NamedTuple):
    k: torch.Tensor  # (B, H, L, D) cached keys, already rotated
    v: torch.Tensor  # (B, H, L, D) cached values
    kpos: torch.Tensor  # (B, L) long: the absolute position of the key in each slot, -1 for an empty slot
    pos: torch.Tensor  # (B,) long: how many tokens each row has read


@register_mixer("transformer", "Causal multi-head softmax attention with rotary positions; the KV cache is the state")
class Transformer(Mixer):
    """Causal multi-head self-attention; per head h of width D, with R_t the rotary turn at position t:

        q_t = R_t W_q x_t,   k_s = R_s W_k x_s,   v_s = W_v x_s
        o_t = sum_{s in S(t)} softmax_s(q_t . k_s / sqrt(D)) v_s,   y_t = W_o (o_t of every head, concatenated)

    S(t) = {0 .. t}, or {t - window + 1 .. t} with ``window`` (sliding-window attention). Rotary positions make
    q_t . k_s depend on t - s only. The state is a KV cache of fixed length L: L = ``window`` as a ring buffer
    (slot = position mod window), else L = ``max_len`` (slot = position; reading past max_len is a StateError).
    Keys are cached already rotated, and ``kpos`` records each slot's position, so rows at different positions
    (after a padded batch) attend correctly. With an empty cache ``forward`` takes SDPA's causal fast path;
    with one it attends over the cached and new keys under a mask built from the positions. ``step`` attends
    over the filled slots only, O(cached keys), though returning a new state copies the whole cache.
    Options: ``n_heads`` (default max(1, d_model // 64)), ``max_len``, ``window``, ``rotary``.
    """

    owner = "transformer"
    state_type = TransformerState

    def __init__(self, d_model: int, n_heads: int | None = None, max_len: int = 2048, window: int | None = None,
                 rotary: bool = True):
        super().__init__(d_model)
        owner = self.owner
        n_heads = max(1, d_model // 64) if n_heads is None else n_heads
        check_int(owner, "n_heads", n_heads)
        check_int(owner, "max_len", max_len)
        if window is not None:
            check_int(owner, "window", window)
        check_bool(owner, "rotary", rotary)
        if d_model % n_heads:
            raise ConfigError(f"{owner}: d_model={d_model} does not split into n_heads={n_heads} equal heads; "
                              "pick n_heads dividing d_model")
        D = d_model // n_heads
        if rotary and D % 2:
            raise ConfigError(f"{owner}: rotary positions need an even head width, got d_model / n_heads = {D}; "
                              "change n_heads or set rotary=False")
        self.n_heads, self.head_dim, self.max_len, self.window, self.rotary = n_heads, D, max_len, window, rotary
        self.cache_len = max_len if window is None else window
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None):
        dtype = dtype or self.q_proj.weight.dtype
        shape = (batch_size, self.n_heads, self.cache_len, self.head_dim)
        return self.state_type(torch.zeros(shape, device=device, dtype=dtype),
                               torch.zeros(shape, device=device, dtype=dtype),
                               torch.full((batch_size, self.cache_len), -1, device=device, dtype=torch.long),
                               torch.zeros(batch_size, device=device, dtype=torch.long))

    def _forward(self, x, state):
        B, T, _ = x.shape
        seen = int(state.pos.max()) if B else 0  # the furthest row
        if self.window is None and seen + T > self.max_len:
            raise StateError(f"{self.owner}: the KV cache holds max_len={self.max_len} positions, but this call "
                             f"reads positions up to {seen + T}; build the mixer with a larger max_len, or set "
                             "window for sliding-window attention with a ring-buffer cache")
        qpos = state.pos[:, None] + torch.arange(T, device=x.device)  # (B, T)
        q, k, v = self._qkv(x, qpos)  # (B, H, T, D) each
        n = min(seen, self.cache_len)  # slots 0 .. n-1 hold every cached key of every row
        if n == 0:
            o = self._attend(q, k, v, self._fresh_mask(T, x.device))  # (B, H, T, D)
        else:
            keys = torch.cat([state.k[:, :, :n], k], dim=2)  # (B, H, n + T, D)
            values = torch.cat([state.v[:, :, :n], v], dim=2)  # (B, H, n + T, D)
            kpos = torch.cat([state.kpos[:, :n], qpos], dim=1)  # (B, n + T)
            o = self._attend(q, keys, values, self._mask(kpos, qpos))  # (B, H, T, D)
        y = self.o_proj(o.transpose(1, 2).flatten(2))  # (B, T, d_model)
        return y, self._write(state, k, v, qpos)

    def _step(self, x_t, state):
        y, state = self._forward(x_t.unsqueeze(1), state)  # (B, 1, d_model)
        return y.squeeze(1), state

    def _qkv(self, x, pos):
        """x (B, T, d_model) at positions pos (B, T) -> q, k, v (B, H, T, D), q and k rotated."""
        heads = (self.n_heads, self.head_dim)
        q, k, v = (p(x).unflatten(-1, heads) for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, T, H, D)
        if self.rotary:
            q, k = rotate(q, pos), rotate(k, pos)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def _attend(self, q, k, v, mask):
        """q (B, H, T, D), k and v (B, H, S, D), mask (B, 1, T, S) or (T, S) bool (True = attend), or None for
        plain causal attention with S = T -> o (B, H, T, D)."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)

    def _fresh_mask(self, T, device):
        """The band i - window < j <= i when the window is shorter than T; None (causal) otherwise."""
        if self.window is None or T <= self.window:
            return None
        lag = torch.arange(T, device=device)[:, None] - torch.arange(T, device=device)  # (T, T)
        return (lag >= 0) & (lag < self.window)

    def _mask(self, kpos, qpos):
        """kpos (B, S) key positions (-1 = empty), qpos (B, T) -> (B, 1, T, S): filled, causal, in the window."""
        lag = qpos[:, :, None] - kpos[:, None, :]  # (B, T, S)
        ok = (kpos[:, None, :] >= 0) & (lag >= 0)
        if self.window is not None:
            ok = ok & (lag < self.window)
        return ok.unsqueeze(1)

    def _write(self, state, k, v, qpos):
        """Store the new keys and values at slot = position mod L. Only the last min(T, L) can stay: the earlier
        ones would be overwritten within this same call."""
        B, H, T, D = k.shape
        keep = min(T, self.cache_len)
        slot = qpos[:, T - keep:] % self.cache_len  # (B, keep)
        index = slot[:, None, :, None].expand(B, H, keep, D)
        return self.state_type(state.k.scatter(2, index, k[:, :, T - keep:]),
                               state.v.scatter(2, index, v[:, :, T - keep:]),
                               state.kpos.scatter(1, slot, qpos[:, T - keep:]),
                               state.pos + T)
