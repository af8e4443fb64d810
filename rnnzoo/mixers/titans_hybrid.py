"""Titans' long-term memory combined with attention: the three architectures of Behrouz, Zhong and Mirrokni (2025),
"Titans: Learning to Memorize at Test Time", section 4. M is the ``titans`` mixer (its memory MLP is written
at every token and read after the write); attention is the ``transformer`` mixer, with p_1 .. p_Np the learned
persistent tokens whose keys and values every query sees (``n_persistent``).

Memory as a gate (MAG, Eqs. 26-28), two branches on the same input, mixed by a gate:

    y = SW-Attn*(x)   (sliding window, plus the persistent tokens),   m = M(x)
    o = W_o (RMSNorm_y(y) * sigmoid(RMSNorm_m(m)))

"normalise both with learnable vector-valued weights, then the nonlinearity": the gains of the two RMSNorms.

Memory as a layer (MAL, Eqs. 29-31): o = SW-Attn*(M(x)).

Memory as a context (MAC, Eqs. 21-25): the sequence is cut into segments of S = ``segment_len`` tokens. With
M_s the memory where segment s starts, token j of the segment (x_j) reads

    h_j = M_s*(x_j)                                         retrieval without writing (Titans.retrieve)
    y_j = Attn(x_j over [p_1 .. p_Np | h_0 .. h_j | x_0 .. x_j])     full over the persistent tokens, causal
                                                                    over the segment's retrieved and own tokens
    m_j = M_j(y_j)                                          M written with y_0 .. y_j, then read at y_j
    o_j = W_o (RMSNorm_y(y_j) * sigmoid(RMSNorm_m(m_j)))

and M_{s+1} is the memory after the segment's last token. The paper's M_t(y_t) reads the memory after the
whole segment's write; reading after each token's write instead keeps every output causal. The segment's
attention runs on the interleaved sequence h_0, x_0, h_1, x_1, ... (rotary positions 2j and 2j + 1), whose
causal mask is exactly the one above; the outputs at the h's are computed and dropped, twice the queries needed
for the sake of reusing the transformer and its KV cache. The state holds that cache for the current segment
(emptied when a segment ends, so a state at a segment boundary carries nothing from it), the memory, and M_s.

In MAG and MAL the paper also prepends the persistent tokens to the memory's input; here they go to attention
only: before the memory they would just set its starting state, the role of its learned initial weights M_0.

Options shared by the three: ``n_heads`` (of both the attention and the memory, default max(1, d_model // 64)),
``n_persistent`` (0), ``rotary``, and the memory's ``d_mem``, ``n_mem_layers``, ``chunk_size``,
``use_short_conv``, ``conv_size``, ``max_lr``, ``max_grad_norm`` and ``mode`` (see the titans mixer). MAG and
MAL take the attention's ``window`` (512); MAC takes ``segment_len`` (128).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from rnnzoo.mixers.base import Mixer, check_int
from rnnzoo.mixers.components import RMSNorm
from rnnzoo.mixers.registry import build_mixer, register_mixer
from rnnzoo.mixers.state import reset_state
from rnnzoo.mixers.titans import MAX_GRAD_NORM, MAX_LR, NORM_EPS, TitansState
from rnnzoo.ops.loop import segment_sizes


class MAGState(NamedTuple):
    attention: Any  # the transformer's state (its KV cache)
    memory: TitansState


class MALState(NamedTuple):
    memory: TitansState
    attention: Any  # the transformer's state (its KV cache)


class MACState(NamedTuple):
    attention: Any  # the transformer's KV cache over the current segment's (h_j, x_j) pairs; empty between segments
    memory: TitansState  # M after the last token; memory.pos places each row within its segment
    retrieval: tuple  # M_s, the memory's weights where the current segment started


def build_parts(d_model: int, n_heads, n_persistent, rotary, memory_options: dict,
                **attention_options) -> tuple[Mixer, Mixer]:
    """The titans memory and the transformer attention of a hybrid."""
    memory = build_mixer("titans", d_model, n_heads=n_heads, **memory_options)
    attention = build_mixer("transformer", d_model, n_heads=n_heads, rotary=rotary, n_persistent=n_persistent,
                            **attention_options)
    return memory, attention


class MemoryGate(nn.Module):
    """o = W_o (RMSNorm_y(y) * sigmoid(RMSNorm_m(m))) for y, m (..., d_model)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.y_norm = RMSNorm(d_model, eps=NORM_EPS)
        self.m_norm = RMSNorm(d_model, eps=NORM_EPS)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.o_proj(self.y_norm(y) * torch.sigmoid(self.m_norm(m)))


class SlidingWindowHybrid(Mixer):
    """What MAG and MAL share: a titans memory and sliding-window attention, built from the same options, and
    for MAG (``gated``) the gate that mixes them."""

    gated = False

    def __init__(self, d_model: int, n_heads: int | None = None, window: int = 512, n_persistent: int = 0,
                 rotary: bool = True, d_mem: int | None = None, n_mem_layers: int = 2, chunk_size: int = 16,
                 use_short_conv: bool = True, conv_size: int = 4, max_lr: float = MAX_LR,
                 max_grad_norm: float | None = MAX_GRAD_NORM, mode: str = "chunk"):
        super().__init__(d_model)
        memory_options = dict(d_mem=d_mem, n_mem_layers=n_mem_layers, chunk_size=chunk_size,
                              use_short_conv=use_short_conv, conv_size=conv_size, max_lr=max_lr,
                              max_grad_norm=max_grad_norm, mode=mode)
        self.memory, self.attention = build_parts(d_model, n_heads, n_persistent, rotary, memory_options,
                                                  window=window)
        if self.gated:
            self.gate = MemoryGate(d_model)
        self.window, self.n_persistent = window, n_persistent

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}, n_persistent={self.n_persistent}"


@register_mixer("titans_mag", "Titans memory as a gate (Behrouz et al. 2025): sliding-window attention and the "
                              "titans memory side by side, mixed by a sigmoid gate")
class TitansMAG(SlidingWindowHybrid):
    """MAG: y = SW-Attn*(x), m = M(x), o = W_o (RMSNorm(y) * sigmoid(RMSNorm(m))) (module docstring)."""

    gated = True

    def init_state(self, batch_size, device=None, dtype=None) -> MAGState:
        return MAGState(self.attention.init_state(batch_size, device, dtype),
                        self.memory.init_state(batch_size, device, dtype))

    def _forward(self, x, state):
        y, attention = self.attention(x, state.attention)  # (B, T, d_model)
        m, memory = self.memory(x, state.memory)  # (B, T, d_model)
        return self.gate(y, m), MAGState(attention, memory)

    def _step(self, x_t, state):
        y, attention = self.attention.step(x_t, state.attention)  # (B, d_model)
        m, memory = self.memory.step(x_t, state.memory)  # (B, d_model)
        return self.gate(y, m), MAGState(attention, memory)


@register_mixer("titans_mal", "Titans memory as a layer (Behrouz et al. 2025): the titans memory, then "
                              "sliding-window attention over its output")
class TitansMAL(SlidingWindowHybrid):
    """MAL: o = SW-Attn*(M(x)) (module docstring)."""

    def init_state(self, batch_size, device=None, dtype=None) -> MALState:
        return MALState(self.memory.init_state(batch_size, device, dtype),
                        self.attention.init_state(batch_size, device, dtype))

    def _forward(self, x, state):
        m, memory = self.memory(x, state.memory)  # (B, T, d_model)
        y, attention = self.attention(m, state.attention)  # (B, T, d_model)
        return y, MALState(memory, attention)

    def _step(self, x_t, state):
        m, memory = self.memory.step(x_t, state.memory)  # (B, d_model)
        y, attention = self.attention.step(m, state.attention)  # (B, d_model)
        return y, MALState(memory, attention)


@register_mixer("titans_mac", "Titans memory as a context (Behrouz et al. 2025): per segment, attention over "
                              "persistent tokens, memory retrievals and the segment; the memory learns from its output")
class TitansMAC(Mixer):
    """MAC: segment attention with the memory's retrievals as context, gated by the memory (module docstring).

    A call's tokens run one segment piece at a time; when the rows of a batch sit at different places in their
    segments (after a padded batch) they run one token at a time.
    """

    def __init__(self, d_model: int, n_heads: int | None = None, segment_len: int = 128, n_persistent: int = 0,
                 rotary: bool = True, d_mem: int | None = None, n_mem_layers: int = 2, chunk_size: int = 16,
                 use_short_conv: bool = True, conv_size: int = 4, max_lr: float = MAX_LR,
                 max_grad_norm: float | None = MAX_GRAD_NORM, mode: str = "chunk"):
        super().__init__(d_model)
        check_int("titans_mac", "segment_len", segment_len)
        memory_options = dict(d_mem=d_mem, n_mem_layers=n_mem_layers, chunk_size=chunk_size,
                              use_short_conv=use_short_conv, conv_size=conv_size, max_lr=max_lr,
                              max_grad_norm=max_grad_norm, mode=mode)
        self.memory, self.attention = build_parts(d_model, n_heads, n_persistent, rotary, memory_options,
                                                  max_len=2 * segment_len)
        self.gate = MemoryGate(d_model)
        self.segment_len, self.n_persistent = segment_len, n_persistent

    def init_state(self, batch_size, device=None, dtype=None) -> MACState:
        memory = self.memory.init_state(batch_size, device, dtype)
        return MACState(self.attention.init_state(batch_size, device, dtype), memory, memory.weights)

    def _forward(self, x, state):
        offsets = (state.memory.pos % self.segment_len).unique().tolist()
        if len(offsets) > 1:
            return self._forward_by_steps(x, state)
        ys = []
        for piece in x.split(segment_sizes(x.shape[1], offsets[0] if offsets else 0, self.segment_len), dim=1):
            y, state = self._segment_piece(piece, state)
            ys.append(y)
        return torch.cat(ys, dim=1), state

    def _step(self, x_t, state):
        y, state = self._segment_piece(x_t.unsqueeze(1), state)  # (B, 1, d_model)
        return y.squeeze(1), state

    def _segment_piece(self, x, state):
        """x (B, n, d_model), inside one segment for every row: retrieve, attend, write the memory, gate. Rows
        whose segment this piece ends start the next one with an empty KV cache and M_s = their memory."""
        B, n, d = x.shape
        h = self.memory.retrieve(x, state.retrieval)  # (B, n, d)
        pairs = torch.stack([h, x], dim=2).reshape(B, 2 * n, d)  # h_0, x_0, h_1, x_1, ...
        a, attention = self.attention(pairs, state.attention)  # (B, 2n, d)
        y = a[:, 1::2]  # (B, n, d): the outputs at the tokens
        m, memory = self.memory(y, state.memory)  # (B, n, d)
        ended = memory.pos % self.segment_len == 0  # (B,)
        retrieval = state.retrieval
        if bool(ended.any()):
            attention = reset_state(attention, ended, self.attention.init_state(B, x.device, x.dtype))
            retrieval = reset_state(retrieval, ended, memory.weights)
        return self.gate(y, m), MACState(attention, memory, retrieval)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, segment_len={self.segment_len}, n_persistent={self.n_persistent}"
