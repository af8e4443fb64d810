"""xLSTM mixers: each block against a formulation written out here from the paper's equations (mLSTM: the
unstabilised parallel form; sLSTM: the unstabilised loop), mLSTM chunk vs recurrent on a long sequence, finite
outputs under huge gate pre-activations, and option checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.mixers import build_mixer, detach_state, flatten_state
from rnnzoo.ops.slstm import SLSTMState, slstm

F64 = torch.float64


def make(name, d=8, seed=0, **options):
    torch.manual_seed(seed)
    return build_mixer(name, d, **options).double()


def randomise_gates(mixer, scale, seed=1):
    """Replace the gate weights and biases (zero or tiny at init) by N(0, scale^2) draws."""
    gen = torch.Generator().manual_seed(seed)
    names = ("i_proj", "f_proj") if hasattr(mixer, "i_proj") else ("if_proj",)
    with torch.no_grad():
        for name in names:
            for p in getattr(mixer, name).parameters():
                p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def causal_conv(conv, x):
    """The short convolution written as a sum over taps: y_t = silu(b + sum_j w_j x_{t-K+1+j})."""
    K = conv.kernel_size
    xx = F.pad(x, (0, 0, K - 1, 0))  # (B, K-1+T, d)
    y = sum(conv.weight[:, j] * xx[:, j:j + x.shape[1]] for j in range(K)) + conv.bias
    return F.silu(y)


def group_norm(x, H, weight, bias, eps):
    """x (B, T, H*D): each head's D units to zero mean and unit variance, then the affine map."""
    xh = x.unflatten(-1, (H, -1))  # (B, T, H, D)
    mu, var = xh.mean(-1, keepdim=True), xh.var(-1, unbiased=False, keepdim=True)
    return ((xh - mu) / torch.sqrt(var + eps)).flatten(-2) * weight + bias


def block_diag_weight(block_linear):
    return torch.block_diag(*block_linear.weight)  # (d, d), acting as x @ W


def mlstm_parallel(mixer, x):
    """The mLSTM block from a zero state via the paper's unstabilised parallel form: h = (S * Dmat) V /
    max(|row sums of S * Dmat|, 1), S = Q K^T / sqrt(D), Dmat_ts = exp(sum_{s<u<=t} log f_u + i_s) for s <= t."""
    H, D = mixer.n_heads, mixer.head_dim
    xm, z = (x @ mixer.up_proj.weight.T).chunk(2, -1)  # (B, T, E)
    c = causal_conv(mixer.conv, xm)
    q, k, v = (c @ block_diag_weight(mixer.q_proj), c @ block_diag_weight(mixer.k_proj),
               xm @ block_diag_weight(mixer.v_proj))  # (B, T, E)
    qkv = torch.cat([q, k, v], -1)
    i = qkv @ mixer.i_proj.weight.T + mixer.i_proj.bias  # (B, T, H)
    f = qkv @ mixer.f_proj.weight.T + mixer.f_proj.bias
    log_f = F.logsigmoid(f) if mixer.forget == "sigmoid" else f
    T = x.shape[1]
    cum = log_f.cumsum(1)  # (B, T, H)
    logD = cum[:, :, None] - cum[:, None, :] + i[:, None, :]  # (B, t, s, H)
    Dmat = torch.exp(logD) * torch.ones(T, T, dtype=x.dtype).tril()[None, :, :, None]
    heads = [t.unflatten(-1, (H, D)) for t in (q, k, v)]  # (B, T, H, D)
    S = torch.einsum("bthd,bshd->btsh", heads[0], heads[1]) / math.sqrt(D) * Dmat  # (B, t, s, H)
    den = torch.clamp(S.sum(2).abs(), min=1.0)  # (B, T, H)
    h = torch.einsum("btsh,bshd->bthd", S, heads[2]) / den[..., None]  # (B, T, H, D)
    g = group_norm(h.flatten(-2), H, mixer.norm.weight, mixer.norm.bias, mixer.norm.eps)
    return ((g + mixer.skip * c) * F.silu(z)) @ mixer.down_proj.weight.T


@pytest.mark.parametrize("options", [{"n_heads": 2}, {"n_heads": 1, "forget": "exp", "qkv_block_size": 16,
                                                      "mode": "recurrent"}])
def test_mlstm_matches_unstabilised_parallel_form(options):
    mixer = make("mlstm", **options)
    randomise_gates(mixer, 1.0)
    x = torch.randn(2, 20, 8, dtype=F64)
    y, _ = mixer(x)
    # the op's eps sits in the stabilised denominator; it shifts h by about eps * exp(m) / den
    torch.testing.assert_close(y, mlstm_parallel(mixer, x), rtol=1e-5, atol=1e-5)


def test_mlstm_chunk_equals_recurrent_on_a_long_sequence():
    chunked = make("mlstm", n_heads=2, chunk_size=32)
    randomise_gates(chunked, 0.5)
    loop = make("mlstm", n_heads=2, mode="recurrent")
    loop.load_state_dict(chunked.state_dict())
    x = torch.randn(2, 200, 8, dtype=F64)
    s0 = detach_state(chunked(torch.randn(2, 5, 8, dtype=F64))[1])

    def run(mixer):
        xm = x.clone().requires_grad_()
        y, s = mixer(xm, s0)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=F64).reshape(y.shape)).sum() + sum(
            t.sum() for t in flatten_state(s))
        loss.backward()
        return [y, *flatten_state(s), xm.grad, *[p.grad for p in mixer.parameters()]]

    for got, want in zip(run(chunked), run(loop), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


HUGE = [("mlstm", {"n_heads": 2}), ("mlstm", {"n_heads": 2, "forget": "exp", "mode": "recurrent"}),
        ("slstm", {"n_heads": 2}), ("slstm", {"n_heads": 2, "forget": "exp", "block": "none"})]


def run_with_huge_gates(name, options):
    """float32, gate weights and biases ~ N(0, 1e3^2): pre-activations in the thousands. Returns (x, y, state)."""
    torch.manual_seed(0)
    mixer = build_mixer(name, 8, **options)
    randomise_gates(mixer, 1e3)
    x = torch.randn(2, 40, 8).requires_grad_()
    y, s = mixer(x)
    assert torch.isfinite(y).all() and all(torch.isfinite(t).all() for t in flatten_state(s))
    assert y.abs().max() > 0
    y_steps, state = [], None
    for t in range(6):
        y_t, state = mixer.step(x[:, t].detach(), state)
        y_steps.append(y_t)
    torch.testing.assert_close(torch.stack(y_steps, 1), y[:, :6].detach(), rtol=1e-4, atol=1e-4)
    return x, y, s


@pytest.mark.parametrize("name, options", HUGE)
def test_huge_gate_preactivations_give_finite_outputs(name, options):
    x, y, s = run_with_huge_gates(name, options)
    assert s.m.abs().max() > 100, "the gates should be far outside float32's exp range"


@pytest.mark.parametrize("name, options", [case for case in HUGE if case[0] == "slstm"])
def test_slstm_huge_gate_preactivations_give_finite_gradients(name, options):
    x, y, _ = run_with_huge_gates(name, options)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_mlstm_huge_gate_preactivations_give_finite_gradients():
    x, y, _ = run_with_huge_gates(*HUGE[0])
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def slstm_unstabilised(mixer, x):
    """The sLSTM block from a zero state, with the paper's equations as written: c_t = f_t c_{t-1} + exp(i_t) z_t,
    n_t = f_t n_{t-1} + exp(i_t), h_t = o_t c_t / n_t, f_t = sigmoid or exp; R as one block-diagonal matrix.
    Returns y and the true final (h, c, n)."""
    B, T, d = x.shape
    xc = x if mixer.conv is None else causal_conv(mixer.conv, x)
    pre_if = xc @ mixer.if_proj.weight.T + mixer.if_proj.bias  # (B, T, 2d)
    pre_zo = x @ mixer.zo_proj.weight.T + mixer.zo_proj.bias
    pre = torch.cat([pre_if, pre_zo], -1).unflatten(-1, (4, d))  # (B, T, gate, d)
    R = torch.stack([torch.block_diag(*mixer.R[g]) for g in range(4)])  # (gate, d, d)
    h, c, n = (x.new_zeros(B, d) for _ in range(3))
    hs = []
    for t in range(T):
        a = pre[:, t] + torch.einsum("bd,gde->bge", h, R)  # (B, gate, d)
        i_gate = torch.exp(a[:, 0])
        f_gate = torch.sigmoid(a[:, 1]) if mixer.forget == "sigmoid" else torch.exp(a[:, 1])
        c = f_gate * c + i_gate * torch.tanh(a[:, 2])
        n = f_gate * n + i_gate
        h = torch.sigmoid(a[:, 3]) * c / n
        hs.append(h)
    hs = torch.stack(hs, 1)  # (B, T, d)
    if mixer.block == "none":
        y = hs @ mixer.out_proj.weight.T
    else:
        g = group_norm(hs, mixer.n_heads, mixer.norm.weight, mixer.norm.bias, mixer.norm.eps)
        gate, up = (g @ mixer.ffn_up.weight.T).chunk(2, -1)
        y = (F.gelu(gate) * up) @ mixer.ffn_down.weight.T
    return y, (h, c, n)


@pytest.mark.parametrize("options", [
    {"n_heads": 2}, {"n_heads": 2, "block": "none", "forget": "exp"}, {"n_heads": 4, "conv_size": 0},
    {"n_heads": 1, "block": "none", "conv_size": 3},
])
def test_slstm_stabiliser_leaves_h_unchanged(options):
    mixer = make("slstm", **options)
    randomise_gates(mixer, 1.5)
    with torch.no_grad():
        mixer.R.mul_(2.0)
        if mixer.forget == "exp":
            mixer.if_proj.bias.view(2, -1)[1].sub_(1.0)  # keep the true state within float64 over 30 steps
    x = torch.randn(2, 30, 8, dtype=F64)
    y, s = mixer(x)
    y_ref, (h, c, n) = slstm_unstabilised(mixer, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    scale = torch.exp(s.m).flatten(1)  # stored c and n are the true ones divided by exp(m)
    torch.testing.assert_close(s.h.flatten(1), h, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(s.c.flatten(1) * scale, c, rtol=1e-9, atol=0)
    torch.testing.assert_close(s.n.flatten(1) * scale, n, rtol=1e-9, atol=0)
    assert s.m.abs().max() > 1, "the test should exercise a stabiliser far from 0"


def test_slstm_options():
    assert type(build_mixer("slstm", 8, block="none").init_state(2)) is SLSTMState
    post = build_mixer("slstm", 8)
    assert post.init_state(2).conv.shape == (2, 3, 8)
    assert build_mixer("slstm", 8, block="none", conv_size=4).conv.kernel_size == 4
    for bad in ({"n_heads": 3}, {"conv_size": 1}, {"block": "pre_up"}, {"forget": "tanh"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_mixer("slstm", 8, **bad)


def test_slstm_op_checks_its_inputs():
    g = torch.randn(2, 3, 2, 4)
    R = torch.randn(4, 2, 4, 4)
    with pytest.raises(ShapeError, match="R must have shape"):
        slstm(g, g, g, g, R[:3])
    with pytest.raises(ShapeError, match="o must have the shape of i"):
        slstm(g, g, g, g[:, :2], R)
    with pytest.raises(ShapeError, match="initial_state.n"):
        slstm(g, g, g, g, R, initial_state=(g[:, 0], g[:, 0], g[:, 0, :1], g[:, 0]))
    with pytest.raises(ConfigError, match="forget"):
        slstm(g, g, g, g, R, forget="tanh")
    s0 = SLSTMState(*torch.randn(4, 2, 2, 4))
    h, s = slstm(g[:, :0], g[:, :0], g[:, :0], g[:, :0], R, initial_state=s0)
    assert h.shape == (2, 0, 2, 4) and type(s) is SLSTMState and all(torch.equal(a, b) for a, b in zip(s, s0))


def test_mlstm_options_and_init():
    mixer = build_mixer("mlstm", 8, n_heads=4)
    torch.testing.assert_close(mixer.f_proj.bias.detach(), torch.linspace(3.0, 6.0, 4))
    assert mixer.q_proj.weight.shape == (4, 4, 4)  # inner width 16 in blocks of 4
    for bad in ({"n_heads": 3}, {"qkv_block_size": 3}, {"conv_size": 1}, {"forget": "tanh"}, {"chunk_size": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_mixer("mlstm", 8, **bad)
