"""linear_attention, retnet and gla against their quadratic (attention-matrix) forms written out here from the
mixers' weights, chunk vs recurrent mode on a long sequence, rotary scores, and option checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.linear_attention import DENOMINATOR_EPS
from rnnzoo.mixers.retnet import rotate

D = 8
NAMES = ("linear_attention", "retnet", "gla")


def make(name, **options):
    torch.manual_seed(0)
    return build_mixer(name, D, **options).double()


def heads(x, n):
    """(B, T, n * W) -> (B, T, n, W)."""
    return x.reshape(*x.shape[:2], n, -1)


def causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()  # (T, T): m <= n


def rms_per_head(o, norm):
    return o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight


def in_pieces(mixer, x, cuts):
    """Forward over x[:, a:b] for consecutive cut points, carrying the state."""
    bounds, state, ys = [0, *cuts, x.shape[1]], None, []
    for a, b in zip(bounds[:-1], bounds[1:]):
        y, state = mixer(x[:, a:b], state)
        ys.append(y)
    return torch.cat(ys, dim=1)


@pytest.mark.parametrize("options", [
    {"n_heads": 2},
    {"n_heads": 2, "feature_map": "relu", "normalization": "denominator", "chunk_size": 8},
    {"feature_map": "identity", "mode": "recurrent"},
])
def test_linear_attention_matches_the_quadratic_form(options):
    """O = (phi(Q) phi(K)^T * M) V, divided by (phi(Q) phi(K)^T * M) 1 for the paper's normaliser."""
    mixer = make("linear_attention", **options)
    H, x = mixer.n_heads, torch.randn(2, 40, D, dtype=torch.float64)
    phi = {"elu1": lambda t: F.elu(t) + 1, "relu": F.relu, "identity": lambda t: t}[mixer.feature_map]
    q = phi(heads(x @ mixer.q_proj.weight.T, H))  # (B, T, H, K)
    k = phi(heads(x @ mixer.k_proj.weight.T, H))
    v = heads(x @ mixer.v_proj.weight.T, H)  # (B, T, H, V)
    A = torch.einsum("bnhk,bmhk->bhnm", q, k) * q.shape[-1] ** -0.5 * causal(40)  # (B, H, T, T)
    o = torch.einsum("bhnm,bmhv->bnhv", A, v)
    if mixer.normalization == "denominator":
        o = o / (A.sum(-1).transpose(1, 2).unsqueeze(-1) + DENOMINATOR_EPS)
    else:
        o = rms_per_head(o, mixer.norm)
    y_ref = o.flatten(-2) @ mixer.o_proj.weight.T
    torch.testing.assert_close(in_pieces(mixer, x, [13, 14, 31]), y_ref, rtol=1e-10, atol=1e-10)


def rotary_complex(x, pos):
    """Rotary position as complex rotation: channel pair (i, i + K/2) is the number x_i + j x_{i+K/2},
    turned by pos * 10000^(-2i/K)."""
    K = x.shape[-1]
    z = torch.complex(x[..., :K // 2], x[..., K // 2:])
    freq = 10000.0 ** (-torch.arange(K // 2, dtype=torch.float64) * 2 / K)
    z = z * torch.polar(torch.ones_like(freq), pos[:, None, None] * freq)  # (T, H, K/2) with pos (T,)
    return torch.cat([z.real, z.imag], dim=-1)


@pytest.mark.parametrize("options", [{"n_heads": 2}, {"n_heads": 2, "expand_v": 1, "chunk_size": 8},
                                     {"mode": "recurrent"}])
def test_retnet_matches_the_parallel_retention_form(options):
    """Sun et al. 2023, eq. (5): Retention(X) = (Q K^T * D) V with D_nm = gamma^(n - m) for n >= m, else 0;
    then per-head GroupNorm, the swish gate and W_O. Run in pieces, so the state's position counter counts."""
    mixer = make("retnet", **options)
    H, T, x = mixer.n_heads, 40, torch.randn(2, 40, D, dtype=torch.float64)
    pos = torch.arange(T, dtype=torch.float64)
    q = rotary_complex(heads(x @ mixer.q_proj.weight.T, H), pos)  # (B, T, H, K)
    k = rotary_complex(heads(x @ mixer.k_proj.weight.T, H), pos)
    v = heads(x @ mixer.v_proj.weight.T, H)  # (B, T, H, V)
    gamma = 1 - 2.0 ** (-5 - torch.arange(H, dtype=torch.float64))  # (H,)
    n_minus_m = (pos[:, None] - pos[None, :]).clamp_min(0)  # (T, T)
    decay = gamma[:, None, None] ** n_minus_m * causal(T)  # (H, T, T)
    A = torch.einsum("bnhk,bmhk->bhnm", q, k) * q.shape[-1] ** -0.5 * decay  # (B, H, T, T)
    o = torch.einsum("bhnm,bmhv->bnhv", A, v)  # (B, T, H, V)
    gn = mixer.group_norm
    mean, var = o.mean(-1, keepdim=True), o.var(-1, unbiased=False, keepdim=True)
    o = ((o - mean) / torch.sqrt(var + gn.eps)).flatten(-2) * gn.weight + gn.bias  # (B, T, H * V)
    y_ref = (o * F.silu(x @ mixer.g_proj.weight.T)) @ mixer.o_proj.weight.T
    torch.testing.assert_close(in_pieces(mixer, x, [9, 25]), y_ref, rtol=1e-10, atol=1e-10)
    _, state = mixer(x)
    assert state.pos.tolist() == [T, T]


@pytest.mark.parametrize("options", [{"n_heads": 2}, {"n_heads": 2, "expand_k": 1, "chunk_size": 8},
                                     {"mode": "recurrent", "gate_logit_normalizer": 4}])
def test_gla_matches_the_quadratic_form(options):
    """o_t = sum_{s <= t} (sum_k q_tk k_sk prod_{s < r <= t} alpha_rk) v_s with alpha = sigmoid(x W1 W2 + b)^(1/tau),
    then per-head RMSNorm, the swish output gate and W_o."""
    mixer = make("gla", **options)
    H, T, x = mixer.n_heads, 40, torch.randn(2, 40, D, dtype=torch.float64)
    q = heads(x @ mixer.q_proj.weight.T, H)  # (B, T, H, K)
    k = heads(x @ mixer.k_proj.weight.T, H)
    v = heads(x @ mixer.v_proj.weight.T, H)  # (B, T, H, V)
    low, up = mixer.gk_proj
    alpha = torch.sigmoid(x @ low.weight.T @ up.weight.T + up.bias) ** (1 / mixer.gate_logit_normalizer)
    G = heads(alpha.log(), H).cumsum(1)  # (B, T, H, K)
    between = (G[:, :, None] - G[:, None, :]).masked_fill(~causal(T)[None, :, :, None, None], -math.inf)
    A = torch.einsum("bnhk,bmhk,bnmhk->bhnm", q, k, between.exp()) * q.shape[-1] ** -0.5  # (B, H, T, T)
    o = rms_per_head(torch.einsum("bhnm,bmhv->bnhv", A, v), mixer.norm)
    y_ref = (o.flatten(-2) * F.silu(x @ mixer.g_proj.weight.T)) @ mixer.o_proj.weight.T
    torch.testing.assert_close(in_pieces(mixer, x, [1, 20]), y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name, options", [
    ("linear_attention", {"n_heads": 2}),
    ("linear_attention", {"n_heads": 2, "normalization": "denominator"}),
    ("retnet", {"n_heads": 2}),
    ("gla", {"n_heads": 2}),
])
def test_chunk_and_recurrent_modes_agree_on_a_long_sequence(name, options):
    """T = 200 with chunk 32 (several chunks and a partial one): outputs, state and every gradient."""
    x = torch.randn(2, 200, D, dtype=torch.float64)
    prefix = torch.randn(2, 5, D, dtype=torch.float64)
    outs = []
    for mode in ("chunk", "recurrent"):
        mixer = make(name, **options, mode=mode, chunk_size=32)
        _, s0 = mixer(prefix)
        kv0 = s0.kv.detach().requires_grad_()
        xm = x.clone().requires_grad_()
        y, s = mixer(xm, s0._replace(kv=kv0))
        weight = torch.linspace(-1, 1, y.shape[1], dtype=y.dtype)[:, None]
        ((y * weight).sum() + s.kv.sum()).backward()
        outs.append([y, s.kv, xm.grad, kv0.grad, *(p.grad for p in mixer.parameters())])
    for got, want in zip(*outs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_rotary_scores_depend_on_relative_position_only():
    q, k = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 3, 8, dtype=torch.float64)

    def score(t, s):
        return (rotate(q, torch.tensor([t, t])) * rotate(k, torch.tensor([s, s]))).sum(-1)

    torch.testing.assert_close(score(7, 3), score(107, 103))
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="non-negative feature map"):
        build_mixer("linear_attention", D, feature_map="identity", normalization="denominator")
    with pytest.raises(ConfigError, match="even key width"):
        build_mixer("retnet", D, n_heads=8)
    with pytest.raises(ConfigError, match="n_heads=3"):
        build_mixer("gla", D, n_heads=3)
    with pytest.raises(ConfigError, match="expand_k"):
        build_mixer("linear_attention", D, expand_k=0.3)
    with pytest.raises(ConfigError, match="gate_logit_normalizer"):
        build_mixer("gla", D, gate_logit_normalizer=0)
    with pytest.raises(ConfigError, match="feature_map"):
        build_mixer("linear_attention", D, feature_map="softmax")
