"""RWKV ops: the chunk forms against the reference loops on outputs, final states and every gradient; the
reference loops against dense matrices written out here in RWKV's own (V, K) state orientation."""
import pytest
import torch
import torch.nn.functional as F
from helpers import as_float32, assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.rwkv import rwkv6, rwkv7

F64 = torch.float64
OPS = ["rwkv6", "rwkv7"]


def make_inputs(op, B, T, H, K, V, with_state=True, seed=0, decay=(0.0, 3.0)):
    """float64 leaves; log-decays w in (-decay[1], -decay[0]]; for RWKV-7 a = -k_hat, b = k_hat * beta with unit
    k_hat and beta in (0, 2), so each transition diag(exp(w)) + b a^T has eigenvalues in (-1, 1]."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    lo, hi = decay
    x = {"r": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V),
         "w": -(lo + (hi - lo) * torch.rand(B, T, H, K, generator=gen, dtype=F64))}
    if op == "rwkv6":
        x["u"] = randn(H, K)
    else:
        k_hat = F.normalize(randn(B, T, H, K), dim=-1)
        beta = 2 * torch.rand(B, T, H, 1, generator=gen, dtype=F64)
        x["a"], x["b"] = -k_hat, k_hat * beta
    if with_state:
        x["initial_state"] = randn(B, H, K, V)
    return {name: t.requires_grad_() for name, t in x.items()}


def call(op, x, **kw):
    if op == "rwkv6":
        return rwkv6(x["r"], x["k"], x["v"], x["w"], x["u"], initial_state=x.get("initial_state"), **kw)
    return rwkv7(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], initial_state=x.get("initial_state"), **kw)


def outputs_and_grads(op, x, **kw):
    """[o, final_state, d/d each input] for a fixed random weighting of o and the final state."""
    return with_grads(call(op, x, **kw), x.values())


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("T,chunk_size", [(1, 64), (63, 16), (500, 64)])
@pytest.mark.parametrize("op", OPS)
def test_chunk_matches_recurrent(op, T, chunk_size, with_state):
    B, H, K, V = 2, 2, 8, 8
    x = make_inputs(op, B, T, H, K, V, with_state=with_state)
    want = outputs_and_grads(op, x, mode="recurrent")
    assert_rel_close(outputs_and_grads(op, x, mode="chunk", chunk_size=chunk_size), want, 1e-10)
    assert_rel_close(outputs_and_grads(op, as_float32(x), mode="auto", chunk_size=chunk_size), want, 1e-4)


@settings(max_examples=15, deadline=None)
@given(op=st.sampled_from(OPS), T=st.integers(1, 40), chunk_size=st.integers(1, 45),
       K=st.integers(1, 5), V=st.integers(1, 5))
def test_chunk_matches_recurrent_any_shape(op, T, chunk_size, K, V):
    x = make_inputs(op, 2, T, 2, K, V, seed=T * 1000 + chunk_size)
    want = outputs_and_grads(op, x, mode="recurrent")
    assert_rel_close(outputs_and_grads(op, x, mode="chunk", chunk_size=chunk_size), want, 1e-10)


@settings(max_examples=12, deadline=None)
@given(op=st.sampled_from(OPS), t=st.integers(0, 40))
def test_chunk_split_carries_state(op, t):
    x = make_inputs(op, 2, 40, 2, 4, 3)
    o, S = call(op, x, chunk_size=8)
    per_step = [name for name in x if name not in ("u", "initial_state")]
    o1, S1 = call(op, {**x, **{name: x[name][:, :t] for name in per_step}}, chunk_size=8)
    o2, S2 = call(op, {**x, **{name: x[name][:, t:] for name in per_step}, "initial_state": S1}, chunk_size=8)
    assert_rel_close([torch.cat([o1, o2], dim=1), S2], [o, S], 1e-10)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("decay", [(4.0, 6.0), (10.0, 40.0)])
def test_strong_decay_stays_finite(op, decay):
    """log-decays of -5 (and down to -40) per step and channel: cumulative decays inside a chunk of 64 reach
    e^-320 (e^-2500), which underflow but never overflow. Gradients of w are then sums of O(1) terms that
    cancel, so float32 is held to 1e-4 absolute."""
    x = make_inputs(op, 1, 130, 2, 4, 4, decay=decay)
    want = outputs_and_grads(op, x, mode="recurrent")
    assert_rel_close(outputs_and_grads(op, x, mode="chunk"), want, 1e-10)
    assert_rel_close(outputs_and_grads(op, as_float32(x), mode="chunk"), want, 1e-4, floor=1.0)


def dense_loop(op, x):
    """The recurrences with the state in RWKV's (V, K) orientation and explicit (K, K) transitions, for
    B = H = 1 and scale 1. Returns o (T, V) and the final state transposed back to (K, V)."""
    r, k, v, w = (x[name][0, :, 0] for name in ("r", "k", "v", "w"))  # (T, K|V)
    S = x["initial_state"][0, 0].T  # (V, K)
    outs = []
    for t in range(r.shape[0]):
        if op == "rwkv6":
            outs.append((S + torch.outer(v[t], x["u"][0] * k[t])) @ r[t])
            S = S @ torch.diag(w[t].exp()) + torch.outer(v[t], k[t])
        else:
            a, b = x["a"][0, t, 0], x["b"][0, t, 0]
            S = S @ (torch.diag(w[t].exp()) + torch.outer(a, b)) + torch.outer(v[t], k[t])
            outs.append(S @ r[t])
    return torch.stack(outs), S.T


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_matches_dense_matrices_in_rwkv_orientation(op, mode):
    x = make_inputs(op, 1, 7, 1, 3, 2)
    o, S = call(op, x, mode=mode, chunk_size=4)
    o_want, S_want = dense_loop(op, x)
    assert_rel_close([o[0, :, 0], S[0, 0]], [o_want, S_want], 1e-12)


@pytest.mark.parametrize("op", OPS)
def test_scale_multiplies_r(op):
    x = make_inputs(op, 2, 9, 2, 4, 3)
    o, _ = call(op, x, scale=0.5)
    o_want, _ = call(op, {**x, "r": x["r"] * 0.5})
    assert_rel_close([o], [o_want], 1e-12)


def test_rwkv7_without_the_rank_one_term_is_rwkv6_read_after_the_update():
    """a = b = 0 leaves S_t = diag(exp(w_t)) S_{t-1} + k_t v_t^T in both ops; RWKV-7 reads S_t, and RWKV-6 with
    u = 1 reads S_{t-1} + k_t v_t^T, which differs from S_t only by the decay of S_{t-1}: equal at w = 0."""
    x = make_inputs("rwkv7", 2, 21, 2, 4, 3)
    zeros = torch.zeros_like(x["a"])
    w0 = torch.zeros_like(x["w"])
    o7, S7 = rwkv7(x["r"], w0, x["k"], x["v"], zeros, zeros, initial_state=x["initial_state"], chunk_size=8)
    o6, S6 = rwkv6(x["r"], x["k"], x["v"], w0, torch.ones(2, 4, dtype=F64), initial_state=x["initial_state"],
                   mode="recurrent")
    assert_rel_close([o7, S7], [o6, S6], 1e-12)


@pytest.mark.parametrize("op", OPS)
def test_empty_sequence_returns_initial_state(op):
    x = make_inputs(op, 2, 0, 2, 4, 3)
    o, S = call(op, x)
    assert o.shape == (2, 0, 2, 3)
    assert torch.equal(S, x["initial_state"])


def bad(op, **changes):
    x = {name: t.detach() for name, t in make_inputs(op, 2, 5, 2, 4, 3).items()}
    return {**x, **changes}


@pytest.mark.parametrize("op,x,error,match", [
    ("rwkv6", bad("rwkv6", r=torch.randn(2, 5, 4, dtype=F64)), ShapeError, r"r must have shape \(B, T, H, K\)"),
    ("rwkv6", bad("rwkv6", k=torch.randn(2, 5, 2, 3, dtype=F64)), ShapeError, "k must have shape"),
    ("rwkv6", bad("rwkv6", v=torch.randn(3, 5, 2, 3, dtype=F64)), ShapeError, "v must have shape"),
    ("rwkv6", bad("rwkv6", v=torch.randn(2, 5, 2, dtype=F64)), ShapeError, "v must have shape"),
    ("rwkv6", bad("rwkv6", u=torch.randn(2, 3, dtype=F64)), ShapeError, r"u must have shape \(H, K\)"),
    ("rwkv6", bad("rwkv6", w=torch.rand(2, 5, 2, 4, dtype=F64)), ConfigError, "w is a log-decay and must be <= 0"),
    ("rwkv6", bad("rwkv6", initial_state=torch.zeros(2, 2, 3, 4, dtype=F64)), ShapeError,
     r"initial_state must have shape \(B, H, K, V\)"),
    ("rwkv6", bad("rwkv6", u=torch.randn(2, 4)), ShapeError, "cast every input to one dtype"),
    ("rwkv7", bad("rwkv7", w=-torch.rand(2, 4, 2, 4, dtype=F64)), ShapeError, "w must have shape"),
    ("rwkv7", bad("rwkv7", a=torch.randn(2, 5, 2, 3, dtype=F64)), ShapeError, "a must have shape"),
    ("rwkv7", bad("rwkv7", b=None), ShapeError, "b must be a torch.Tensor"),
    ("rwkv7", bad("rwkv7", w=torch.rand(2, 5, 2, 4, dtype=F64)), ConfigError, "w is a log-decay and must be <= 0"),
])
def test_bad_input_raises(op, x, error, match):
    with pytest.raises(error, match=match):
        call(op, x)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kw,match", [({"mode": "fused"}, "mode must be one of"),
                                      ({"chunk_size": 0}, "chunk_size must be a positive int"),
                                      ({"chunk_size": 8.0}, "chunk_size must be a positive int")])
def test_bad_options_raise(op, kw, match):
    with pytest.raises(ConfigError, match=match):
        call(op, bad(op), **kw)
