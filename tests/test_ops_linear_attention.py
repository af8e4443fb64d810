"""linear_attention, simple_gla and gla: the chunkwise forms against the reference loop and closed forms."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_rel_close
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.linear_attention import gla, linear_attention, simple_gla
from rnnzoo.ops.linear_attention.chunk import secondary_scores

OPS = ["linear_attention", "simple_gla", "gla"]
FUNCS = {"linear_attention": linear_attention, "simple_gla": simple_gla, "gla": gla}


def make_inputs(op, B, T, H, K, V, dtype, initial=True, decay=1.0):
    """q, k, v, [g], h0 as leaf tensors; g is a log-decay in [-decay, 0)."""
    q, k = torch.randn(B, T, H, K, dtype=dtype), torch.randn(B, T, H, K, dtype=dtype)
    v = torch.randn(B, T, H, V, dtype=dtype)
    gates = {"linear_attention": [], "simple_gla": [-decay * torch.rand(B, T, H, dtype=dtype)],
             "gla": [-decay * torch.rand(B, T, H, K, dtype=dtype)]}[op]
    h0 = torch.randn(B, H, K, V, dtype=dtype) if initial else None
    return [x.requires_grad_() for x in [q, k, v, *gates]], h0 if h0 is None else h0.requires_grad_()


def run_with_grads(op, args, h0, mode, dtype=None, **kw):
    """Output, final state and the gradients of a fixed random loss w.r.t. every input, optionally recast."""
    leaves = [x.detach().to(dtype or x.dtype).requires_grad_() for x in args]
    h = None if h0 is None else h0.detach().to(dtype or h0.dtype).requires_grad_()
    o, S = FUNCS[op](*leaves, initial_state=h, mode=mode, **kw)
    gen = torch.Generator().manual_seed(1)
    w_o = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)
    w_s = torch.randn(S.shape, generator=gen, dtype=torch.float64).to(S.dtype)
    ((o * w_o).sum() + (S * w_s).sum()).backward()
    grads = [x.grad for x in leaves] + ([] if h is None else [h.grad])
    return [o.detach(), S.detach(), *grads]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("T", [1, 63, 500])
@pytest.mark.parametrize("initial", [False, True])
def test_chunk_matches_recurrent(op, T, initial):
    """Output, final state and all gradients; float64 to 1e-10 and float32 (vs the float64 loop) to 1e-4."""
    args, h0 = make_inputs(op, 2, T, 2, 8, 8, torch.float64, initial)
    want = run_with_grads(op, args, h0, "recurrent")
    assert_rel_close(run_with_grads(op, args, h0, "chunk"), want, 1e-10, floor=None)
    assert_rel_close(run_with_grads(op, args, h0, "auto", dtype=torch.float32), want, 1e-4, floor=None)


@pytest.mark.parametrize("op", ["simple_gla", "gla"])
@pytest.mark.parametrize("decay", [0.05, 5.0])
def test_weak_and_strong_decay_stay_finite_and_exact(op, decay):
    """g down to -5 per step: exp(cumsum g) over a 64-step chunk would overflow a naive factorisation.

    For gla, decay 0.05 takes the one-matmul path and 5.0 the secondary chunking in float32.
    """
    args, h0 = make_inputs(op, 1, 150, 2, 8, 4, torch.float64, decay=decay)
    want = run_with_grads(op, args, h0, "recurrent")
    assert_rel_close(run_with_grads(op, args, h0, "chunk", dtype=torch.float32, chunk_size=64), want, 1e-4, floor=None)
    assert_rel_close(run_with_grads(op, args, h0, "chunk", chunk_size=64), want, 1e-10, floor=None)


@pytest.mark.parametrize("op", ["simple_gla", "gla"])
def test_extreme_decay_underflows_to_zero_not_nan(op):
    """g down to -200 per step: float32 decays underflow to 0 (as the loop's do), never inf or NaN."""
    args, h0 = make_inputs(op, 1, 150, 2, 8, 4, torch.float64, decay=200.0)
    assert_rel_close(run_with_grads(op, args, h0, "chunk"), run_with_grads(op, args, h0, "recurrent"), 1e-10,
                     floor=None)
    got = run_with_grads(op, args, h0, "chunk", dtype=torch.float32)
    want = run_with_grads(op, args, h0, "recurrent", dtype=torch.float32)
    assert_rel_close(got[:2], want[:2], 1e-4, floor=None)
    assert all(torch.isfinite(x).all() for x in got)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("chunk_size", [1, 5, 16, 48])
def test_chunk_size_does_not_change_the_result(op, chunk_size):
    args, h0 = make_inputs(op, 2, 37, 2, 4, 3, torch.float64)
    want = run_with_grads(op, args, h0, "recurrent")
    assert_rel_close(run_with_grads(op, args, h0, "chunk", chunk_size=chunk_size), want, 1e-10, floor=None)


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=8, deadline=None)
@given(t=st.integers(1, 39))
def test_split_with_carried_state_equals_one_run(op, t):
    """Running [0, t) then [t, T) from the first part's final state equals one run over [0, T)."""
    torch.manual_seed(t)
    args, h0 = make_inputs(op, 2, 40, 2, 4, 3, torch.float64)
    with torch.no_grad():
        o, S = FUNCS[op](*args, initial_state=h0, chunk_size=8)
        o1, S1 = FUNCS[op](*[x[:, :t] for x in args], initial_state=h0, chunk_size=8)
        o2, S2 = FUNCS[op](*[x[:, t:] for x in args], initial_state=S1, chunk_size=8)
    torch.testing.assert_close(torch.cat([o1, o2], dim=1), o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S2, S, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("decay", [0.1, 3.0, 300.0])
def test_secondary_scores_match_the_direct_sum(decay):
    """The secondary-chunking scores against sum_k q_tk k_sk exp(G_tk - G_sk) summed over a dense (C, C, K)."""
    q, k = torch.randn(2, 1, 3, 48, 5, dtype=torch.float64), torch.randn(2, 1, 3, 48, 5, dtype=torch.float64)
    G = (-decay * torch.rand(2, 1, 3, 48, 5, dtype=torch.float64)).cumsum(dim=-2)
    causal = torch.ones(48, 48, dtype=torch.bool).tril().unsqueeze(-1)  # (C, C, 1)
    diff = (G.unsqueeze(-2) - G.unsqueeze(-3)).masked_fill(~causal, -torch.inf)
    want = torch.einsum("...tk,...sk,...tsk->...ts", q, k, diff.exp())
    torch.testing.assert_close(secondary_scores(q, k, G), want, rtol=1e-12, atol=1e-12)


def test_linear_attention_is_masked_attention_without_softmax():
    """o = tril(scale q k^T) v from a zero state, computed as one dense product per head."""
    (q, k, v), _ = make_inputs("linear_attention", 2, 50, 3, 5, 4, torch.float64, initial=False)
    scores = torch.einsum("bthk,bshk->bhts", q, k) * 5 ** -0.5
    want = torch.einsum("bhts,bshv->bthv", scores.tril(), v)
    torch.testing.assert_close(linear_attention(q, k, v, chunk_size=16)[0], want, rtol=1e-10, atol=1e-10)


def test_retention_is_simple_gla_with_a_constant_decay():
    """RetNet's parallel form o_t = sum_{s<=t} gamma^(t-s) (q_t . k_s) v_s with g = log(gamma)."""
    B, T, H, K = 2, 70, 3, 4
    (q, k, v, _), _ = make_inputs("simple_gla", B, T, H, K, 4, torch.float64, initial=False)
    gamma = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    g = torch.log(gamma).expand(B, T, H)
    t = torch.arange(T, dtype=torch.float64)
    decay = (gamma[:, None, None] ** (t[:, None] - t[None, :]).clamp_min(0)).tril()  # (H, T, T)
    scores = torch.einsum("bthk,bshk->bhts", q, k) * K ** -0.5 * decay
    want = torch.einsum("bhts,bshv->bthv", scores, v)
    torch.testing.assert_close(simple_gla(q, k, v, g, chunk_size=16)[0], want, rtol=1e-10, atol=1e-10)


def test_gla_with_equal_channels_is_simple_gla():
    """gla with the same decay on every key channel takes a different code path to the same answer."""
    (q, k, v, g), h0 = make_inputs("simple_gla", 2, 45, 2, 6, 3, torch.float64, decay=3.0)
    o1, S1 = simple_gla(q, k, v, g, initial_state=h0, chunk_size=32)
    o2, S2 = gla(q, k, v, g.unsqueeze(-1).expand(-1, -1, -1, 6), initial_state=h0, chunk_size=32)
    torch.testing.assert_close(o2, o1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S2, S1, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op", OPS)
def test_empty_sequence_returns_the_initial_state(op):
    args, h0 = make_inputs(op, 2, 0, 2, 4, 3, torch.float32)
    o, S = FUNCS[op](*args, initial_state=h0)
    assert o.shape == (2, 0, 2, 3) and S is h0
    assert FUNCS[op](*args)[1].shape == (2, 2, 4, 3)


def test_scale_multiplies_the_output():
    (q, k, v), h0 = make_inputs("linear_attention", 1, 9, 1, 4, 2, torch.float64)
    o1, _ = linear_attention(q, k, v, scale=1.0, initial_state=h0, mode="recurrent")
    o2, _ = linear_attention(q, k, v, scale=3.0, initial_state=h0)
    torch.testing.assert_close(o2, 3 * o1)


@pytest.mark.parametrize("op", OPS)
def test_bad_input_raises_a_named_error(op):
    (q, k, v, *g), h0 = make_inputs(op, 2, 6, 2, 4, 3, torch.float32)
    f = FUNCS[op]
    with pytest.raises(ShapeError, match=r"q must have shape \(B, T, H, K\)"):
        f(q[0], k, v, *g)
    with pytest.raises(ShapeError, match=r"k must have shape \(B, T, H, K\) = \(2, 6, 2, 4\)"):
        f(q, k[..., :3], v, *g)
    with pytest.raises(ShapeError, match=r"v must have shape \(B, T, H, V\)"):
        f(q, k, v[:, :5], *g)
    with pytest.raises(ShapeError, match=r"initial_state must have shape \(B, H, K, V\)"):
        f(q, k, v, *g, initial_state=h0[..., :2])
    with pytest.raises(ShapeError, match="cast every input to one dtype"):
        f(q, k, v, *g, initial_state=h0.double())
    with pytest.raises(ConfigError, match="mode must be one of"):
        f(q, k, v, *g, mode="parallel")
    with pytest.raises(ConfigError, match="chunk_size must be a positive int"):
        f(q, k, v, *g, chunk_size=0)
    if g:
        with pytest.raises(ConfigError, match="g is a log-decay and must be <= 0"):
            f(q, k, v, g[0].detach() + 0.5)
        with pytest.raises(ShapeError, match="g must have shape"):
            f(q, k, v, g[0][:, :, :1])
