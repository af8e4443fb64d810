"""Causal softmax self-attention (Vaswani et al. 2017) with rotary positions, as a mixer whose state is its KV
cache held in fixed-size blocks, with optional persistent memory tokens (Titans, Behrouz et al. 2025, Sec. 3.3).
This is the attention half of a transformer block; LanguageModel(residual=True) adds the norms and MLP."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError, StateError
from rnnzoo.mixers.base import Mixer, check_bool, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.mixers.retnet import rotate


class TransformerState(NamedTuple):
    k: tuple[torch.Tensor, ...]  # n_blocks x (B, H, block, D): cached keys, already rotated
    v: tuple[torch.Tensor, ...]  # n_blocks x (B, H, block, D): cached values
    kpos: tuple[torch.Tensor, ...]  # n_blocks x (B, block) long: each slot's key position, -1 for an empty slot
    pos: torch.Tensor  # (B,) long: how many tokens each row has read


@register_mixer("transformer", "Causal multi-head softmax attention with rotary positions; the KV cache is the state")
class Transformer(Mixer):
    """Causal multi-head self-attention; per head h of width D, with R_t the rotary turn at position t and
    P = (p_1 .. p_{n_p}) learned persistent tokens (n_p = ``n_persistent``, default none):

        q_t = W_q x_t,   k_s = W_k x_s,   v_s = W_v x_s,   k'_j = W_k p_j,   v'_j = W_v p_j
        a_ts = (R_t q_t) . (R_s k_s) / sqrt(D),   a'_tj = q_t . k'_j / sqrt(D)
        o_t = (sum_{j<n_p} e^{a'_tj} v'_j + sum_{s in S(t)} e^{a_ts} v_s) / (sum_j e^{a'_tj} + sum_s e^{a_ts})
        y_t = W_o (o_t of every head, concatenated)

    S(t) = {0 .. t}, or {t - window + 1 .. t} with ``window`` (sliding-window attention). Rotary positions make
    a_ts depend on t - s only. The persistent tokens are Titans' input-independent memory "prepended to the
    sequence": every query sees them, also under a window, and they take no cache slot. They have no
    position: their keys are not turned and they score against the unturned query, as if they sat at offset 0
    from every query. Giving them position 0 instead would turn their scores with the query's absolute position
    t, so what they contribute would drift along a long stream and a window's output would depend on where it
    lies. With rotary positions and persistent tokens, ``forward`` scores both kinds in one SDPA call over
    query and key channels doubled: [R_t q_t, q_t] . [R_s k_s, 0] = a_ts sqrt(D) and
    [R_t q_t, q_t] . [0, k'_j] = a'_tj sqrt(D).

    The state is a KV cache of C >= L slots, L = ``window`` as a ring buffer or else L = ``max_len`` (reading
    past max_len is a StateError), and slot = position mod C. The slots come in n_blocks = ceil(L / block_size)
    blocks of equal size ceil(L / n_blocks), each its own tensor, so a new state shares every block it does
    not write with the old one and a step copies one block, not the whole cache. Keys are cached already
    turned, and ``kpos`` records each slot's position, so rows at different positions (after a padded batch)
    and slots older than the window are masked correctly. With an empty cache ``forward`` takes SDPA's causal
    fast path; with one it attends over the cached blocks in use and the new keys under a mask built from the
    positions. ``step`` scores the blocks in use one by one and reads the values block by block, O(cached
    keys) without concatenating them. Options: ``n_heads`` (default max(1, d_model // 64)), ``max_len``,
    ``window``, ``rotary``, ``n_persistent``, ``block_size`` (512: a step copies one block, but every call checks
    the state tensor by tensor, so smaller blocks cost more at 64k positions than their copies save).
    """

    owner = "transformer"
    state_type = TransformerState

    def __init__(self, d_model: int, n_heads: int | None = None, max_len: int = 2048, window: int | None = None,
                 rotary: bool = True, n_persistent: int = 0, block_size: int = 512):
        super().__init__(d_model)
        owner = self.owner
        n_heads = max(1, d_model // 64) if n_heads is None else n_heads
        check_int(owner, "n_heads", n_heads)
        check_int(owner, "max_len", max_len)
        if window is not None:
            check_int(owner, "window", window)
        check_bool(owner, "rotary", rotary)
        check_int(owner, "n_persistent", n_persistent, minimum=0)
        check_int(owner, "block_size", block_size)
        if d_model % n_heads:
            raise ConfigError(f"{owner}: d_model={d_model} does not split into n_heads={n_heads} equal heads; "
                              "pick n_heads dividing d_model")
        D = d_model // n_heads
        if rotary and D % 2:
            raise ConfigError(f"{owner}: rotary positions need an even head width, got d_model / n_heads = {D}; "
                              "change n_heads or set rotary=False")
        self.n_heads, self.head_dim, self.max_len, self.window, self.rotary = n_heads, D, max_len, window, rotary
        self.n_persistent = n_persistent
        L = max_len if window is None else window
        self.n_blocks = math.ceil(L / block_size)
        self.block = math.ceil(L / self.n_blocks)  # at most block_size, and C - L < n_blocks
        self.cache_len = self.n_blocks * self.block
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)
        # unit-variance tokens, on the scale of the normalised inputs a residual block feeds in
        self.persistent = nn.Parameter(torch.randn(n_persistent, d_model)) if n_persistent else None

    def init_state(self, batch_size, device=None, dtype=None):
        """Every block of an empty cache is one shared tensor: states are never written in place, so sharing is
        safe, and a fresh state (checked against on every call) costs one block, not n_blocks."""
        dtype = dtype or self.q_proj.weight.dtype
        zeros = torch.zeros(batch_size, self.n_heads, self.block, self.head_dim, device=device, dtype=dtype)
        empty = torch.full((batch_size, self.block), -1, device=device, dtype=torch.long)
        return self.state_type((zeros,) * self.n_blocks, (zeros,) * self.n_blocks, (empty,) * self.n_blocks,
                               torch.zeros(batch_size, device=device, dtype=torch.long))

    def _forward(self, x, state):
        B, T, _ = x.shape
        n = self._blocks_in_use(state, T)
        qpos = state.pos[:, None] + torch.arange(T, device=x.device)  # (B, T)
        q_free, k, v = self._project(x)  # (B, H, T, D) each
        q, k = self._turn(q_free, qpos), self._turn(k, qpos)
        if n == 0:
            keys, values, mask = k, v, self._fresh_mask(T, x.device)
        else:
            keys = torch.cat([*state.k[:n], k], dim=2)  # (B, H, n block + T, D)
            values = torch.cat([*state.v[:n], v], dim=2)  # (B, H, n block + T, D)
            mask = self._mask(torch.cat([*state.kpos[:n], qpos], dim=1), qpos)  # (B, 1, T, n block + T)
        if self.n_persistent:
            q, keys, values, mask = self._with_persistent(q, q_free, keys, values, mask)
            o = self._attend(q, keys, values, mask, scale=self.head_dim ** -0.5)  # (B, H, T, D)
        else:
            o = self._attend(q, keys, values, mask)  # (B, H, T, D)
        y = self.o_proj(o.transpose(1, 2).flatten(2))  # (B, T, d_model)
        return y, self._write(state, k, v, qpos)

    def _step(self, x_t, state):
        n = self._blocks_in_use(state, 1)
        qpos = state.pos[:, None]  # (B, 1)
        q_free, k, v = self._project(x_t.unsqueeze(1))  # (B, H, 1, D) each
        q, k = self._turn(q_free, qpos), self._turn(k, qpos)
        keys, values = [*state.k[:n], k], [*state.v[:n], v]
        scores = torch.cat([q @ kb.transpose(2, 3) for kb in keys], dim=3)  # (B, H, 1, n block + 1)
        ok = self._mask(torch.cat([*state.kpos[:n], qpos], dim=1), qpos)  # (B, 1, 1, n block + 1)
        scores = scores.masked_fill(~ok, -math.inf)
        if self.n_persistent:
            k_p, v_p = self._persistent_kv()  # (H, n_p, D) each
            scores = torch.cat([q_free @ k_p.transpose(1, 2), scores], dim=3)  # (B, H, 1, n_p + n block + 1)
            values = [v_p, *values]
        p = (scores * self.head_dim ** -0.5).softmax(dim=3)
        o = sum(pb @ vb for pb, vb in zip(p.split([vb.shape[-2] for vb in values], dim=3), values))  # (B, H, 1, D)
        y = self.o_proj(o.flatten(1))  # (B, d_model)
        return y, self._write(state, k, v, qpos)

    def _blocks_in_use(self, state, T):
        """How many leading cache blocks hold a key of some row, after checking that T more tokens fit."""
        seen = int(state.pos.max()) if len(state.pos) else 0  # the furthest row
        if self.window is None and seen + T > self.max_len:
            raise StateError(f"{self.owner}: the KV cache holds max_len={self.max_len} positions, but this call "
                             f"reads positions up to {seen + T}; build the mixer with a larger max_len, or set "
                             "window for sliding-window attention with a ring-buffer cache")
        return math.ceil(min(seen, self.cache_len) / self.block)

    def _project(self, x):
        """x (B, T, d_model) -> q, k, v (B, H, T, D), not turned."""
        heads = (self.n_heads, self.head_dim)
        return (p(x).unflatten(-1, heads).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))

    def _turn(self, z, pos):
        """z (B, H, T, D) at positions pos (B, T) -> z turned by the rotary angles (unchanged without rotary)."""
        return rotate(z.transpose(1, 2), pos).transpose(1, 2) if self.rotary else z

    def _qkv(self, x, pos):
        """x (B, T, d_model) at positions pos (B, T) -> q, k, v (B, H, T, D), q and k turned."""
        q, k, v = self._project(x)
        return self._turn(q, pos), self._turn(k, pos), v

    def _persistent_kv(self):
        """The persistent tokens' keys and values, (H, n_p, D) each, not turned."""
        heads = (self.n_heads, self.head_dim)
        return (p(self.persistent).unflatten(-1, heads).transpose(0, 1) for p in (self.k_proj, self.v_proj))

    def _with_persistent(self, q, q_free, keys, values, mask):
        """Put the persistent keys and values in front of keys and values (B, H, S, D), visible to every query.
        With rotary positions the query and key channels double (see the class docstring) so that one softmax
        scores the turned sequence keys against q and the unturned persistent keys against q_free.
        Returns q, keys, values, mask (B, 1, T, n_p + S) or (T, n_p + S) for ``_attend`` with scale 1/sqrt(D)."""
        B, H, T, _ = q.shape
        k_p, v_p = (z.expand(B, H, self.n_persistent, self.head_dim) for z in self._persistent_kv())
        if self.rotary:
            q = torch.cat([q, q_free], dim=3)  # (B, H, T, 2D)
            keys = torch.cat([keys, torch.zeros_like(keys)], dim=3)  # (B, H, S, 2D)
            k_p = torch.cat([torch.zeros_like(k_p), k_p], dim=3)  # (B, H, n_p, 2D)
        if mask is None:
            mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        always = mask.new_ones(*mask.shape[:-1], self.n_persistent)
        return (q, torch.cat([k_p, keys], dim=2), torch.cat([v_p, values], dim=2),
                torch.cat([always, mask], dim=-1))

    def _attend(self, q, k, v, mask, scale=None):
        """q (B, H, T, D), k and v (B, H, S, D), mask (B, 1, T, S) or (T, S) bool (True = attend), or None for
        plain causal attention with S = T -> o (B, H, T, D). ``scale`` defaults to 1/sqrt(q's width)."""
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, scale=scale)

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
        """Store the new keys and values (B, H, T, D) at slot = position mod C, rebuilding only the blocks
        written; the others stay shared with the old state. Only the last min(T, C) can stay: the earlier ones
        would be overwritten within this same call."""
        B, H, T, D = k.shape
        C, size = self.cache_len, self.block
        keep = min(T, C)
        first, end = qpos[:, T - keep], qpos[:, -1] + 1  # (B,) each: the positions kept are first .. end - 1
        ks, vs, kpos = list(state.k), list(state.v), list(state.kpos)
        for j in sorted(set((qpos[:, T - keep:] % C // size).flatten().tolist())):
            slot = j * size + torch.arange(size, device=k.device)  # (block,)
            p = first[:, None] + (slot - first[:, None]) % C  # (B, block): the kept position that lands in slot
            hit = p < end[:, None]  # (B, block)
            t = (p - qpos[:, :1]).clamp(max=T - 1)  # (B, block): its index in this call (any index where no hit)
            index = t[:, None, :, None].expand(B, H, size, D)
            put = hit[:, None, :, None]
            ks[j] = torch.where(put, k.gather(2, index), ks[j])  # (B, H, block, D)
            vs[j] = torch.where(put, v.gather(2, index), vs[j])
            kpos[j] = torch.where(hit, p, kpos[j])  # (B, block)
        return self.state_type(tuple(ks), tuple(vs), tuple(kpos), state.pos + T)
