"""Titans' neural long-term memory as a sequence layer: the LMM variant of Behrouz, Zhong and Mirrokni (2025),
"Titans: Learning to Memorize at Test Time", section 4.3 ("memory without attention").

Per head, with the memory an MLP M_t (``n_mem_layers`` layers, hidden width ``d_mem``) whose weights are the
state, trained at test time on the associative loss ||M(k_t) - v_t||^2 (the op in ``rnnzoo.ops.titans``):

    q_t = l2norm(SiLU(ShortConv(W_q x)_t)),  k_t = l2norm(SiLU(ShortConv(W_k x)_t)),  v_t = SiLU(ShortConv(W_v x)_t)
    eta_t, alpha_t = sigmoid(W_eta x_t), sigmoid(W_alpha x_t),   theta_t = max_lr sigmoid(W_theta x_t)   (B, T, H) each
    S_t = eta_t S_{t-1} - theta_t grad ||M(k_t) - v_t||^2,   M_t = (1 - alpha_t) M_{t-1} + S_t
    o_t = M_t(q_t),   y_t = W_o (RMSNorm(o_t) * SiLU(W_g x_t))

The gradient of token t is taken at the weights where its chunk of ``chunk_size`` tokens starts (the paper's
mini-batch form; chunk_size = 1 is plain online gradient descent), and retrieval reads M_t, after token t's
update, as in the paper's read-after-write recurrence (its Eq. 5-6). Chunks are counted from the start of the
sequence, so the state carries the step count and the anchor weights besides M_t and S_t; a batch whose rows
sit at different places in their chunks is run in groups of rows that share one. The memory's initial
weights M_0 are parameters, learned by the outer loop: an MLP that starts at zero never moves.

The paper's test-time descent is unstable with an MLP memory: the gradient a layer's weights get grows with
the other layer's weights, so a large step makes the next gradient larger, and momentum multiplies a step by up
to 1 / (1 - eta). In the character LM benchmark the MAL hybrid's theta reached 0.08 with eta near 0.98 after 36
training steps and the memory went from 1 to NaN within one 128-token batch. Two bounds are offered:

- ``max_grad_norm`` (default 1): each token's gradient, its norm taken over all the memory's layers, is
  clipped to this norm before it enters the momentum (a scale on that token's theta, so the chunked form is
  unchanged). That breaks the feedback: the weights can then grow only polynomially in the tokens read (the
  momentum at most linearly, the weights at most quadratically), not exponentially. None is the paper's
  unclipped update.
- ``max_lr`` (default 1, the paper's gate) bounds theta_t = max_lr * sigmoid(.). A cap of 0.01 alone did not
  stop the hybrids diverging (momentum made up the step), and where the state is carried through a long text
  a capped update cannot hold the weights against the forgetting gate: a layer's memory decayed towards zero,
  where a two-layer MLP has no gradient.

The benchmark's README section has the numbers.

The combinations with attention (memory as a context, a gate, a layer: MAC, MAG, MAL) are in titans_hybrid.py;
they read the memory without writing it through ``retrieve``.

Left for later:
- gates that are functions of the chunk instead of the token, and the memory variants of the paper's section
  5.5 (residual connections or other architectures inside M).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.mixers.base import Mixer, check_bool, check_choice, check_int, check_real
from rnnzoo.mixers.components import RMSNorm, ShortConv, conv_silu
from rnnzoo.mixers.deltanet import l2norm
from rnnzoo.mixers.linear_attention import check_heads
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.mixers.state import flatten_state, select_state, unflatten_state
from rnnzoo.ops.titans import MemoryState, memory_step, mlp, titans_memory

NORM_EPS = 1e-5
# Gates at the start of training: a slow inner learning rate (at most half of max_lr), a long momentum and
# little forgetting.
THETA_INIT, ETA_INIT, ALPHA_INIT = 0.01, 0.9, 0.01
MAX_LR = 1.0
MAX_GRAD_NORM = 1.0


class TitansState(NamedTuple):
    weights: tuple  # the memory M_t: n_mem_layers tensors (B, H, d_l, d_{l-1})
    momentum: tuple  # the surprise S_t, same shapes
    anchor: tuple  # the weights where the current chunk started, same shapes
    pos: torch.Tensor  # (B,) long: tokens read, which places each row within its chunk
    conv: tuple  # windows (B, conv_size - 1, width) of the q, k, v short convolutions; () without them


def logit(p: float) -> float:
    return float(torch.logit(torch.tensor(p)))


@register_mixer("titans", "Titans neural long-term memory (Behrouz et al. 2025): an MLP trained at test time by "
                          "gradient descent with momentum and weight decay")
class Titans(Mixer):
    """The Titans long-term memory (LMM) layer; equations in the module docstring.

    Options: ``n_heads`` (default max(1, d_model // 64)), each with its own memory on keys and values of width
    d_model / n_heads; ``d_mem``, the memory MLP's hidden width per head (default twice the head width);
    ``n_mem_layers`` (2; 1 is a linear memory, Gated DeltaNet-like with momentum); ``use_short_conv``,
    ``conv_size``; ``chunk_size``, the tokens whose gradients share one set of weights; ``max_lr``, the bound on
    the inner learning rate theta_t (1.0, the paper's gate); ``max_grad_norm``, the norm each token's gradient
    is clipped to (1.0; None: no clipping, the paper's update); ``mode``: 'chunk' (the parallel form) or
    'recurrent' (the token loop).
    """

    def __init__(self, d_model: int, n_heads: int | None = None, d_mem: int | None = None, n_mem_layers: int = 2,
                 use_short_conv: bool = True, conv_size: int = 4, chunk_size: int = 16, max_lr: float = MAX_LR,
                 max_grad_norm: float | None = MAX_GRAD_NORM, mode: str = "chunk"):
        name = "titans"
        super().__init__(d_model)
        H, K, V = check_heads(name, d_model, n_heads, 1, 1)
        d_mem = 2 * K if d_mem is None else d_mem
        check_int(name, "d_mem", d_mem)
        check_int(name, "n_mem_layers", n_mem_layers)
        check_bool(name, "use_short_conv", use_short_conv)
        check_int(name, "conv_size", conv_size, minimum=2)
        check_int(name, "chunk_size", chunk_size)
        check_real(name, "max_lr", max_lr, 0, 1, low_open=True)
        if max_grad_norm is not None:
            check_real(name, "max_grad_norm", max_grad_norm, 0, low_open=True)
        check_choice(name, "mode", mode, ("chunk", "recurrent"))
        self.n_heads, self.head_k, self.head_v, self.d_mem = H, K, V, d_mem
        self.chunk_size, self.max_lr, self.mode = chunk_size, float(max_lr), mode
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)

        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * K, bias=False)
        self.v_proj = nn.Linear(d_model, H * V, bias=False)
        self.q_conv = ShortConv(H * K, conv_size, bias=False) if use_short_conv else None
        self.k_conv = ShortConv(H * K, conv_size, bias=False) if use_short_conv else None
        self.v_conv = ShortConv(H * V, conv_size, bias=False) if use_short_conv else None
        self.gate_proj = nn.Linear(d_model, 3 * H)  # eta, theta, alpha
        with torch.no_grad():
            theta_init = min(THETA_INIT, max_lr / 2) / max_lr
            self.gate_proj.bias.copy_(torch.tensor([logit(ETA_INIT), logit(theta_init), logit(ALPHA_INIT)])
                                      .repeat_interleave(H))
        widths = [K] + [d_mem] * (n_mem_layers - 1) + [V]
        self.memory_init = nn.ParameterList(
            nn.Parameter(torch.empty(H, d_out, d_in).uniform_(-d_in ** -0.5, d_in ** -0.5))
            for d_in, d_out in zip(widths[:-1], widths[1:]))
        self.g_proj = nn.Linear(d_model, H * V, bias=False)
        self.o_norm = RMSNorm(V, eps=NORM_EPS)
        self.o_proj = nn.Linear(H * V, d_model, bias=False)

    def init_state(self, batch_size, device=None, dtype=None) -> TitansState:
        dtype = dtype or self.o_proj.weight.dtype
        weights = tuple(W.to(device=device, dtype=dtype).expand(batch_size, *W.shape).clone()
                        for W in self.memory_init)  # copies, so an optimizer step never edits a state
        momentum = tuple(torch.zeros_like(W) for W in weights)
        convs = () if self.q_conv is None else (self.q_conv, self.k_conv, self.v_conv)
        return TitansState(weights, momentum, weights, torch.zeros(batch_size, device=device, dtype=torch.long),
                           tuple(c.init_state(batch_size, device, dtype) for c in convs))

    def _forward(self, x, state):
        q, k, v, eta, theta, alpha, conv = self._inputs(x, state.conv)
        memory = MemoryState(state.weights, state.momentum, state.anchor)
        phase = state.pos % self.chunk_size  # (B,)
        offsets = phase.unique().tolist()
        if len(offsets) == 1:
            o, memory = self._memory(q, k, v, eta, theta, alpha, memory, offsets[0])
        else:
            rows = [torch.nonzero(phase == p).squeeze(1) for p in offsets]
            parts = [self._memory(q[r], k[r], v[r], eta[r], theta[r], alpha[r], select_state(memory, r), p)
                     for r, p in zip(rows, offsets)]
            order = torch.cat(rows).argsort()  # back to the batch order
            o = torch.cat([o for o, _ in parts])[order]  # (B, T, H, V)
            flat = zip(*[flatten_state(m) for _, m in parts])
            memory = unflatten_state(memory, [torch.cat(pieces)[order] for pieces in flat])
        return self._output(o, x), TitansState(*memory, state.pos + x.shape[1], conv)

    def _memory(self, q, k, v, eta, theta, alpha, memory, offset):
        return titans_memory(q, k, v, eta, theta, alpha, memory, chunk_size=self.chunk_size, offset=offset,
                             mode=self.mode, max_grad_norm=self.max_grad_norm)

    def _step(self, x_t, state):
        q, k, v, eta, theta, alpha, conv = self._inputs(x_t, state.conv, step=True)  # (B, H, K), ..., (B, H)
        refresh = (state.pos + 1) % self.chunk_size == 0  # (B,): this token ends a chunk
        memory = MemoryState(state.weights, state.momentum, state.anchor)
        o, memory = memory_step(q, k, v, eta, theta, alpha, memory, refresh, self.max_grad_norm)  # (B, H, V)
        return self._output(o, x_t), TitansState(*memory, state.pos + 1, conv)

    def retrieve(self, x: torch.Tensor, weights: tuple) -> torch.Tensor:
        """Read the memory without writing to it (the paper's M*): x (B, T, d_model) -> (B, T, d_model), with
        ``weights`` a TitansState's weights, or a copy of them kept from an earlier point of the sequence.

            q_t = l2norm(SiLU(W_q x_t)),   y_t = W_o (RMSNorm(M(q_t)) * SiLU(W_g x_t))

        The projections are the ones ``forward`` uses, without the short convolution: its window belongs to
        the stream that writes the memory, and a read-only query leaves the state alone.
        """
        q = l2norm(F.silu(self.q_proj(x)).unflatten(-1, (self.n_heads, self.head_k)))  # (B, T, H, K)
        o = mlp(weights, q.transpose(1, 2)).transpose(1, 2)  # (B, T, H, V)
        return self._output(o, x)

    def _inputs(self, x, conv, step=False):
        """x (B, T, d_model), or x_t (B, d_model) with step=True; ``...`` below is (B, T) or (B,).

        Returns q, k (..., H, K), v (..., H, V), eta, theta, alpha (..., H) and the convolutions' new windows.
        """
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (..., H*K), (..., H*K), (..., H*V)
        convs = () if self.q_conv is None else (self.q_conv, self.k_conv, self.v_conv)
        (q, k, v), conv = conv_silu(convs, (q, k, v), conv, step)
        H = self.n_heads
        q = l2norm(q.unflatten(-1, (H, self.head_k)))  # (..., H, K)
        k = l2norm(k.unflatten(-1, (H, self.head_k)))  # (..., H, K)
        v = v.unflatten(-1, (H, self.head_v))  # (..., H, V)
        eta, theta, alpha = torch.sigmoid(self.gate_proj(x)).unflatten(-1, (3, H)).unbind(-2)  # (..., H) each
        return q, k, v, eta, self.max_lr * theta, alpha, conv

    def _output(self, o, x):
        """o (..., H, V) -> y (..., d_model): per-head RMSNorm, times SiLU(W_g x), then W_o."""
        o = self.o_norm(o) * F.silu(self.g_proj(x).unflatten(-1, (self.n_heads, self.head_v)))
        return self.o_proj(o.flatten(-2))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, n_heads={self.n_heads}, head_k={self.head_k}, d_mem={self.d_mem}, "
                f"n_mem_layers={len(self.memory_init)}, chunk_size={self.chunk_size}, max_lr={self.max_lr:g}, "
                f"max_grad_norm={self.max_grad_norm}, mode={self.mode!r}")
