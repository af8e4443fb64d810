"""DeltaNet, Gated DeltaNet and DeltaProduct: linear attention whose memory is written with the delta rule.

The three mixers are one layer around the ops in ``rnnzoo.ops.delta``. Per head, with key width K, value
width V and n_h delta steps per token (j = 0 .. n_h - 1):

    q_t  = l2norm(SiLU(ShortConv(W_q x)_t))              (B, T, H, K)
    k_tj = l2norm(SiLU(ShortConv(W_kj x)_t))             (B, T, n_h, H, K)
    v_tj = SiLU(ShortConv(W_vj x)_t)                     (B, T, n_h, H, V)
    beta_tj = sigmoid(w_bj . x_t), or 2 sigmoid(.) with allow_neg_eigval
    g_t  = -exp(A_log) softplus(w_a . x_t + dt_bias)     (forget gate; g_t = 0 without one)
    S_t  = exp(g_t) S_{t-1}, then S <- (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T for each j
    o_t  = RMSNorm(S_t^T q_t / sqrt(K)) [* SiLU(W_g x_t)],    y_t = W_o (o_t of every head, concatenated)

DeltaNet is n_h = 1 without a forget gate, Gated DeltaNet n_h = 1 with one, DeltaProduct any n_h. The short
convolutions are depthwise, so every key, query and value channel has its own filter. With unit keys the
transition I - beta k k^T has eigenvalues 1 and 1 - beta: beta in (0, 1) keeps them in [0, 1], beta in
(0, 2) gives (-1, 1), the negative range that lets these layers track state (parity, permutations).
``forward`` runs the chunkwise op (``mode="chunk"``) or its reference loop (``mode="recurrent"``); ``step``
spells out one token in plain torch.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int, token_rows
from rnnzoo.mixers.components import RMSNorm, ShortConv, conv_silu, dt_bias_init
from rnnzoo.mixers.linear_attention import check_heads
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.delta import delta_product, delta_rule, gated_delta_rule

NORM_EPS = 1e-5  # the output RMSNorm's epsilon (fla's norm_eps)
L2_EPS = 1e-6  # keeps the key and query normalisation smooth at zero


class DeltaNetState(NamedTuple):
    S: torch.Tensor  # (B, H, K, V), each head's memory
    conv: tuple  # windows (B, conv_size - 1, width) of the q, k, v short convolutions; () without them


class GatedDeltaNetState(NamedTuple):
    S: torch.Tensor  # (B, H, K, V)
    conv: tuple  # as in DeltaNetState


class DeltaProductState(NamedTuple):
    S: torch.Tensor  # (B, H, K, V)
    conv: tuple  # as in DeltaNetState; the k and v windows hold all n_h keys and values


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| over the last axis (eps inside the root)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2_EPS)


class DeltaLayer(Mixer):
    """The layer the three mixers share (equations in the module docstring). Subclasses set the defaults,
    the state type and the op in ``_op``."""

    state_type: type

    def __init__(self, name: str, d_model: int, n_heads: int | None, expand_k: float, expand_v: float,
                 n_householder: int, use_forget_gate: bool, use_output_gate: bool, allow_neg_eigval: bool,
                 use_short_conv: bool, conv_size: int, mode: str, chunk_size: int):
        super().__init__(d_model)
        H, K, V = check_heads(name, d_model, n_heads, expand_k, expand_v)
        check_int(name, "n_householder", n_householder)
        check_int(name, "conv_size", conv_size, minimum=2)
        check_int(name, "chunk_size", chunk_size)
        check_choice(name, "mode", mode, ("chunk", "recurrent"))
        for opt in ("use_forget_gate", "use_output_gate", "allow_neg_eigval", "use_short_conv"):
            check_bool(name, opt, locals()[opt])
        n = n_householder
        self.n_heads, self.head_k, self.head_v, self.n_householder = H, K, V, n
        self.allow_neg_eigval, self.mode, self.chunk_size = allow_neg_eigval, mode, chunk_size
        self.scale = K ** -0.5

        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, n * H * K, bias=False)
        self.v_proj = nn.Linear(d_model, n * H * V, bias=False)
        self.b_proj = nn.Linear(d_model, n * H, bias=False)
        self.q_conv = ShortConv(H * K, conv_size, bias=False) if use_short_conv else None
        self.k_conv = ShortConv(n * H * K, conv_size, bias=False) if use_short_conv else None
        self.v_conv = ShortConv(n * H * V, conv_size, bias=False) if use_short_conv else None
        self.a_proj = nn.Linear(d_model, H, bias=False) if use_forget_gate else None
        if use_forget_gate:
            # Mamba-2's parametrisation: decay rate A in [1, 16], softplus(dt_bias) = dt log-uniform in [1e-3, 0.1]
            self.A_log = nn.Parameter(torch.empty(H).uniform_(1, 16).log())
            self.dt_bias = nn.Parameter(dt_bias_init(H, 1e-3, 0.1))
        self.g_proj = nn.Linear(d_model, H * V, bias=False) if use_output_gate else None
        self.o_norm = RMSNorm(V, eps=NORM_EPS)
        self.o_proj = nn.Linear(H * V, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None):
        dtype = dtype or self.o_proj.weight.dtype
        S = torch.zeros(batch_size, self.n_heads, self.head_k, self.head_v, device=device, dtype=dtype)
        convs = () if self.q_conv is None else (self.q_conv, self.k_conv, self.v_conv)
        return self.state_type(S, tuple(c.init_state(batch_size, device, dtype) for c in convs))

    def _forward(self, x, state):
        q, k, v, beta, g, conv = self._inputs(x, state.conv)
        o, S = self._op(q, k, v, beta, g, state.S)  # (B, T, H, V), (B, H, K, V)
        return self._output(o, x), self.state_type(S, conv)

    def _step(self, x_t, state):
        q, k, v, beta, g, conv = self._inputs(x_t, state.conv, step=True)  # q (B, H, K), k (B, n_h, H, K)
        S = state.S  # (B, H, K, V)
        if g is not None:
            S = g.exp()[..., None, None] * S
        for j in range(self.n_householder):
            b = beta[:, j, :, None, None]  # (B, H, 1, 1)
            k_j = k[:, j, :, :, None]  # (B, H, K, 1)
            kS = (k_j * S).sum(2, keepdim=True)  # (B, H, 1, V), k^T S
            S = S - b * k_j * kS + b * k_j * v[:, j, :, None, :]  # (B, H, K, V)
        o = (self.scale * q[..., None] * S).sum(2)  # (B, H, V), S^T q scaled
        return self._output(o, x_t), self.state_type(S, conv)

    def read(self, x, states):
        """``Mixer.read`` without copying the memories. The step's S_t^T q is linear in the old S: undoing the
        writes last first, S_j^T q_j = S_{j-1}^T q_{j-1} + beta_j (k_j . q_j) v_j with
        q_{j-1} = q_j - beta_j (k_j . q_j) k_j, and S_0 = exp(g) S. The inputs depend on each slot's conv
        windows, so they run on B S n rows; then one einsum reads every slot.
        x (B, n, d_model), states.S (B, S, H, K, V) -> y (B, S, n, d_model)."""
        B, n, _ = x.shape
        slots = states.S.shape[1]
        q, k, v, beta, g, _ = self._inputs(*token_rows(x, states.conv, slots), step=True)  # rows R = B S n
        o = 0
        for j in reversed(range(self.n_householder)):
            kq = beta[:, j, :, None] * (k[:, j] * q).sum(-1, keepdim=True)  # (R, H, 1)
            o, q = o + kq * v[:, j], q - kq * k[:, j]  # (R, H, V), (R, H, K)
        if g is not None:
            q = g.exp()[..., None] * q
        read = torch.einsum("bsnhk,bshkv->bsnhv", q.unflatten(0, (B, slots, n)), states.S)  # (B, S, n, H, V)
        return self._output(self.scale * (read + o.unflatten(0, (B, slots, n))), x.unsqueeze(1))

    def _op(self, q, k, v, beta, g, S):
        """The layouts of ``_inputs`` with S (B, H, K, V) -> o (B, T, H, V) and the final S."""
        raise NotImplementedError

    def _inputs(self, x, conv, step=False):
        """x (B, T, d_model), or x_t (B, d_model) with step=True; ``...`` below is (B, T) or (B,).

        Returns q (..., H, K), k (..., n_h, H, K), v (..., n_h, H, V), beta (..., n_h, H), the log-decay g
        (..., H) or None without a forget gate, and the short convolutions' new windows.
        """
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (..., H*K), (..., n_h*H*K), (..., n_h*H*V)
        convs = () if self.q_conv is None else (self.q_conv, self.k_conv, self.v_conv)
        (q, k, v), conv = conv_silu(convs, (q, k, v), conv, step)
        H, K, V, n = self.n_heads, self.head_k, self.head_v, self.n_householder
        q = l2norm(q.unflatten(-1, (H, K)))  # (..., H, K)
        k = l2norm(k.unflatten(-1, (n, H, K)))  # (..., n_h, H, K)
        v = v.unflatten(-1, (n, H, V))  # (..., n_h, H, V)
        beta = self.b_proj(x).sigmoid().unflatten(-1, (n, H))  # (..., n_h, H)
        if self.allow_neg_eigval:
            beta = 2 * beta  # eigenvalue 1 - beta of I - beta k k^T now in (-1, 1)
        g = None
        if self.a_proj is not None:
            g = -self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)  # (..., H), <= 0
        return q, k, v, beta, g, conv

    def _output(self, o, x):
        """o (..., H, V) -> y (..., d_model): per-head RMSNorm, times SiLU(W_g x) with the output gate."""
        o = self.o_norm(o)
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x).unflatten(-1, (self.n_heads, self.head_v)))
        return self.o_proj(o.flatten(-2))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, n_heads={self.n_heads}, head_k={self.head_k}, head_v={self.head_v}, "
                f"allow_neg_eigval={self.allow_neg_eigval}, mode={self.mode!r}")


@register_mixer("deltanet", "DeltaNet (Schlag et al. 2021; Yang et al. 2024): linear attention written with the "
                            "delta rule, short convs, L2-normalised q and k")
class DeltaNet(DeltaLayer):
    """DeltaNet, in the layer of Yang et al. (2024), "Parallelizing Linear Transformers with the Delta Rule
    over Sequence Length" (the delta rule of Schlag et al. 2021, "Linear Transformers Are Secretly Fast
    Weight Programmers"):

        S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,   o_t = RMSNorm(S_t^T q_t / sqrt(K))

    per head, with q, k, v and beta as in the module docstring, and y_t = W_o o_t (o_t * SiLU(W_g x_t) with
    ``use_output_gate``).

    Options: ``n_heads`` (default max(1, d_model // 64)); ``expand_k``, ``expand_v``: all heads' key and value
    widths are expand * d_model, split evenly; ``use_output_gate``; ``allow_neg_eigval`` (Grazzi et al.
    2024, "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues"): beta = 2 sigmoid(.), so the
    transition's eigenvalue 1 - beta along k lies in (-1, 1); ``use_short_conv`` (False: SiLU of the
    projections instead); ``conv_size``; ``mode`` ('chunk' or 'recurrent'); ``chunk_size`` (chunk mode).
    """

    state_type = DeltaNetState

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 1.0, expand_v: float = 1.0,
                 use_output_gate: bool = False, allow_neg_eigval: bool = False, use_short_conv: bool = True,
                 conv_size: int = 4, mode: str = "chunk", chunk_size: int = 64):
        super().__init__("deltanet", d_model, n_heads, expand_k, expand_v, 1, False, use_output_gate,
                         allow_neg_eigval, use_short_conv, conv_size, mode, chunk_size)

    def _op(self, q, k, v, beta, g, S):
        return delta_rule(q, k[:, :, 0], v[:, :, 0], beta[:, :, 0], scale=self.scale, initial_state=S,
                          mode=self.mode, chunk_size=self.chunk_size)


@register_mixer("gated_deltanet", "Gated DeltaNet (Yang et al. 2024): the delta rule with a Mamba-2 style "
                                  "decay gate and a SiLU output gate")
class GatedDeltaNet(DeltaLayer):
    """Gated DeltaNet (Yang, Kautz and Hatamizadeh 2024, "Gated Delta Networks: Improving Mamba2 with Delta
    Rule"):

        S_t = exp(g_t) (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T
        g_t = -exp(A_log) softplus(w_a . x_t + dt_bias)
        o_t = RMSNorm(S_t^T q_t / sqrt(K)) * SiLU(W_g x_t),   y_t = W_o o_t

    per head (fla's FusedRMSNormGated). A starts uniform in [1, 16] and softplus(dt_bias) log-uniform in
    [1e-3, 0.1], as in Mamba-2.

    Options as in DeltaNet; the defaults follow fla's layer: expand_k = 0.75, expand_v = 1.5 (its head_dim
    256, expand_v 2 at width 2048) and ``use_output_gate=True``.
    """

    state_type = GatedDeltaNetState

    def __init__(self, d_model: int, n_heads: int | None = None, expand_k: float = 0.75, expand_v: float = 1.5,
                 use_output_gate: bool = True, allow_neg_eigval: bool = False, use_short_conv: bool = True,
                 conv_size: int = 4, mode: str = "chunk", chunk_size: int = 64):
        super().__init__("gated_deltanet", d_model, n_heads, expand_k, expand_v, 1, True, use_output_gate,
                         allow_neg_eigval, use_short_conv, conv_size, mode, chunk_size)

    def _op(self, q, k, v, beta, g, S):
        return gated_delta_rule(q, k[:, :, 0], v[:, :, 0], g, beta[:, :, 0], scale=self.scale, initial_state=S,
                                mode=self.mode, chunk_size=self.chunk_size)


@register_mixer("deltaproduct", "DeltaProduct (Siems et al. 2025): n_householder delta-rule steps per token, "
                                "optional forget gate, negative eigenvalues")
class DeltaProduct(DeltaLayer):
    """DeltaProduct (Siems et al. 2025, "DeltaProduct: Improving State-Tracking in Linear RNNs via Householder
    Products"): n_h = ``n_householder`` keys, values and betas per token, each key with its own short conv
    and L2 norm, so the transition is a product of n_h generalised Householder matrices:

        S_t = exp(g_t) prod_j (I - beta_tj k_tj k_tj^T) S_{t-1} + (the n_h writes beta_tj k_tj v_tj^T,
              each carried through the later factors of the same token)
        o_t = RMSNorm(S_t^T q_t / sqrt(K)) [* SiLU(W_g x_t)],   y_t = W_o o_t

    Options as in GatedDeltaNet, plus ``n_householder`` and ``use_forget_gate`` (g_t as in Gated DeltaNet;
    False: g_t = 0). Defaults follow fla's GatedDeltaProduct: n_householder = 2, forget gate, output gate
    and ``allow_neg_eigval`` on.
    """

    state_type = DeltaProductState

    def __init__(self, d_model: int, n_heads: int | None = None, n_householder: int = 2, expand_k: float = 0.75,
                 expand_v: float = 1.5, use_forget_gate: bool = True, use_output_gate: bool = True,
                 allow_neg_eigval: bool = True, use_short_conv: bool = True, conv_size: int = 4,
                 mode: str = "chunk", chunk_size: int = 64):
        super().__init__("deltaproduct", d_model, n_heads, expand_k, expand_v, n_householder, use_forget_gate,
                         use_output_gate, allow_neg_eigval, use_short_conv, conv_size, mode, chunk_size)

    def _op(self, q, k, v, beta, g, S):
        return delta_product(q, k, v, beta, g, scale=self.scale, initial_state=S, mode=self.mode,
                             chunk_size=self.chunk_size)
