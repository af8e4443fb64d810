"""Memory caching (Behrouz et al. 2026, "Memory Caching: RNNs with Growing Memory"): a recurrent mixer whose
memory grows with the sequence, by keeping checkpoints of its state and letting later tokens read them.

The sequence is cut into segments of ``segment_len`` tokens. The inner mixer runs over the whole sequence as
usual (the online memory); at the end of each segment its state is cached, with a summary of the segment
(the mean of W_r x over its tokens). A later token t reads every cached state i by taking one step of the inner
mixer from that state, y_t^(i) = step(x_t, S^(i)) (for a linear-attention memory S^(i), that is S^(i)^T q_t
plus the token's own write), and mixes them with its online output:

    u_t = W_u x_t,   s_t^(i) = u_t . r^(i) / sqrt(d_r),   s_t^(on) = u_t . r_t^(on) / sqrt(d_r)
    y_t = sum_i gamma_t^(i) y_t^(i) + gamma_t^(on) y_t^(on),   gamma_t = softmax(s_t)

with r^(on)_t the mean of W_r x over the current segment up to t. ``aggregation="gated"`` mixes every cached
state (the paper's gated residual memory, with the online memory as one more member); ``"sparse"`` keeps the
``top_k`` best-scoring cached states per token (sparse selective caching). At most ``max_segments`` states are
kept, the oldest dropped first, so the state has fixed shapes and a token costs O(max_segments) inner steps.
The inner mixer's ``read`` takes those steps for a whole segment piece at once: for memories whose step output
is linear in the state (linear attention, GLA, RetNet, the delta rules, mLSTM, Mamba-2) one einsum against the
stacked cache, never a copy of a cached state; for any other mixer the per-token steps, a few tokens at a time.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.components import keep_top_k
from rnnzoo.mixers.registry import build_mixer, register_mixer
from rnnzoo.mixers.state import flatten_state, unflatten_state
from rnnzoo.ops.loop import segment_sizes

AGGREGATIONS = ("gated", "sparse")


class MemoryCacheState(NamedTuple):
    inner: Any  # the inner mixer's online state
    cache: tuple  # every tensor of the inner state, stacked over the slots: (B, max_segments, ...)
    summary: torch.Tensor  # (B, max_segments, d_r), the mean of W_r x over each cached segment
    n_cached: torch.Tensor  # (B,) long: segments cached so far (slot = n % max_segments)
    seg_sum: torch.Tensor  # (B, d_r), sum of W_r x over the current segment
    seg_pos: torch.Tensor  # (B,) long: tokens of the current segment seen so far


@register_mixer("memory_cache", "Memory caching (Behrouz et al. 2026): cache any recurrent mixer's state every "
                                "segment_len tokens; later tokens read the cache through a gated or sparse mix")
class MemoryCache(Mixer):
    """Any registered causal mixer with a cache of its past states (equations in the module docstring).

    Options: ``inner`` (the mixer's name, default 'gla'), ``inner_options`` (a dict passed to it),
    ``segment_len`` (64), ``max_segments`` (16), ``aggregation`` ('gated' or 'sparse'), ``top_k`` (sparse: the
    number of cached states each token reads, default 2), ``d_r`` (the width of the router, default 64).
    """

    def __init__(self, d_model: int, inner: str = "gla", inner_options: dict | None = None, segment_len: int = 64,
                 max_segments: int = 16, aggregation: str = "gated", top_k: int = 2, d_r: int = 64):
        name = "memory_cache"
        for opt, value in (("segment_len", segment_len), ("max_segments", max_segments), ("top_k", top_k),
                           ("d_r", d_r)):
            check_int(name, opt, value)
        check_choice(name, "aggregation", aggregation, AGGREGATIONS)
        if inner_options is not None and not isinstance(inner_options, dict):
            raise ConfigError(f"{name}: inner_options must be a dict of the inner mixer's options, got "
                              f"{inner_options!r}")
        if inner == name:
            raise ConfigError(f"{name}: the inner mixer cannot be memory_cache itself")
        super().__init__(d_model)
        self.mixer = build_mixer(inner, d_model, **(inner_options or {}))
        if not self.mixer.causal:
            raise ConfigError(f"{name}: the inner mixer {inner!r} is not causal; memory caching needs step()")
        self.inner_name, self.segment_len, self.max_segments = inner, segment_len, max_segments
        self.aggregation, self.top_k, self.d_r = aggregation, top_k, d_r
        self.router_r = nn.Linear(d_model, d_r, bias=False)
        self.router_u = nn.Linear(d_model, d_r, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> MemoryCacheState:
        dtype = dtype or self.router_r.weight.dtype
        inner = self.mixer.init_state(batch_size, device, dtype)
        S = self.max_segments
        cache = tuple(t.unsqueeze(1).expand(t.shape[0], S, *t.shape[1:]).contiguous() for t in flatten_state(inner))
        return MemoryCacheState(inner, cache, torch.zeros(batch_size, S, self.d_r, device=device, dtype=dtype),
                                torch.zeros(batch_size, dtype=torch.long, device=device),
                                torch.zeros(batch_size, self.d_r, device=device, dtype=dtype),
                                torch.zeros(batch_size, dtype=torch.long, device=device))

    def _forward(self, x, state):
        if bool((state.seg_pos != state.seg_pos[0]).any()):
            return self._forward_by_steps(x, state)  # rows at different places in their segments
        ys = []
        for piece in x.split(segment_sizes(x.shape[1], int(state.seg_pos[0]), self.segment_len), dim=1):
            y, state = self._segment_piece(piece, state)
            ys.append(y)
        return torch.cat(ys, dim=1), state

    def _segment_piece(self, x, state):
        """x (B, n, d) inside one segment (n = 1 when rows are at different places in theirs): the online pass,
        the cache reads, the mix, and the hand-off to the cache of the rows whose segment the piece ends."""
        B, n, _ = x.shape
        y_on, inner = self.mixer(x, state.inner)  # (B, n, d)
        r = self.router_r(x)  # (B, n, d_r)
        seg_sum = state.seg_sum.unsqueeze(1) + r.cumsum(1)  # (B, n, d_r)
        count = state.seg_pos[:, None] + torch.arange(1, n + 1, device=x.device)  # (B, n)
        y_cached = self._read_cache(x, state)  # (B, m, n, d) or None when nothing is cached
        y = self._mix(self.router_u(x), seg_sum / count.unsqueeze(-1).to(x.dtype), y_on, y_cached, state)
        new = MemoryCacheState(inner, state.cache, state.summary, state.n_cached, seg_sum[:, -1], count[:, -1])
        return y, self._commit(new, count[:, -1] == self.segment_len)

    def _step(self, x_t, state):
        y, state = self._segment_piece(x_t.unsqueeze(1), state)
        return y[:, 0], state

    def _read_cache(self, x, state):
        """One inner step from each of the first m slots for every token, (B, m, n, d), or None with an empty
        cache. Slots fill in order and wrap only once all are full, so the first m = min(max_segments,
        most cached) hold every filled slot of every row; the empty ones among them are masked in ``_mix``."""
        if not bool((state.n_cached > 0).any()):
            return None
        m = min(self.max_segments, int(state.n_cached.max()))
        template = self.mixer.init_state(1, device="meta", dtype=x.dtype)
        return self.mixer.read(x, unflatten_state(template, [c[:, :m] for c in state.cache]))

    def _mix(self, u, r_on, y_on, y_cached, state):
        """u, r_on (B, n, d_r), y_on (B, n, d), y_cached (B, m, n, d) for the first m slots or None -> y (B, n, d)."""
        if y_cached is None:
            return y_on
        m = y_cached.shape[1]
        scale = 1 / math.sqrt(self.d_r)
        s_on = (u * r_on).sum(-1, keepdim=True) * scale  # (B, n, 1)
        s_cached = torch.einsum("bnr,bsr->bns", u, state.summary[:, :m]) * scale  # (B, n, m)
        valid = torch.arange(m, device=u.device) < state.n_cached[:, None]  # (B, m)
        s_cached = s_cached.masked_fill(~valid[:, None, :], -torch.inf)
        if self.aggregation == "sparse":
            s_cached = keep_top_k(s_cached, min(self.top_k, m))
        gamma = torch.softmax(torch.cat([s_on, s_cached], dim=-1), dim=-1)  # (B, n, 1 + m)
        y = gamma[..., :1] * y_on + torch.einsum("bns,bsnd->bnd", gamma[..., 1:], y_cached)
        return y

    def _commit(self, state, ended):
        """Rows whose segment ended (B,) bool: cache the online state and summary, start a new segment."""
        if not bool(ended.any()):
            return state
        slot = torch.nn.functional.one_hot(state.n_cached % self.max_segments, self.max_segments).bool()
        write = slot & ended[:, None]  # (B, S)
        cache = tuple(torch.where(write.reshape(*write.shape, *([1] * (c.dim() - 2))), t.unsqueeze(1), c)
                      for c, t in zip(state.cache, flatten_state(state.inner)))
        summary = torch.where(write[..., None], (state.seg_sum / self.segment_len).unsqueeze(1), state.summary)
        keep = ~ended[:, None]
        return MemoryCacheState(state.inner, cache, summary, state.n_cached + ended.long(),
                                torch.where(keep, state.seg_sum, torch.zeros_like(state.seg_sum)),
                                torch.where(ended, torch.zeros_like(state.seg_pos), state.seg_pos))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, inner={self.inner_name!r}, segment_len={self.segment_len}, "
                f"max_segments={self.max_segments}, aggregation={self.aggregation!r}")
