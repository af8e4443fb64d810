"""mLSTM op: the chunk form against the reference loop on outputs, final state (C, n, m) and every gradient;
the loop against an unstabilised float64 loop written out here; state hand-off across split points."""
import pytest
import torch
import torch.nn.functional as F
from helpers import as_float32, assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.mlstm import MLSTMState, mlstm

F64 = torch.float64
NAMES = ("q", "k", "v", "i", "f")


def make_inputs(B, T, H, K, V, with_state=True, seed=0, gate_scale=3.0):
    """float64 leaves: q, k, v ~ N(0, 1), gate pre-activations ~ N(0, gate_scale^2), a random (C, n, m) state."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, s=1.0):
        return s * torch.randn(*shape, generator=gen, dtype=F64)

    x = {"q": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V),
         "i": randn(B, T, H, s=gate_scale), "f": randn(B, T, H, s=gate_scale)}
    if with_state:
        x.update(C0=randn(B, H, K, V), n0=randn(B, H, K), m0=randn(B, H))
    return {name: t.requires_grad_() for name, t in x.items()}


def call(x, **kw):
    state = (x["C0"], x["n0"], x["m0"]) if "C0" in x else None
    return mlstm(*(x[name] for name in NAMES), initial_state=state, **kw)


def outputs_and_grads(x, **kw):
    """[o, C, n, m, d/d each input] for a fixed random weighting of o and the final state."""
    o, state = call(x, **kw)
    return with_grads([o, *state], x.values())


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("T,chunk_size", [(1, 64), (63, 16), (500, 64)])
def test_chunk_matches_recurrent(T, chunk_size, with_state, forget):
    """float32 to 1e-4 of the float64 loop with the sigmoid gate. The exponential forget gate lets the memory
    grow, so |n^T q| in the denominator can come close to 0; there the float32 loop itself is only ~4e-4 off,
    and the chunk form is held to 2e-3."""
    B, H, K, V = 2, 2, 8, 8
    x = make_inputs(B, T, H, K, V, with_state=with_state)
    want = outputs_and_grads(x, mode="recurrent", forget=forget)
    assert_rel_close(outputs_and_grads(x, mode="chunk", chunk_size=chunk_size, forget=forget), want, 1e-10)
    got32 = outputs_and_grads(as_float32(x), mode="auto", chunk_size=chunk_size, forget=forget)
    assert_rel_close(got32, want, 1e-4 if forget == "sigmoid" else 2e-3)


@settings(max_examples=15, deadline=None)
@given(T=st.integers(1, 40), chunk_size=st.integers(1, 45), K=st.integers(1, 5), V=st.integers(1, 5),
       forget=st.sampled_from(["sigmoid", "exp"]), with_state=st.booleans())
def test_chunk_matches_recurrent_any_shape(T, chunk_size, K, V, forget, with_state):
    x = make_inputs(2, T, 2, K, V, with_state=with_state, seed=T * 1000 + chunk_size)
    want = outputs_and_grads(x, mode="recurrent", forget=forget)
    assert_rel_close(outputs_and_grads(x, mode="chunk", chunk_size=chunk_size, forget=forget), want, 1e-10)


@settings(max_examples=12, deadline=None)
@given(t=st.integers(0, 40), mode=st.sampled_from(["chunk", "recurrent"]), forget=st.sampled_from(["sigmoid", "exp"]))
def test_split_carries_state(t, mode, forget):
    x = make_inputs(2, 40, 2, 4, 3)
    kw = {"mode": mode, "chunk_size": 8, "forget": forget}
    o, state = call(x, **kw)
    o1, state1 = call({name: val[:, :t] if name in NAMES else val for name, val in x.items()}, **kw)
    C1, n1, m1 = state1
    o2, state2 = call({**{name: x[name][:, t:] for name in NAMES}, "C0": C1, "n0": n1, "m0": m1}, **kw)
    assert_rel_close([torch.cat([o1, o2], dim=1), *state2], [o, *state], 1e-10)


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
def test_large_gate_preactivations_stay_finite(forget):
    """Gate pre-activations of +-(40..60): exp(i) up to 1e26 and cumulative log-gates of thousands inside a
    chunk. Every exponent the chunk form takes is <= 0, so nothing overflows and it still agrees with the loop.
    The magnitudes are drawn continuously: with exactly +-50 the max in m_t ties, where (C, n, m) has no
    gradient and the two forms may pick different subgradients."""
    x = make_inputs(2, 130, 2, 4, 4, seed=3, gate_scale=1.0)
    gen = torch.Generator().manual_seed(4)
    for name in ("i", "f"):
        sign = 2 * torch.randint(0, 2, x[name].shape, generator=gen) - 1
        x[name] = (sign * (40 + 20 * torch.rand(x[name].shape, generator=gen))).to(F64).requires_grad_()
    want = outputs_and_grads(x, mode="recurrent", forget=forget)
    assert_rel_close(outputs_and_grads(x, mode="chunk", chunk_size=32, forget=forget), want, 1e-10)
    got32 = outputs_and_grads(as_float32(x), mode="chunk", chunk_size=32, forget=forget)
    assert_rel_close(got32, want, 1e-3)


def unstabilised_loop(x, forget, eps):
    """The mLSTM without a stabiliser, for B = H = 1 and scale 1, from a zero state: C_t = f_t C + exp(i_t) k v^T,
    n_t = f_t n + exp(i_t) k, h_t = C_t^T q_t / (max(|n_t^T q_t|, 1) + eps). Fine in float64 for small gates."""
    q, k, v = (x[name][0, :, 0] for name in ("q", "k", "v"))  # (T, K|V)
    i, f = x["i"][0, :, 0], x["f"][0, :, 0]  # (T,)
    f = torch.sigmoid(f) if forget == "sigmoid" else torch.exp(f)
    C, n = torch.zeros(q.shape[1], v.shape[1], dtype=F64), torch.zeros(q.shape[1], dtype=F64)
    outs = []
    for t in range(q.shape[0]):
        C = f[t] * C + torch.exp(i[t]) * torch.outer(k[t], v[t])
        n = f[t] * n + torch.exp(i[t]) * k[t]
        outs.append(C.T @ q[t] / (torch.maximum((n @ q[t]).abs(), torch.ones((), dtype=F64)) + eps))
    return torch.stack(outs), C, n


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
@pytest.mark.parametrize("mode", ["recurrent", "chunk"])
def test_matches_unstabilised_equations(mode, forget):
    """With m_0 = 0 the stabilised h_t equals the paper's unstabilised h_t when eps = 0 (the floor
    max(|n^T q|, 1) becomes max(|n~^T q|, exp(-m)) after dividing by exp(m)), and exp(m) (C, n) is the true
    memory."""
    x = make_inputs(1, 9, 1, 3, 2, with_state=False, gate_scale=1.0)
    o, (C, n, m) = call(x, mode=mode, chunk_size=4, scale=1.0, forget=forget, eps=0.0)
    o_want, C_want, n_want = unstabilised_loop(x, forget, eps=0.0)
    scale = m[0, 0].exp()
    assert_rel_close([o[0, :, 0], scale * C[0, 0], scale * n[0, 0]], [o_want, C_want, n_want], 1e-12)


def test_zero_state_is_the_default():
    x = make_inputs(2, 7, 2, 4, 3, with_state=False)
    o, state = call(x)
    zeros = {"C0": torch.zeros(2, 2, 4, 3, dtype=F64), "n0": torch.zeros(2, 2, 4, dtype=F64),
             "m0": torch.zeros(2, 2, dtype=F64)}
    o_want, state_want = call({**x, **zeros})
    assert isinstance(state, MLSTMState)
    assert_rel_close([o, *state], [o_want, *state_want], 1e-14)


def test_forget_modes_agree_on_log_gates():
    """forget="exp" takes log f directly, so passing logsigmoid(f) must reproduce forget="sigmoid"."""
    x = make_inputs(2, 11, 2, 4, 3)
    o, state = call(x, forget="sigmoid")
    o_want, state_want = call({**x, "f": F.logsigmoid(x["f"])}, forget="exp")
    assert_rel_close([o, *state], [o_want, *state_want], 1e-12)


def test_default_scale_is_inverse_sqrt_of_key_width():
    x = make_inputs(2, 9, 2, 4, 3)
    o, _ = call(x)
    o_want, _ = call({**x, "q": x["q"] * 4 ** -0.5}, scale=1.0)
    assert_rel_close([o], [o_want], 1e-12)


def test_empty_sequence_returns_initial_state():
    x = make_inputs(2, 0, 2, 4, 3)
    o, state = call(x)
    assert o.shape == (2, 0, 2, 3)
    assert all(torch.equal(a, b) for a, b in zip(state, (x["C0"], x["n0"], x["m0"])))


def bad(**changes):
    x = {name: t.detach() for name, t in make_inputs(2, 5, 2, 4, 3).items()}
    return {**x, **changes}


@pytest.mark.parametrize("x,error,match", [
    (bad(q=torch.randn(2, 5, 4, dtype=F64)), ShapeError, r"q must have shape \(B, T, H, K\)"),
    (bad(k=torch.randn(2, 5, 2, 3, dtype=F64)), ShapeError, "k must have shape"),
    (bad(v=torch.randn(3, 5, 2, 3, dtype=F64)), ShapeError, "v must have shape"),
    (bad(v=torch.randn(2, 5, 2, dtype=F64)), ShapeError, "v must have shape"),
    (bad(i=torch.randn(2, 5, 1, dtype=F64)), ShapeError, "i must have shape"),
    (bad(f=torch.randn(2, 4, 2, dtype=F64)), ShapeError, "f must have shape"),
    (bad(C0=torch.zeros(2, 2, 3, 4, dtype=F64)), ShapeError, r"initial_state.C must have shape \(B, H, K, V\)"),
    (bad(n0=torch.zeros(2, 2, 3, dtype=F64)), ShapeError, r"initial_state.n must have shape \(B, H, K\)"),
    (bad(m0=torch.zeros(2, dtype=F64)), ShapeError, r"initial_state.m must have shape \(B, H\)"),
    (bad(f=torch.rand(2, 5, 2)), ShapeError, "cast every input to one dtype"),
])
def test_bad_input_raises(x, error, match):
    with pytest.raises(error, match=match):
        call(x)


def test_initial_state_must_be_a_triple():
    x = bad()
    with pytest.raises(ShapeError, match=r"initial_state must be a tuple \(C, n, m\)"):
        mlstm(*(x[name] for name in NAMES), initial_state=x["C0"])


@pytest.mark.parametrize("kw,match", [({"mode": "fused"}, "mode must be one of"),
                                      ({"chunk_size": 0}, "chunk_size must be a positive int"),
                                      ({"chunk_size": 8.0}, "chunk_size must be a positive int"),
                                      ({"forget": "tanh"}, "forget must be one of"),
                                      ({"eps": -1.0}, "eps must be a number >= 0")])
def test_bad_options_raise(kw, match):
    with pytest.raises(ConfigError, match=match):
        call(bad(), **kw)


def huge_gate_inputs(size, forget, dtype):
    """Leaves q, k, v ~ N(0, 1) and gates of magnitude ``size`` (B = 2, T = 21, H = 2): head 0 has i = -size + N(0, 1),
    so once a forget gate closes m_t sits near -size, where exp(-m_t) overflows; head 1 has i ~ N(0, size^2).
    Both forget modes get the same log gates, log f = logsigmoid(N(0, size^2))."""
    gen = torch.Generator().manual_seed(7)
    B, T, H, K, V = 2, 21, 2, 4, 3

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    i = torch.stack([-size + randn(B, T), size * randn(B, T)], dim=-1)  # (B, T, H)
    f = size * randn(B, T, H)
    f = f if forget == "sigmoid" else F.logsigmoid(f)
    x = {"q": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V), "i": i, "f": f}
    return {name: t.to(dtype).requires_grad_() for name, t in x.items()}


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
@pytest.mark.parametrize("size", [100.0, 1000.0])
def test_huge_gate_preactivations_give_finite_gradients(size, forget):
    """The read-out floor exp(-m_t) overflows once m_t < -88 in float32 (< -709 in float64); outputs, final
    state and every gradient must stay finite all the same, and the chunk form must still match the loop. The
    tolerance is loose for the q gradient: in head 1, m_t is large, the floor vanishes and |n^T q| can come close
    to 0, where the float32 loop itself is ~2e-3 off the float64 one."""
    x = huge_gate_inputs(size, forget, torch.float32)
    want = outputs_and_grads(x, mode="recurrent", forget=forget)
    got = outputs_and_grads(x, mode="chunk", chunk_size=8, forget=forget)
    m = want[3]
    assert (m[:, 0] < -88).all(), "head 0 should end far below float32's exp range"
    assert all(torch.isfinite(t).all() for t in want)
    assert want[0][..., 1, :].abs().max() > 1e-2, "head 1 should give a non-trivial output"
    assert_rel_close(got, [t.double() for t in want], 1e-2)
    x64 = {name: t.detach().double().requires_grad_() for name, t in x.items()}
    assert_rel_close(got, outputs_and_grads(x64, mode="recurrent", forget=forget), 1e-2)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_empty_batch(mode):
    x = make_inputs(0, 11, 2, 4, 3)
    o, (C, n, m) = call(x, mode=mode, chunk_size=4)
    assert o.shape == (0, 11, 2, 3)
    assert (C.shape, n.shape, m.shape) == ((0, 2, 4, 3), (0, 2, 4), (0, 2))
    o.sum().backward()
    assert x["q"].grad.shape == (0, 11, 2, 4)
