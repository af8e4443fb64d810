"""LM2's memory module (Kang et al. 2025, "LM2: Large Memory Models", arXiv 2502.06049) as a mixer.

A bank of N memory slots of width D is the state. Each token reads the bank by cross-attention, adds the gated read
to its own stream, and then writes the bank through an input and a forget gate. Per token t, with x_t (d_model)
and the bank M_t (N, D) left by the tokens before it:

    q_t = W_Q x_t,   K_t = M_t W_K^T,   V_t = M_t W_V^T              (D), (N, D), (N, D): row r from slot r
    a_t = softmax(K_t q_t / sqrt(D))                                  (N,), over the top_k largest scores if set
    e_t = V_t^T a_t                                                   (D,)  the read, E_mem
    g_out = sigmoid(W_out e_t),   y_t = x_t + W_o (g_out * e_t)      E_out = E_attn + g_out E_mem
    g_in = sigmoid(W_in x_t),     g_forget = sigmoid(W_forget e_t)   (D,)
    M_{t+1} = g_in * tanh(e_t) + g_forget * M_t                       the (D,) terms broadcast over the N slots

Reading of the paper. Section 2 writes the bank as N slots of d x d identity matrices and the read E_mem, like the
token stream it is added to, as one d-vector per token; the update M_{t+1} = g_in tanh(E_mem) + g_forget M_t adds
that vector to the bank. Here a slot is a vector of width D = ``d_mem`` (d_model by default, as in the paper), the
identity start is slot r = row r of I (rows past D, when N > D, start random), and the token's write is the same
for every slot, so slots differ only by what they held before, which the forget gates fade. g_in comes from the token,
g_forget and g_out from the read, as in the paper. E_attn, the self-attention output the paper adds the read to,
is this mixer's input stream; W_o maps width D to d_model and exists only when D != d_model.

With ``window`` set the mixer is the paper's whole decoder layer: E_attn is causal sliding-window attention over the
input (the registered "transformer" mixer with that window, inside this mixer's state) and y_t = E_attn_t +
W_o (g_out * e_t); without it, E_attn is the input stream itself (y_t = x_t + ...), for stacking after attention.

Granularity: t counts tokens. The paper masks the read causally so that no token sees memory written after it;
running the read-then-write per token is exactly that, so step() and forward() agree for any split of the text.

Two forms compute the same thing (``mode``):

* 'reference' applies the equations above token by token (``step`` spells out one token the same way).
* 'fused' uses two facts. The keys and values are linear in M, so K_t q_t = M_t (W_K^T q_t) and
  e_t = W_V (M_t^T a_t): the projections of the whole sequence run before the loop. And since the write is the
  same for every slot, M_t = P_t * M_s + c_t with P_t the product of the forget gates since the start state M_s
  and c_t a D-vector (c <- g_in tanh(e) + g_forget c, P <- g_forget P); c_t . q_t adds the same to every slot's
  score, which softmax (and top-k) ignore. The loop carries only P and c, so training keeps O(T D) per row for
  the backward pass instead of O(T N D), and the bank is rebuilt once at the end.

The update is not linear in M (the attention weights and g_forget depend on it), so there is no parallel scan.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_input, check_int
from rnnzoo.mixers.components import keep_top_k
from rnnzoo.mixers.registry import build_mixer, register_mixer

MODES = ("fused", "reference")


class LM2State(NamedTuple):
    memory: torch.Tensor  # (B, N, D): the bank, one slot per row


class LM2AttentionState(NamedTuple):
    memory: torch.Tensor  # (B, N, D)
    attention: object  # the sliding-window attention's KV cache


class LM2Gates(NamedTuple):
    g_in: torch.Tensor  # (B, T, D)
    g_forget: torch.Tensor  # (B, T, D)
    g_out: torch.Tensor  # (B, T, D)


def identity_like(n_slots: int, width: int) -> torch.Tensor:
    """(N, D): slot r is row r of the identity; slots past D (N > D) are random with norm about 1."""
    bank = torch.eye(n_slots, width)
    if n_slots > width:
        bank[width:] = torch.randn(n_slots - width, width) * width ** -0.5
    return bank


def attend(scores: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """softmax over the last axis, restricted to the ``top_k`` largest scores (ties with the k-th kept)."""
    return (scores if top_k is None else keep_top_k(scores, top_k)).softmax(-1)


@register_mixer("lm2", "LM2 memory module (Kang et al. 2025): a slot memory read by cross-attention, added to the "
                       "stream through an output gate, written through input and forget gates")
class LM2(Mixer):
    """The memory module of LM2 (equations, the reading of the paper and the two forms in the module docstring).

    Options: ``n_slots`` (N); ``d_mem`` (D, the slot width; default d_model); ``top_k`` (read only the k slots
    with the largest scores; None reads all N); ``learn_memory`` (True: the starting bank is a parameter,
    initialised identity-like; False: it stays fixed); ``mode`` ('fused' or 'reference'); ``window`` (None, or
    the sliding window of the attention that gives E_attn, with ``n_heads`` heads: the paper's layer).
    """

    def __init__(self, d_model: int, n_slots: int = 16, d_mem: int | None = None, top_k: int | None = None,
                 learn_memory: bool = True, mode: str = "fused", window: int | None = None,
                 n_heads: int | None = None):
        name = "lm2"
        check_int(name, "n_slots", n_slots)
        d_mem = d_model if d_mem is None else d_mem
        check_int(name, "d_mem", d_mem)
        if top_k is not None:
            check_int(name, "top_k", top_k)
            if top_k > n_slots:
                raise ConfigError(f"lm2: top_k={top_k} exceeds n_slots={n_slots}; use top_k <= n_slots or None")
        check_bool(name, "learn_memory", learn_memory)
        check_choice(name, "mode", mode, MODES)
        if window is None and n_heads is not None:
            raise ConfigError("lm2: n_heads is the attention's, which only exists with window set")
        super().__init__(d_model)
        self.n_slots, self.d_mem, self.top_k, self.mode = n_slots, d_mem, top_k, mode
        self.scale = d_mem ** -0.5
        bank = identity_like(n_slots, d_mem)
        if learn_memory:
            self.memory = nn.Parameter(bank)
        else:
            self.register_buffer("memory", bank)
        self.q_proj = nn.Linear(d_model, d_mem, bias=False)
        self.k_proj = nn.Linear(d_mem, d_mem, bias=False)
        self.v_proj = nn.Linear(d_mem, d_mem, bias=False)
        self.in_gate = nn.Linear(d_model, d_mem)
        self.forget_gate = nn.Linear(d_mem, d_mem)
        nn.init.ones_(self.forget_gate.bias)  # not set by the paper; as in LSTMs, keep most of the memory at first
        self.out_gate = nn.Linear(d_mem, d_mem)
        self.o_proj = nn.Linear(d_mem, d_model, bias=False) if d_mem != d_model else None
        self.attention = None if window is None else build_mixer("transformer", d_model, n_heads=n_heads,
                                                                 window=window)

    def init_state(self, batch_size, device=None, dtype=None) -> LM2State | LM2AttentionState:
        bank = self.memory.to(device=device, dtype=dtype)  # keeps the graph to a learned bank
        bank = bank.unsqueeze(0).repeat(batch_size, 1, 1)
        if self.attention is None:
            return LM2State(bank)
        return LM2AttentionState(bank, self.attention.init_state(batch_size, device, dtype))

    def _forward(self, x, state):
        if self.mode == "reference":
            e, _, _, memory = self._reference(x, state.memory)
        else:
            e, memory = self._fused(x, state.memory)
        if self.attention is None:
            return self._output(x, e), LM2State(memory)
        stream, attention = self.attention(x, state.attention)  # (B, T, d_model)
        return self._output(stream, e), LM2AttentionState(memory, attention)

    def _step(self, x_t, state):
        e, _, _, memory = self._read_write(x_t, state.memory)
        if self.attention is None:
            return self._output(x_t, e), LM2State(memory)
        stream, attention = self.attention.step(x_t, state.attention)  # (B, d_model)
        return self._output(stream, e), LM2AttentionState(memory, attention)

    def gates(self, x: torch.Tensor, state: LM2State | None = None) -> LM2Gates:
        """The gates each token of x (B, T, d_model) opens, from the reference form: each (B, T, D)."""
        check_input(x, 3, self.d_model, type(self).__name__)
        if x.shape[1] == 0:
            return LM2Gates(*(x.new_zeros(x.shape[0], 0, self.d_mem) for _ in range(3)))
        e, g_in, g_forget, _ = self._reference(x, self._checked_state(state, x).memory)
        return LM2Gates(g_in, g_forget, torch.sigmoid(self.out_gate(e)))

    def _read_write(self, x_t, memory):
        """One token: x_t (B, d_model), memory (B, N, D) -> the read e, g_in, g_forget (B, D) and the new bank."""
        q = self.q_proj(x_t)  # (B, D)
        k, v = self.k_proj(memory), self.v_proj(memory)  # (B, N, D)
        a = attend(torch.einsum("bnd,bd->bn", k, q) * self.scale, self.top_k)  # (B, N)
        e = torch.einsum("bn,bnd->bd", a, v)  # (B, D)
        g_in = torch.sigmoid(self.in_gate(x_t))  # (B, D)
        g_forget = torch.sigmoid(self.forget_gate(e))  # (B, D)
        memory = g_in.unsqueeze(1) * torch.tanh(e).unsqueeze(1) + g_forget.unsqueeze(1) * memory  # (B, N, D)
        return e, g_in, g_forget, memory

    def _reference(self, x, memory):
        """x (B, T, d_model) token by token -> the reads, g_in, g_forget (B, T, D) and the final bank."""
        es, g_ins, g_forgets = [], [], []
        for x_t in x.unbind(1):  # not x[:, t], whose backward writes a full-size zero gradient per step
            e, g_in, g_forget, memory = self._read_write(x_t, memory)
            es.append(e)
            g_ins.append(g_in)
            g_forgets.append(g_forget)
        return torch.stack(es, 1), torch.stack(g_ins, 1), torch.stack(g_forgets, 1), memory

    def _fused(self, x, memory):
        """The same as ``_reference`` (reads and final bank) with the bank kept as P * memory + c (module docstring)."""
        qk = self.q_proj(x) @ self.k_proj.weight * self.scale  # (B, T, D): W_K^T q_t / sqrt(D)
        g_in = torch.sigmoid(self.in_gate(x))  # (B, T, D)
        B, _, D = g_in.shape
        P, c = x.new_ones(B, D), x.new_zeros(B, D)
        es = []
        for qk_t, g_in_t in zip(qk.unbind(1), g_in.unbind(1)):
            a = attend(torch.bmm(memory, (P * qk_t).unsqueeze(-1)).squeeze(-1), self.top_k)  # (B, N)
            read = P * torch.bmm(a.unsqueeze(1), memory).squeeze(1) + c  # (B, D): M_t^T a, rows of a sum to 1
            e = self.v_proj(read)  # (B, D)
            g_forget = torch.sigmoid(self.forget_gate(e))  # (B, D)
            c = g_in_t * torch.tanh(e) + g_forget * c
            P = g_forget * P
            es.append(e)
        return torch.stack(es, 1), P.unsqueeze(1) * memory + c.unsqueeze(1)

    def _output(self, x, e):
        """E_attn x (..., d_model), the reads e (..., D) -> x + W_o (sigmoid(W_out e) * e)."""
        gated = torch.sigmoid(self.out_gate(e)) * e  # (..., D)
        return x + (gated if self.o_proj is None else self.o_proj(gated))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, n_slots={self.n_slots}, d_mem={self.d_mem}, top_k={self.top_k}, "
                f"mode={self.mode!r}, window={None if self.attention is None else self.attention.window}")
