"""Delta-rule ops: the chunk (UT-transform) forms against the reference loops on outputs, final states and every
gradient; the reference loops against dense Householder matrices written out here; DeltaProduct's interleaved
chunk form against its direct double loop."""
import pytest
import torch
import torch.nn.functional as F
from helpers import as_float32, assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.delta import delta_product, delta_rule, gated_delta_rule

F64 = torch.float64
OPS = ["delta_rule", "gated_delta_rule", "delta_product", "gated_delta_product"]


def make_inputs(op, B, T, H, K, V, n_h=2, with_state=True, seed=0, decay=(0.0, 3.0)):
    """float64 leaves: unit-norm keys, beta in (0, 2), log-gates g in (-decay[1], -decay[0]]."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    steps = (B, T, H) if op in ("delta_rule", "gated_delta_rule") else (B, T, n_h, H)
    x = {"q": randn(B, T, H, K), "k": F.normalize(randn(*steps, K), dim=-1), "v": randn(*steps, V),
         "beta": 2 * torch.rand(*steps, generator=gen, dtype=F64)}
    if op.startswith("gated"):
        lo, hi = decay
        x["g"] = -(lo + (hi - lo) * torch.rand(B, T, H, generator=gen, dtype=F64))
    if with_state:
        x["initial_state"] = randn(B, H, K, V)
    return {name: t.requires_grad_() for name, t in x.items()}


def call(op, x, **kw):
    if op == "delta_rule":
        return delta_rule(x["q"], x["k"], x["v"], x["beta"], initial_state=x.get("initial_state"), **kw)
    if op == "gated_delta_rule":
        return gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], initial_state=x.get("initial_state"), **kw)
    return delta_product(x["q"], x["k"], x["v"], x["beta"], x.get("g"), initial_state=x.get("initial_state"), **kw)


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
       K=st.integers(1, 5), V=st.integers(1, 5), n_h=st.integers(1, 3))
def test_chunk_matches_recurrent_any_shape(op, T, chunk_size, K, V, n_h):
    x = make_inputs(op, 2, T, 2, K, V, n_h=n_h, seed=T * 1000 + chunk_size)
    want = outputs_and_grads(op, x, mode="recurrent")
    assert_rel_close(outputs_and_grads(op, x, mode="chunk", chunk_size=chunk_size), want, 1e-10)


@settings(max_examples=12, deadline=None)
@given(op=st.sampled_from(OPS), t=st.integers(0, 40))
def test_chunk_split_carries_state(op, t):
    x = make_inputs(op, 2, 40, 2, 4, 3)
    o, S = call(op, x, chunk_size=8)
    first = {name: val[:, :t] if name != "initial_state" else val for name, val in x.items()}
    o1, S1 = call(op, first, chunk_size=8)
    second = {name: val[:, t:] for name, val in x.items() if name != "initial_state"}
    o2, S2 = call(op, {**second, "initial_state": S1}, chunk_size=8)
    assert_rel_close([torch.cat([o1, o2], dim=1), S2], [o, S], 1e-10)


@pytest.mark.parametrize("op", ["gated_delta_rule", "gated_delta_product"])
def test_strong_decay_stays_finite(op):
    """log-gates down to -40 per step: cumulative decays of e^-2000 inside a chunk underflow, never overflow.
    The gate's gradient is then ~1e-4, a sum of O(1) terms that cancel, so float32 gets it to 1e-4 absolute."""
    x = make_inputs(op, 1, 130, 2, 4, 4, decay=(10.0, 40.0))
    want = outputs_and_grads(op, x, mode="recurrent")
    assert_rel_close(outputs_and_grads(op, x, mode="chunk"), want, 1e-10)
    assert_rel_close(outputs_and_grads(op, as_float32(x), mode="chunk"), want, 1e-4, floor=1.0)


def dense_loop(x, n_h=None):
    """The recurrences with explicit (K, K) matrices I - beta k k^T, for B = H = 1; scale 1."""
    q = x["q"][0, :, 0]  # (T, K)
    k, v, beta = x["k"][0, ..., 0, :], x["v"][0, ..., 0, :], x["beta"][0, ..., 0]  # (T, [n_h,] K|V), (T, [n_h])
    if n_h is None:
        k, v, beta = k[:, None], v[:, None], beta[:, None]
    S = x["initial_state"][0, 0]
    eye = torch.eye(k.shape[-1], dtype=F64)
    outs = []
    for t in range(q.shape[0]):
        if "g" in x:
            S = torch.exp(x["g"][0, t, 0]) * S
        for j in range(k.shape[1]):
            S = (eye - beta[t, j] * torch.outer(k[t, j], k[t, j])) @ S + beta[t, j] * torch.outer(k[t, j], v[t, j])
        outs.append(S.T @ q[t])
    return torch.stack(outs), S


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_matches_dense_householder_matrices(op, mode):
    x = make_inputs(op, 1, 7, 1, 3, 2, n_h=3)
    o, S = call(op, x, mode=mode, chunk_size=4, scale=1.0)
    o_want, S_want = dense_loop(x, n_h=None if op in ("delta_rule", "gated_delta_rule") else 3)
    assert_rel_close([o[0, :, 0], S[0, 0]], [o_want, S_want], 1e-12)


@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_delta_product_with_one_step_is_gated_delta_rule(mode):
    x = make_inputs("gated_delta_product", 2, 19, 2, 4, 3, n_h=1)
    o, S = call("gated_delta_product", x, mode=mode, chunk_size=8)
    flat = {name: val.squeeze(2) if name in ("k", "v", "beta") else val for name, val in x.items()}
    o_want, S_want = call("gated_delta_rule", flat, mode="recurrent")
    assert_rel_close([o, S], [o_want, S_want], 1e-12)


def test_beta_two_reflects_the_state():
    """beta = 2 with a unit key and a zero value is the reflection I - 2 k k^T: applied twice it is the identity,
    and once it flips the state's component along k (a negative eigenvalue)."""
    k = F.normalize(torch.randn(1, 1, 1, 4, dtype=F64), dim=-1)
    S0 = torch.randn(1, 1, 4, 3, dtype=F64)
    zeros_v, beta = torch.zeros(1, 1, 1, 3, dtype=F64), torch.full((1, 1, 1), 2.0, dtype=F64)
    q = torch.zeros(1, 1, 1, 4, dtype=F64)
    _, S1 = delta_rule(q, k, zeros_v, beta, initial_state=S0)
    _, S2 = delta_rule(q, k, zeros_v, beta, initial_state=S1)
    kk = k[0, 0, 0]
    torch.testing.assert_close(kk @ S1[0, 0], -(kk @ S0[0, 0]), atol=1e-12, rtol=0)
    torch.testing.assert_close(S2, S0, atol=1e-12, rtol=0)


def test_default_scale_is_inverse_sqrt_of_key_width():
    x = make_inputs("delta_rule", 2, 9, 2, 4, 3)
    o, _ = call("delta_rule", x)
    o_want, _ = call("delta_rule", {**x, "q": x["q"] * 4 ** -0.5}, scale=1.0)
    assert_rel_close([o], [o_want], 1e-12)


def test_empty_sequence_returns_initial_state():
    x = make_inputs("gated_delta_rule", 2, 0, 2, 4, 3)
    o, S = call("gated_delta_rule", x)
    assert o.shape == (2, 0, 2, 3)
    assert torch.equal(S, x["initial_state"])


def bad(**changes):
    x = {name: t.detach() for name, t in make_inputs("gated_delta_rule", 2, 5, 2, 4, 3).items()}
    return {**x, **changes}


@pytest.mark.parametrize("x,error,match", [
    (bad(q=torch.randn(2, 5, 4, dtype=F64)), ShapeError, r"q must have shape \(B, T, H, K\)"),
    (bad(k=torch.randn(2, 5, 2, 3, dtype=F64)), ShapeError, "k must have shape"),
    (bad(v=torch.randn(3, 5, 2, 3, dtype=F64)), ShapeError, "v must have shape"),
    (bad(v=torch.randn(2, 5, 2, dtype=F64)), ShapeError, "v must have shape"),
    (bad(beta=torch.rand(2, 5, 1, dtype=F64)), ShapeError, "beta must have shape"),
    (bad(g=-torch.rand(2, 4, 2, dtype=F64)), ShapeError, "g must have shape"),
    (bad(g=torch.rand(2, 5, 2, dtype=F64)), ConfigError, "g is a log-decay and must be <= 0"),
    (bad(initial_state=torch.zeros(2, 2, 3, 4, dtype=F64)), ShapeError, r"initial_state must have shape \(B, H, K"),
    (bad(g=None), ShapeError, "g must be a tensor of log-decays"),
    (bad(beta=torch.rand(2, 5, 2)), ShapeError, "cast every input to one dtype"),
])
def test_bad_input_raises(x, error, match):
    with pytest.raises(error, match=match):
        call("gated_delta_rule", x)


@pytest.mark.parametrize("kw,match", [({"mode": "fused"}, "mode must be one of"),
                                      ({"chunk_size": 0}, "chunk_size must be a positive int"),
                                      ({"chunk_size": 8.0}, "chunk_size must be a positive int")])
def test_bad_options_raise(kw, match):
    with pytest.raises(ConfigError, match=match):
        call("delta_rule", bad(), **kw)


def test_delta_product_needs_the_householder_axis():
    x = bad()
    with pytest.raises(ShapeError, match=r"k must have shape \(B, T, n_h, H, K\)"):
        delta_product(x["q"], x["k"], x["v"], x["beta"])
    k = torch.randn(2, 5, 2, 2, 4, dtype=F64)
    with pytest.raises(ShapeError, match=r"beta must have shape \(B, T, n_h, H\)"):
        delta_product(x["q"], k, torch.randn(2, 5, 2, 2, 3, dtype=F64), x["beta"])
