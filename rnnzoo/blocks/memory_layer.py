"""Product-key memory layer (Lample et al. 2019, "Large Memory Layers with Product Keys"), used in place of the MLP
of chosen residual blocks as in Berges et al. 2024, "Memory Layers at Scale".

A table of n_keys^2 value vectors, each addressed by a product key: key (a, b) is the concatenation of sub-key a of
one set and sub-key b of another. Per head h, with K = k_dim and x (d_model):

    q = W_q x, split in halves q1, q2                                 (K/2,) each
    s1 = C1_h q1,  s2 = C2_h q2                                       (n_keys,) each; C are the sub-key sets
    I1, I2 = indices of the top_k largest of s1, s2                   (k,) each
    candidates s1[a] + s2[b] for a in I1, b in I2                     (k, k): the score of key (a, b) is q . key
    the top_k candidates: scores s (k,), slots a * n_keys + b
    y = sum_h sum_j softmax(s)_j V[slot_j]                            (d_model,); the heads share the table V

Exact: a sum s1[a] + s2[b] among the k largest of all n_keys^2 needs s1[a] among the k largest of s1 (else k
sums beat it, one per better a), and the same for b; so the k x k candidates hold the exhaustive top k, found at
cost O(n_keys K + k^2) per head instead of O(n_keys^2 K). The layer is position-wise (no state), so a
ResidualBlock with it stays a mixer under the same contract.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import check_int


class ProductKeyMemory(nn.Module):
    """x (..., d_model) -> y (..., d_model); the equations are in the module docstring.

    ``n_keys``: sub-keys per set (n_keys^2 value slots); ``k_dim``: the query and key width per head (even);
    ``top_k``: slots read per head (<= n_keys); ``n_heads``: independent queries, whose reads add up.
    """

    def __init__(self, d_model: int, n_keys: int = 32, k_dim: int = 32, top_k: int = 8, n_heads: int = 4):
        super().__init__()
        name = "ProductKeyMemory"
        for opt in ("d_model", "n_keys", "k_dim", "top_k", "n_heads"):
            check_int(name, opt, locals()[opt])
        if k_dim % 2:
            raise ConfigError(f"{name}: k_dim must be even (each key is two halves), got {k_dim}")
        if top_k > n_keys:
            raise ConfigError(f"{name}: top_k={top_k} exceeds n_keys={n_keys}; use top_k <= n_keys")
        self.d_model, self.n_keys, self.k_dim, self.top_k, self.n_heads = d_model, n_keys, k_dim, top_k, n_heads
        self.query = nn.Linear(d_model, n_heads * k_dim)
        half = k_dim // 2
        self.sub_keys = nn.Parameter(torch.empty(n_heads, 2, n_keys, half).uniform_(-half ** -0.5, half ** -0.5))
        self.values = nn.EmbeddingBag(n_keys ** 2, d_model, mode="sum")
        nn.init.normal_(self.values.weight, std=d_model ** -0.5)

    def lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (..., d_model) -> the top_k scores (..., H, k), largest first, and their slots in [0, n_keys^2)."""
        H, k = self.n_heads, self.top_k
        q = self.query(x).unflatten(-1, (H, 2, self.k_dim // 2))  # (..., H, 2, K/2)
        s = torch.einsum("...hck,hcnk->...hcn", q, self.sub_keys)  # (..., H, 2, n_keys)
        s_top, i_top = s.topk(k, dim=-1)  # (..., H, 2, k)
        cand = s_top[..., 0, :, None] + s_top[..., 1, None, :]  # (..., H, k, k)
        scores, flat = cand.flatten(-2).topk(k, dim=-1)  # (..., H, k)
        a = i_top[..., 0, :].gather(-1, torch.div(flat, k, rounding_mode="floor"))  # (..., H, k)
        b = i_top[..., 1, :].gather(-1, flat % k)  # (..., H, k)
        return scores, a * self.n_keys + b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores, slots = self.lookup(x)  # (..., H, k)
        weights = scores.softmax(-1)  # (..., H, k)
        width = self.n_heads * self.top_k
        y = self.values(slots.reshape(-1, width), per_sample_weights=weights.reshape(-1, width))  # (N, d_model)
        return y.reshape(*x.shape[:-1], self.d_model)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_keys={self.n_keys}, k_dim={self.k_dim}, top_k={self.top_k}, "
                f"n_heads={self.n_heads}")


def check_memory_layers(memory_layers, n_layers: int, residual: bool, options) -> tuple[int, ...]:
    """The block indices that get a memory layer, checked: distinct ints in [0, n_layers), residual blocks only,
    and ``options`` (a dict or None) naming only ProductKeyMemory's options."""
    if not isinstance(memory_layers, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in memory_layers):
        raise ConfigError(f"memory_layers must list block indices in [0, {n_layers}), got {memory_layers!r}")
    if len(set(memory_layers)) != len(memory_layers):
        raise ConfigError(f"memory_layers lists a block twice: {memory_layers!r}")
    if memory_layers and not residual:
        raise ConfigError("memory_layers replace the MLP of residual blocks; set residual=True to use them")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"memory_options must be a dict of ProductKeyMemory options, got {options!r}")
    valid = list(inspect.signature(ProductKeyMemory).parameters)[1:]
    unknown = sorted(set(options or {}) - set(valid))
    if unknown:
        raise ConfigError(f"memory_options has no {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return tuple(memory_layers)
