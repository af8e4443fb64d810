"""Titans' memory op and mixer: the chunked form and the analytic token loop against an independent token loop
that takes each gradient with torch.autograd.grad (create_graph=True, so the outer gradients go through it), on
outputs, final states and every input gradient in float64; chunk_size = 1 against plain online gradient
descent; splits anywhere with the state and chunk offset carried; the mixer with rows at different places in
their chunks."""
import pytest
import torch
import torch.nn.functional as F
from helpers import as_float32, assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.mixers import build_mixer, select_state
from rnnzoo.ops.titans import MemoryState, titans_memory

F64 = torch.float64
B, H, K, V, D_MEM = 2, 2, 4, 3, 5


def make_inputs(T, n_layers=2, seed=0):
    """float64 leaves: unit keys, gates in (0, 1) with a modest learning rate, distinct weights and anchor."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=gen, dtype=F64)

    def rand(*shape, scale=1.0):
        return scale * torch.rand(*shape, generator=gen, dtype=F64)

    widths = [K] + [D_MEM] * (n_layers - 1) + [V]
    shapes = [(B, H, d_out, d_in) for d_in, d_out in zip(widths[:-1], widths[1:])]
    x = {"q": randn(B, T, H, K), "k": F.normalize(randn(B, T, H, K), dim=-1), "v": randn(B, T, H, V),
         "eta": rand(B, T, H), "theta": rand(B, T, H, scale=0.3), "alpha": rand(B, T, H, scale=0.3)}
    x.update({f"W{l}": randn(*s, scale=0.5) for l, s in enumerate(shapes)})
    x.update({f"S{l}": randn(*s, scale=0.1) for l, s in enumerate(shapes)})
    x.update({f"P{l}": randn(*s, scale=0.5) for l, s in enumerate(shapes)})
    return {name: t.requires_grad_() for name, t in x.items()}


def state_of(x):
    n = sum(name.startswith("W") for name in x)
    return MemoryState(*(tuple(x[f"{f}{l}"] for l in range(n)) for f in "WSP"))


def call(x, **kw):
    o, s = titans_memory(x["q"], x["k"], x["v"], x["eta"], x["theta"], x["alpha"], state_of(x), **kw)
    return [o, *s.weights, *s.momentum, *s.anchor]


def memory_mlp(weights, x):
    """The memory MLP written out again: x (B, H, d_0) through W_l (B, H, d_l, d_{l-1}), SiLU between."""
    for l, W in enumerate(weights):
        x = torch.einsum("bhoi,bhi->bho", W, x)
        x = F.silu(x) if l < len(weights) - 1 else x
    return x


def autograd_loop(x, chunk_size, offset=0, anchored=True, max_grad_norm=None):
    """Token by token; each gradient of ||M(k_t) - v_t||^2 by autograd at the chunk-start weights (the anchor),
    or at M_{t-1} with anchored=False; with ``max_grad_norm``, each memory's gradient (all layers, per batch
    row and head) rescaled to that norm where it is longer."""
    s = state_of(x)
    W, S, P = list(s.weights), list(s.momentum), list(s.anchor)
    outs = []
    for t in range(x["q"].shape[1]):
        at = P if anchored else W
        loss = (memory_mlp(at, x["k"][:, t]) - x["v"][:, t]).pow(2).sum()
        grads = torch.autograd.grad(loss, at, create_graph=True)
        if max_grad_norm is not None:
            norm = torch.stack([u.square().sum((-2, -1)) for u in grads]).sum(0).sqrt()[..., None, None]
            grads = [u * torch.where(norm > max_grad_norm, max_grad_norm / norm, 1.0) for u in grads]
        eta, theta, alpha = (x[g][:, t, :, None, None] for g in ("eta", "theta", "alpha"))
        S = [eta * S_l - theta * u for S_l, u in zip(S, grads)]
        W = [(1 - alpha) * W_l + S_l for W_l, S_l in zip(W, S)]
        outs.append(memory_mlp(W, x["q"][:, t]))
        if (offset + t + 1) % chunk_size == 0:
            P = W
    return [torch.stack(outs, dim=1), *W, *S, *P]


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("chunk_size,offset", [(1, 0), (4, 0), (4, 3), (5, 2), (64, 0), (64, 60)])
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_matches_autograd_token_loop(mode, chunk_size, offset, n_layers):
    x = make_inputs(11, n_layers)
    want = with_grads(autograd_loop(x, chunk_size, offset), x.values())
    got = with_grads(call(x, chunk_size=chunk_size, offset=offset, mode=mode), x.values())
    assert_rel_close(got, want, 1e-10)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("chunk_size,offset", [(1, 0), (4, 3)])
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_clipped_gradients_match_autograd_token_loop(mode, chunk_size, offset, n_layers):
    """The inputs' gradient norms run from about 0.1 to 15, so a bound of 2.5 clips some tokens and not others;
    a bound above them all changes nothing."""
    x = make_inputs(11, n_layers)
    kw = dict(chunk_size=chunk_size, offset=offset, mode=mode)
    want = with_grads(autograd_loop(x, chunk_size, offset, max_grad_norm=2.5), x.values())
    got = with_grads(call(x, max_grad_norm=2.5, **kw), x.values())
    assert_rel_close(got, want, 1e-10)
    free = call(x, **kw)
    assert not torch.allclose(got[0], free[0])
    assert_rel_close(call(x, max_grad_norm=1e6, **kw), free, 0)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_chunk_size_one_is_online_gradient_descent(mode):
    x = make_inputs(9)
    x.update(P0=x["W0"], P1=x["W1"])  # at a chunk boundary the anchor is the weights
    want = with_grads(autograd_loop(x, 1, anchored=False)[:5], x.values())  # o, W, S
    got = call(x, chunk_size=1, mode=mode)
    assert_rel_close(with_grads(got[:5], x.values()), want, 1e-10)
    assert_rel_close(got[5:], got[1:3], 0)


@settings(max_examples=15, deadline=None)
@given(chunk_size=st.integers(1, 6), offset=st.integers(0, 5), t=st.integers(0, 13),
       mode=st.sampled_from(["chunk", "recurrent"]))
def test_split_with_state_and_offset_carried(chunk_size, offset, t, mode):
    offset %= chunk_size
    x = make_inputs(13, seed=t)
    kw = dict(chunk_size=chunk_size, mode=mode)
    o, *state = call(x, offset=offset, **kw)
    gates = ("q", "k", "v", "eta", "theta", "alpha")
    first = call({**x, **{g: x[g][:, :t] for g in gates}}, offset=offset, **kw)
    n = len(state) // 3
    carried = {f"{f}{l}": first[1 + i * n + l] for i, f in enumerate("WSP") for l in range(n)}
    second = call({**carried, **{g: x[g][:, t:] for g in gates}}, offset=(offset + t) % chunk_size, **kw)
    assert_rel_close([torch.cat([first[0], second[0]], dim=1), *second[1:]], [o, *state], 1e-10)


def test_float32_chunk_form_is_close():
    x = make_inputs(40, seed=3)
    want = with_grads(call(x, chunk_size=8, mode="recurrent"), x.values())
    x32 = as_float32(x)
    assert_rel_close(with_grads(call(x32, chunk_size=8), x32.values()), want, 1e-4)


def test_one_step_with_theta_one_half_stores_the_value():
    """A linear memory, a unit key, theta = 1/2, no momentum or decay: W - (W k - v) k^T maps k to v."""
    x = make_inputs(1, n_layers=1)
    x = {name: t.detach() for name, t in x.items()}
    x.update(q=x["k"], eta=torch.zeros(B, 1, H, dtype=F64), theta=torch.full((B, 1, H), 0.5, dtype=F64),
             alpha=torch.zeros(B, 1, H, dtype=F64), S0=torch.zeros_like(x["S0"]), P0=x["W0"])
    for mode in ("chunk", "recurrent"):
        torch.testing.assert_close(call(x, chunk_size=3, mode=mode)[0], x["v"])


def test_empty_sequence_returns_the_state():
    x = make_inputs(0)
    o, *state = call(x)
    assert o.shape == (B, 0, H, V)
    assert all(a is b for a, b in zip(state, state_of(x).weights + state_of(x).momentum + state_of(x).anchor))


def test_bad_inputs_raise_clear_errors():
    x = make_inputs(5)
    with pytest.raises(ConfigError, match="theta must lie in"):
        call({**x, "theta": x["theta"] + 1})
    with pytest.raises(ConfigError, match="offset"):
        call(x, chunk_size=4, offset=4)
    with pytest.raises(ConfigError, match="mode"):
        call(x, mode="fast")
    for bad in (0, -1.0, float("inf"), True, "1"):
        with pytest.raises(ConfigError, match="max_grad_norm"):
            call(x, max_grad_norm=bad)
        with pytest.raises(ConfigError, match="max_grad_norm"):
            build_mixer("titans", 8, max_grad_norm=bad)
    with pytest.raises(ShapeError, match="alpha"):
        call({**x, "alpha": x["alpha"][:, :, :1]})
    with pytest.raises(ShapeError, match="weights"):
        call({**x, "W1": x["W1"][:, :, :2]})
    with pytest.raises(ShapeError, match="momentum"):
        call({**x, "S0": x["S0"].float()})
    with pytest.raises(ShapeError, match="MemoryState"):
        titans_memory(x["q"], x["k"], x["v"], x["eta"], x["theta"], x["alpha"], None)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_mixer_rows_at_different_places_in_their_chunks(mode):
    """Rows whose states have read different numbers of tokens run as groups; each matches the row alone."""
    torch.manual_seed(0)
    mixer = build_mixer("titans", 8, n_heads=2, chunk_size=3, mode=mode).double()
    lengths = torch.tensor([1, 2, 3, 5])
    _, state = mixer(torch.randn(4, 5, 8, dtype=F64), lengths=lengths)
    assert state.pos.tolist() == lengths.tolist()
    x = torch.randn(4, 7, 8, dtype=F64)
    y, final = mixer(x, state)
    for b in range(4):
        y_b, s_b = mixer(x[b:b + 1], select_state(state, [b]))
        torch.testing.assert_close(y[b:b + 1], y_b, rtol=1e-10, atol=1e-10)
        for got, want in zip(select_state(final, [b]).weights, s_b.weights):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_mixer_memory_starts_from_its_learned_weights():
    mixer = build_mixer("titans", 8, n_mem_layers=3)
    state = mixer.init_state(2)
    assert [tuple(W.shape) for W in state.weights] == [(2, 1, 16, 8), (2, 1, 16, 16), (2, 1, 8, 16)]
    for W, W0 in zip(state.weights, mixer.memory_init):
        torch.testing.assert_close(W, W0.expand_as(W))
        assert W.data_ptr() != W0.data_ptr(), "a state must not share storage with the parameters"
    with pytest.raises(ConfigError, match="n_mem_layers"):
        build_mixer("titans", 8, n_mem_layers=0)
    with pytest.raises(ConfigError, match="d_mem"):
        build_mixer("titans", 8, d_mem=0)


def test_inner_learning_rate_is_bounded_by_max_lr():
    """theta_t = max_lr * sigmoid(.) starts at min(0.01, max_lr / 2) and never passes max_lr, however large the
    gate's logit."""
    x = torch.randn(3, 6, 8)
    for max_lr, start in ((1.0, 0.01), (0.05, 0.01), (0.01, 0.005)):
        mixer = build_mixer("titans", 8, n_heads=2, max_lr=max_lr)
        with torch.no_grad():
            mixer.gate_proj.weight.zero_()
            theta = mixer._inputs(x, mixer.init_state(3).conv)[4]
            torch.testing.assert_close(theta, torch.full_like(theta, start))
            mixer.gate_proj.bias.fill_(50.0)
            assert float(mixer._inputs(x, mixer.init_state(3).conv)[4].max()) <= max_lr * (1 + 1e-6)
    for bad in (0, -0.1, 1.5, True, "0.1"):
        with pytest.raises(ConfigError, match="max_lr"):
            build_mixer("titans", 8, max_lr=bad)
    assert build_mixer("titans_mag", 8, max_lr=0.02).memory.max_lr == 0.02


@pytest.mark.parametrize("max_lr, max_grad_norm, finite", [(1.0, None, False), (0.01, None, True), (1.0, 1.0, True)])
def test_bounded_inner_step_keeps_the_memory_finite(max_lr, max_grad_norm, finite):
    """theta at max_lr, momentum 0.9 (its initial value), no forgetting, unit-scale inputs as a pre-norm block
    gives them, over a long stream: the paper's form (max_lr=1, no clipping) diverges; a bound of 0.01 on theta,
    or clipping each token's gradient to norm 1 (the default), keeps the MLP memory finite."""
    torch.manual_seed(0)
    mixer = build_mixer("titans", 32, n_heads=1, max_lr=max_lr, max_grad_norm=max_grad_norm)
    with torch.no_grad():
        mixer.gate_proj.weight.zero_()
        mixer.gate_proj.bias.copy_(torch.tensor([2.2, 50.0, -50.0]))  # eta 0.9, theta max_lr, alpha 0
        y, state = mixer(torch.randn(2, 512, 32))
    assert bool(torch.isfinite(y).all() and all(torch.isfinite(W).all() for W in state.weights)) == finite
