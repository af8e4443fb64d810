"""A causal Hopfield layer (Ramsauer et al. 2020): modern continuous Hopfield retrieval over the past tokens' keys,
with a learned inverse temperature and several update steps."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.mixers.base import check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.mixers.transformer import Transformer
from rnnzoo.ops.hopfield import hopfield_retrieve


class HopfieldState(NamedTuple):
    k: tuple[torch.Tensor, ...]  # n_blocks x (B, H, block, D): the stored patterns, cached keys already rotated
    v: tuple[torch.Tensor, ...]  # n_blocks x (B, H, block, D): cached values, read out at the retrieved point
    kpos: tuple[torch.Tensor, ...]  # n_blocks x (B, block) long: each slot's key position, -1 for an empty slot
    pos: torch.Tensor  # (B,) long: how many tokens each row has read


@register_mixer("hopfield", "Causal Hopfield layer (Ramsauer et al. 2020): n_iter retrieval steps over past keys")
class Hopfield(Transformer):
    """Per head h, the stored patterns of query t are the keys K_t = (k_s, s in S(t)) of the tokens it may see
    and the state pattern starts at its query; n_iter - 1 Hopfield updates move it towards a stored key, and
    the last update reads the values there:

        xi_0 = q_t,   xi_{i+1} = K_t^T softmax(beta_h K_t xi_i)   for i < n_iter - 1
        o_t = V_t^T softmax(beta_h K_t xi_{n_iter-1}),   y_t = W_o (o_t of every head, concatenated)

    q, k, v, rotary positions, S(t) (causal, or a sliding ``window``) and the KV-cache state are the
    transformer's (see ``Transformer``). beta_h > 0 is learned per head, starting at 1/sqrt(D), so n_iter=1
    is exactly softmax attention with a learned temperature per head. Extra steps sharpen the retrieval: each
    lowers the Hopfield energy of xi, pulling a query that matches a stored key only partly onto that key
    (pattern completion) before the values are read. Retrieving from the past keys, rather than from a fixed
    learned memory, is chosen because it mixes over time; a learned static memory is a per-token lookup that
    the MLP of a residual block already provides. Rotary stays relative: the updated xi is a mix of keys
    turned by their positions, so its scores against k_s still depend on position differences only.
    Options: ``n_heads``, ``n_iter`` (>= 1; the default 2 is one retrieval step, then the read-out), ``max_len``,
    ``window``, ``rotary``.
    """

    owner = "hopfield"
    state_type = HopfieldState

    def __init__(self, d_model: int, n_heads: int | None = None, n_iter: int = 2, max_len: int = 2048,
                 window: int | None = None, rotary: bool = True):
        super().__init__(d_model, n_heads, max_len, window, rotary)
        check_int(self.owner, "n_iter", n_iter)
        self.n_iter = n_iter
        self.log_beta = nn.Parameter(torch.full((self.n_heads,), -0.5 * math.log(self.head_dim)))

    def _step(self, x_t, state):
        # the retrieval iterates over all the cached keys at once, so one token goes through _forward
        y, state = self._forward(x_t.unsqueeze(1), state)  # (B, 1, d_model)
        return y.squeeze(1), state

    def _attend(self, q, k, v, mask):
        """As ``Transformer._attend``: q (B, H, T, D), k and v (B, H, S, D), mask (B, 1, T, S) or (T, S) bool,
        or None for causal with S = T."""
        B, H, T, D = q.shape
        S = k.shape[2]
        if mask is None:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        mask = mask.expand(B, H, T, S)
        beta = self.log_beta.exp().to(q.dtype)  # (H,)
        xi = q
        if self.n_iter > 1:
            xi = hopfield_retrieve(k.flatten(0, 1), q.flatten(0, 1), beta.repeat(B), self.n_iter - 1,
                                   mask.reshape(B * H, T, S)).unflatten(0, (B, H))  # (B, H, T, D)
        return F.scaled_dot_product_attention(beta[:, None, None] * xi, k, v, attn_mask=mask, scale=1.0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_iter={self.n_iter}"
