"""LSTM and GRU: rnnzoo's loops and fused paths against torch.nn, and the peephole / layer-norm variants
against the equations written out independently here."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.gru import GRU, GRUState
from rnnzoo.mixers.lstm import LSTM, LSTMState
from rnnzoo.ops.classic.gru import gru
from rnnzoo.ops.classic.lstm import LSTMLayerNorm, LSTMPeephole, lstm

F64 = torch.float64


def copy_from_torch(ours, theirs):
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            getattr(ours, name.removesuffix("_l0")).copy_(p)


def grads(loss, inputs):
    return torch.autograd.grad(loss, inputs)


def randn_from(*seed_parts):
    """A float64 randn(*shape) seeded by the example's sizes, so each hypothesis example is reproducible."""
    g = torch.Generator().manual_seed(hash(seed_parts) % 2**31)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=F64)
    return randn


def assert_all_close(a, b, atol=1e-12):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=atol, rtol=0)


@pytest.mark.parametrize("mode", ["fused", "reference"])
@pytest.mark.parametrize("proj_size,bias", [(0, True), (0, False), (2, True), (2, False)])
def test_lstm_matches_torch_with_gradients(mode, proj_size, bias):
    torch.manual_seed(0)
    B, T, D, H = 2, 5, 3, 4
    P = proj_size or H
    ours = LSTM(D, hidden_size=H, proj_size=proj_size, bias=bias, mode=mode, project_output=False).double()
    theirs = nn.LSTM(D, H, proj_size=proj_size, bias=bias, batch_first=True).double()
    copy_from_torch(ours, theirs)
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, P, dtype=F64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=F64, requires_grad=True)
    y, state = ours(x, LSTMState(h0, c0))
    y_ref, (h_ref, c_ref) = theirs(x, (h0[None], c0[None]))
    assert_all_close([y, state.h, state.c], [y_ref, h_ref[0], c_ref[0]])

    gy, gh, gc = torch.randn_like(y), torch.randn_like(state.h), torch.randn_like(state.c)
    names = [n for n, _ in theirs.named_parameters()]
    ours_in = [x, h0, c0] + [getattr(ours, n.removesuffix("_l0")) for n in names]
    theirs_in = [x, h0, c0] + [getattr(theirs, n) for n in names]
    g_ours = grads((y * gy).sum() + (state.h * gh).sum() + (state.c * gc).sum(), ours_in)
    g_ref = grads((y_ref * gy).sum() + (h_ref[0] * gh).sum() + (c_ref[0] * gc).sum(), theirs_in)
    assert_all_close(g_ours, g_ref)


@pytest.mark.parametrize("mode", ["fused", "reference"])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_matches_torch_with_gradients(mode, bias):
    torch.manual_seed(1)
    B, T, D, H = 2, 5, 3, 4
    ours = GRU(D, hidden_size=H, bias=bias, mode=mode, project_output=False).double()
    theirs = nn.GRU(D, H, bias=bias, batch_first=True).double()
    copy_from_torch(ours, theirs)
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=F64, requires_grad=True)
    y, state = ours(x, GRUState(h0))
    y_ref, h_ref = theirs(x, h0[None])
    assert_all_close([y, state.h], [y_ref, h_ref[0]])

    gy, gh = torch.randn_like(y), torch.randn_like(state.h)
    names = [n for n, _ in theirs.named_parameters()]
    g_ours = grads((y * gy).sum() + (state.h * gh).sum(),
                   [x, h0] + [getattr(ours, n.removesuffix("_l0")) for n in names])
    g_ref = grads((y_ref * gy).sum() + (h_ref[0] * gh).sum(), [x, h0] + [getattr(theirs, n) for n in names])
    assert_all_close(g_ours, g_ref)


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 5),
       proj=st.integers(0, 4), bias=st.booleans(), given_state=st.booleans())
def test_lstm_op_reference_equals_fused(B, T, D, H, proj, bias, given_state):
    proj = proj if proj < H else 0
    P = proj or H
    r = randn_from(B, T, D, H)
    x, w_ih, w_hh = r(B, T, D), r(4 * H, D), r(4 * H, P)
    b_ih, b_hh = (r(4 * H), r(4 * H)) if bias else (None, None)
    w_hr = r(P, H) if proj else None
    init = (r(B, P), r(B, H)) if given_state else None
    y_f, (h_f, c_f) = lstm(x, w_ih, w_hh, b_ih, b_hh, weight_hr=w_hr, initial_state=init, mode="fused")
    y_r, (h_r, c_r) = lstm(x, w_ih, w_hh, b_ih, b_hh, weight_hr=w_hr, initial_state=init, mode="reference")
    assert y_f.shape == (B, T, P) and h_f.shape == (B, P) and c_f.shape == (B, H)
    assert_all_close([y_f, h_f, c_f], [y_r, h_r, c_r])


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 5), bias=st.booleans(),
       given_state=st.booleans())
def test_gru_op_reference_equals_fused(B, T, D, H, bias, given_state):
    r = randn_from(B, T, D, H)
    x, w_ih, w_hh = r(B, T, D), r(3 * H, D), r(3 * H, H)
    b_ih, b_hh = (r(3 * H), r(3 * H)) if bias else (None, None)
    h0 = r(B, H) if given_state else None
    y_f, h_f = gru(x, w_ih, w_hh, b_ih, b_hh, initial_state=h0, mode="fused")
    y_r, h_r = gru(x, w_ih, w_hh, b_ih, b_hh, initial_state=h0, mode="reference")
    assert_all_close([y_f, h_f], [y_r, h_r])


def layer_norm_by_hand(v, gain, shift):
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + 1e-5) * gain + shift


def lstm_by_gates(m, x, h, c):
    """The peephole / layer-norm LSTM equations (Gers & Schmidhuber 2000; Ba et al. 2016), gate by gate."""
    H = m.hidden_size
    ys = []
    for t in range(x.shape[1]):
        from_x, from_h = x[:, t] @ m.weight_ih.T, h @ m.weight_hh.T
        if m.ln_ih is not None:
            from_x = layer_norm_by_hand(from_x, m.ln_ih.weight, m.ln_ih.bias)
            from_h = layer_norm_by_hand(from_h, m.ln_hh.weight, m.ln_hh.bias)
        pre = from_x + from_h + m.bias_ih + m.bias_hh
        gate = {name: pre[:, k * H:(k + 1) * H] for k, name in enumerate("ifgo")}
        peep = m.weight_ci is not None
        i = torch.sigmoid(gate["i"] + (m.weight_ci * c if peep else 0))
        f = torch.sigmoid(gate["f"] + (m.weight_cf * c if peep else 0))
        c = f * c + i * torch.tanh(gate["g"])
        o = torch.sigmoid(gate["o"] + (m.weight_co * c if peep else 0))
        squashed = torch.tanh(layer_norm_by_hand(c, m.ln_c.weight, m.ln_c.bias) if m.ln_ih is not None else c)
        h = o * squashed
        if m.weight_hr is not None:
            h = h @ m.weight_hr.T
        ys.append(h)
    return torch.stack(ys, 1), h, c


VARIANTS = [dict(peepholes=True), dict(layer_norm=True), dict(peepholes=True, layer_norm=True),
            dict(peepholes=True, layer_norm=True, proj_size=3)]


def randomise_norms(m):
    with torch.no_grad():
        for ln in (m.ln_ih, m.ln_hh, m.ln_c):
            if ln is not None:
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.normal_(0.0, 0.3)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "+".join(v))
def test_lstm_variants_match_equations(variant):
    torch.manual_seed(2)
    m = LSTM(3, hidden_size=5, project_output=False, **variant).double()
    randomise_norms(m)
    x = torch.randn(2, 6, 3, dtype=F64)
    state = LSTMState(torch.randn(2, variant.get("proj_size", 5), dtype=F64), torch.randn(2, 5, dtype=F64))
    y, new = m(x, state)
    y_ref, h_ref, c_ref = lstm_by_gates(m, x, state.h, state.c)
    assert_all_close([y, new.h, new.c], [y_ref, h_ref, c_ref])


@pytest.mark.parametrize("variant", VARIANTS + [dict(proj_size=2)], ids=lambda v: "+".join(v))
def test_lstm_step_loop_equals_forward(variant):
    torch.manual_seed(3)
    m = LSTM(4, hidden_size=5, **variant).double()
    randomise_norms(m)
    x = torch.randn(3, 7, 4, dtype=F64)
    state = LSTMState(torch.randn(3, variant.get("proj_size", 5), dtype=F64), torch.randn(3, 5, dtype=F64))
    y, final = m(x, state)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    assert y.shape == (3, 7, 4)
    assert_all_close([torch.stack(ys, 1), state.h, state.c], [y, final.h, final.c])


def test_gru_step_loop_equals_forward():
    torch.manual_seed(4)
    m = GRU(4, hidden_size=6).double()
    x = torch.randn(3, 7, 4, dtype=F64)
    state = GRUState(torch.randn(3, 6, dtype=F64))
    y, final = m(x, state)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    assert_all_close([torch.stack(ys, 1), state.h], [y, final.h])


def test_layer_norm_lstm_ignores_weight_scale():
    """LN_x and LN_h normalise W_ih x and W_hh h before the biases are added, so scaling either matrix by a
    positive constant changes nothing (up to LN's eps, small beside these pre-activations' variance)."""
    torch.manual_seed(5)
    m = LSTM(3, hidden_size=4, layer_norm=True).double()
    randomise_norms(m)
    with torch.no_grad():
        m.weight_ih.normal_()
        m.weight_hh.normal_()
    x = torch.randn(2, 5, 3, dtype=F64)
    y, _ = m(x)
    with torch.no_grad():
        m.weight_ih.mul_(3.0)
        m.weight_hh.mul_(5.0)
    y_scaled, _ = m(x)
    assert_all_close([y_scaled], [y], atol=1e-4)


@pytest.mark.parametrize("options", [{}, dict(layer_norm=True, orthogonal_init=True), dict(forget_bias=0.0),
                                     dict(forget_bias=2.5, proj_size=2)])
def test_forget_gate_bias_at_init(options):
    torch.manual_seed(6)
    H = 4
    m = LSTM(3, hidden_size=H, **options)
    total = m.bias_ih + m.bias_hh  # (4H,)
    expected = options.get("forget_bias", 1.0)
    assert torch.all(total[H:2 * H] == expected)
    for k in (0, 2, 3):
        assert not torch.all(total[k * H:(k + 1) * H] == expected)


def test_projection_widths_and_output_projection():
    m = LSTM(6, hidden_size=5, proj_size=3)
    assert m.d_out == 6 and m.weight_hh.shape == (20, 3) and m.weight_hr.shape == (3, 5)
    state = m.init_state(2)
    assert state.h.shape == (2, 3) and state.c.shape == (2, 5)
    y, new = m(torch.randn(2, 4, 6))
    assert y.shape == (2, 4, 6) and new.h.shape == (2, 3)
    raw = LSTM(6, hidden_size=5, proj_size=3, project_output=False)
    assert raw.d_out == 3 and raw.out_proj is None
    assert raw(torch.randn(2, 4, 6))[0].shape == (2, 4, 3)
    assert GRU(6, hidden_size=4, project_output=False)(torch.randn(2, 3, 6))[0].shape == (2, 3, 4)


@pytest.mark.parametrize("build,n_gates", [(lambda: LSTM(6, hidden_size=5, orthogonal_init=True), 4),
                                           (lambda: LSTM(6, hidden_size=5, proj_size=3, orthogonal_init=True), 4),
                                           (lambda: GRU(6, hidden_size=5, orthogonal_init=True), 3)])
def test_orthogonal_init_blocks(build, n_gates):
    torch.manual_seed(7)
    w = build().weight_hh.detach()
    blocks = w.chunk(n_gates, dim=0)
    assert len(blocks) == n_gates
    for block in blocks:  # (H, P) with P <= H: orthonormal columns
        torch.testing.assert_close(block.T @ block, torch.eye(block.shape[1]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", [dict(hidden_size=0), dict(proj_size=5), dict(proj_size=7), dict(proj_size=-1),
                                     dict(mode="fast"), dict(peepholes="yes"), dict(layer_norm=1),
                                     dict(bias=None), dict(forget_bias="1"), dict(forget_bias=float("nan")),
                                     dict(forget_bias=True), dict(mode="fused", peepholes=True),
                                     dict(mode="fused", layer_norm=True), dict(project_output=0)])
def test_lstm_bad_options(options):
    with pytest.raises(ConfigError):
        LSTM(4, hidden_size=options.pop("hidden_size", 5), **options)


@pytest.mark.parametrize("options", [dict(hidden_size=0), dict(hidden_size=2.0), dict(mode="cudnn"),
                                     dict(bias=1), dict(orthogonal_init="no")])
def test_gru_bad_options(options):
    with pytest.raises(ConfigError):
        GRU(4, **options)


def test_ops_reject_bad_calls():
    x, w_ih, w_hh, b = torch.randn(1, 2, 3), torch.randn(8, 3), torch.randn(8, 2), torch.randn(8)
    ones = torch.ones(2)
    with pytest.raises(ConfigError, match="peepholes"):
        lstm(x, w_ih, w_hh, peephole=LSTMPeephole(ones, ones, ones), mode="fused")
    norms = LSTMLayerNorm(torch.ones(8), torch.zeros(8), torch.ones(8), torch.zeros(8), ones, 0 * ones)
    with pytest.raises(ConfigError, match="layer norm"):
        lstm(x, w_ih, w_hh, layer_norm=norms, mode="fused")
    with pytest.raises(ConfigError, match="bias"):
        lstm(x, w_ih, w_hh, b, None)
    with pytest.raises(ConfigError, match="mode"):
        lstm(x, w_ih, w_hh, mode="cudnn")
    with pytest.raises(ConfigError, match="mode"):
        gru(x, torch.randn(6, 3), torch.randn(6, 2), mode="fast")
    y, _ = lstm(x, w_ih, w_hh, layer_norm=norms)  # 'auto' falls back to the loop
    assert y.shape == (1, 2, 2)
