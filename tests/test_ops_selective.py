"""Mamba's selective scan and Mamba-2's SSD: the fast forms against their reference loops on outputs, final
state and every gradient (initial state included), at odd lengths; the loops against the closed forms written
out here; state hand-off across split points; bad inputs."""
import pytest
import torch
import torch.nn.functional as F
from helpers import as_float32, assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.ssm import selective_scan, ssd

F64 = torch.float64
SEL = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
SSD = ("x", "dt", "A", "B", "C")


def selective_inputs(B, T, D, N, with_state=True, seed=0):
    """float64 leaves in the ranges Mamba uses: A = -exp(.) in [-e^1, -e^-1], delta around softplus(-2)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    x = {"u": randn(B, T, D), "delta": randn(B, T, D) - 1, "A": -randn(D, N).clamp(-1, 1).exp(),
         "B": randn(B, T, N), "C": randn(B, T, N), "D": randn(D), "z": randn(B, T, D), "delta_bias": randn(D)}
    if with_state:
        x["h0"] = randn(B, D, N)
    return {name: t.requires_grad_() for name, t in x.items()}


def ssd_inputs(B, T, H, P, G, N, with_state=True, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    x = {"x": randn(B, T, H, P), "dt": F.softplus(randn(B, T, H) - 1), "A": -randn(H).exp(),
         "B": randn(B, T, G, N), "C": randn(B, T, G, N)}
    if with_state:
        x["h0"] = randn(B, H, N, P)
    return {name: t.detach().requires_grad_() for name, t in x.items()}


def run_selective(x, **kw):
    return selective_scan(*(x[n] for n in SEL[:5]), D=x["D"], z=x["z"], delta_bias=x["delta_bias"],
                          delta_softplus=True, initial_state=x.get("h0"), **kw)


def run_ssd(x, **kw):
    return ssd(*(x[n] for n in SSD), initial_state=x.get("h0"), **kw)


@pytest.mark.parametrize("neg_eigval", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("T,chunk_size", [(1, 64), (63, 16), (500, 64)])
def test_selective_chunk_matches_recurrent(T, chunk_size, with_state, neg_eigval):
    x = selective_inputs(2, T, 5, 3, with_state)
    want = with_grads(run_selective(x, mode="recurrent", neg_eigval=neg_eigval), x.values())
    got = with_grads(run_selective(x, mode="chunk", chunk_size=chunk_size, neg_eigval=neg_eigval), x.values())
    assert_rel_close(got, want, 1e-10)
    x32 = as_float32(x)
    assert_rel_close(with_grads(run_selective(x32, chunk_size=chunk_size, neg_eigval=neg_eigval), x32.values()),
                     want, 1e-4)


@pytest.mark.parametrize("neg_eigval", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("T,chunk_size", [(1, 64), (63, 16), (500, 64)])
def test_ssd_chunk_matches_recurrent(T, chunk_size, with_state, neg_eigval):
    x = ssd_inputs(2, T, 4, 3, 2, 5, with_state)
    if neg_eigval and T > 1:  # both signs of 2 exp(dt A) - 1 occur, so the sign bookkeeping is exercised
        a = 2 * (x["dt"] * x["A"]).exp() - 1
        assert bool((a < 0).any()) and bool((a > 0).any())
    kw = dict(neg_eigval=neg_eigval)
    want = with_grads(run_ssd(x, mode="recurrent", **kw), x.values())
    assert_rel_close(with_grads(run_ssd(x, mode="chunk", chunk_size=chunk_size, **kw), x.values()), want, 1e-10)
    x32 = as_float32(x)
    assert_rel_close(with_grads(run_ssd(x32, chunk_size=chunk_size, **kw), x32.values()), want, 1e-4)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_ssd_negative_eigenvalues_flip_the_state(mode):
    """With dt A -> -inf the transition is 2 exp(.) - 1 = -1: with no input the state changes sign every step,
    so after an odd number of steps (inside one chunk and across chunks) it is -h0."""
    h0 = torch.randn(1, 1, 2, 3, dtype=F64)
    for T in (3, 4, 7):
        zeros = torch.zeros(1, T, 1, 2, dtype=F64)
        y, h = ssd(torch.zeros(1, T, 1, 3, dtype=F64), torch.ones(1, T, 1, dtype=F64),
                   torch.full((1,), -1e4, dtype=F64), zeros, zeros, chunk_size=2, initial_state=h0, mode=mode,
                   neg_eigval=True)
        torch.testing.assert_close(h, h0 * (-1) ** T)


def test_selective_loop_matches_the_unrolled_sum():
    """h_T = sum_s (prod_{s<r<=T} a_r) (delta_s u_s) B_s, written without a recurrence, and y_T = h_T C_T."""
    x = selective_inputs(1, 6, 3, 2, with_state=False)
    with torch.no_grad():
        y, h = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], mode="recurrent")
        a = torch.exp(x["delta"].unsqueeze(-1) * x["A"])  # (1, T, D, N)
        want = sum(a[:, s + 1:].prod(dim=1) * (x["delta"][:, s] * x["u"][:, s]).unsqueeze(-1) * x["B"][:, s, None]
                   for s in range(6))
    torch.testing.assert_close(h, want)
    torch.testing.assert_close(y[:, -1], (want * x["C"][:, -1, None]).sum(-1))


def test_ssd_is_the_selective_scan_with_one_decay_per_head():
    """With one head per channel (P = 1), G = 1 and A constant over the state, SSD is Mamba's scan."""
    x = ssd_inputs(2, 9, 4, 1, 1, 3, with_state=False)
    with torch.no_grad():
        y, h = ssd(x["x"], x["dt"], x["A"], x["B"], x["C"])
        y_sel, h_sel = selective_scan(x["x"][..., 0], x["dt"], x["A"].unsqueeze(-1).expand(4, 3).contiguous(),
                                      x["B"][:, :, 0], x["C"][:, :, 0], mode="recurrent")
    torch.testing.assert_close(y[..., 0], y_sel)
    torch.testing.assert_close(h[..., 0], h_sel)


def test_negative_eigenvalues_flip_the_state():
    """With delta A -> -inf the transition is 2 exp(.) - 1 = -1: the state changes sign every step."""
    u = torch.zeros(1, 4, 1)
    h0 = torch.ones(1, 1, 1)
    A = torch.full((1, 1), -1e4)
    _, h = selective_scan(u, torch.ones(1, 4, 1), A, torch.zeros(1, 4, 1), torch.zeros(1, 4, 1),
                          initial_state=h0, neg_eigval=True)
    torch.testing.assert_close(h, h0)
    _, h = selective_scan(u[:, :3], torch.ones(1, 3, 1), A, torch.zeros(1, 3, 1), torch.zeros(1, 3, 1),
                          initial_state=h0, neg_eigval=True)
    torch.testing.assert_close(h, -h0)


@settings(max_examples=15, deadline=None)
@given(T=st.integers(2, 30), split=st.integers(1, 29), chunk_size=st.integers(1, 12), D=st.integers(1, 4),
       N=st.integers(1, 4), neg=st.booleans())
def test_selective_split_hands_over_the_state(T, split, chunk_size, D, N, neg):
    split = min(split, T - 1)
    x = selective_inputs(2, T, D, N)
    with torch.no_grad():
        y, h = run_selective(x, chunk_size=chunk_size, neg_eigval=neg)
        timed = ("u", "delta", "B", "C", "z")
        y1, h1 = run_selective({k: (v[:, :split] if k in timed else v) for k, v in x.items()}, chunk_size=chunk_size,
                               neg_eigval=neg)
        second = {k: (v[:, split:] if k in timed else v) for k, v in x.items()}
        second["h0"] = h1
        y2, h2 = run_selective(second, chunk_size=chunk_size, neg_eigval=neg)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    torch.testing.assert_close(h2, h)


@settings(max_examples=15, deadline=None)
@given(T=st.integers(2, 30), split=st.integers(1, 29), chunk_size=st.integers(1, 12), G=st.sampled_from([1, 2]),
       P=st.integers(1, 3), N=st.integers(1, 4))
def test_ssd_split_hands_over_the_state(T, split, chunk_size, G, P, N):
    split = min(split, T - 1)
    x = ssd_inputs(2, T, 4, P, G, N)
    with torch.no_grad():
        y, h = run_ssd(x, chunk_size=chunk_size)
        y1, h1 = run_ssd({k: (v if k in ("A", "h0") else v[:, :split]) for k, v in x.items()}, chunk_size=chunk_size)
        rest = {k: v[:, split:] for k, v in x.items() if k not in ("A", "h0")}
        y2, h2 = run_ssd(dict(rest, A=x["A"], h0=h1), chunk_size=chunk_size)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    torch.testing.assert_close(h2, h)


def test_empty_sequence_returns_the_initial_state():
    x = selective_inputs(2, 0, 3, 2)
    y, h = run_selective(x)
    assert y.shape == (2, 0, 3) and torch.equal(h, x["h0"])
    s = ssd_inputs(2, 0, 4, 3, 2, 5)
    y, h = run_ssd(s)
    assert y.shape == (2, 0, 4, 3) and torch.equal(h, s["h0"])


def test_bad_inputs_name_the_problem():
    x = {k: v.detach() for k, v in selective_inputs(2, 5, 3, 2).items()}
    with pytest.raises(ShapeError, match=r"B must have shape \(B, T, N\)"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"][:, :4], x["C"])
    with pytest.raises(ShapeError, match=r"A must have shape \(D, N\)"):
        selective_scan(x["u"], x["delta"], x["A"][:2], x["B"], x["C"])
    with pytest.raises(ShapeError, match="initial_state"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], initial_state=x["h0"][:1])
    with pytest.raises(ConfigError, match="mode"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], mode="fast")
    s = {k: v.detach() for k, v in ssd_inputs(2, 5, 4, 3, 2, 5).items()}
    with pytest.raises(ShapeError, match="groups G=3 .* must divide the number of heads H=4"):
        ssd(s["x"], s["dt"], s["A"], torch.zeros(2, 5, 3, 5, dtype=F64), torch.zeros(2, 5, 3, 5, dtype=F64))
    with pytest.raises(ConfigError, match="A must be <= 0"):
        ssd(s["x"], s["dt"], -s["A"], s["B"], s["C"])
    with pytest.raises(ConfigError, match="dt must be >= 0"):
        ssd(s["x"], -s["dt"], s["A"], s["B"], s["C"])
    with pytest.raises(ShapeError, match="float32"):
        ssd(s["x"], s["dt"].float(), s["A"], s["B"], s["C"])
