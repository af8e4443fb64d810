"""ParaRNN ops: Newton's solution and its adjoint backward against autograd through the sequential loop, the
2x2-block scan against its loop, the hand-written Jacobians against autograd, and the non-convergence paths."""
from __future__ import annotations

import warnings

import pytest
import torch
from helpers import assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, DivergedError, ShapeError
from rnnzoo.mixers import build_mixer
from rnnzoo.ops.pararnn import block_scan, para_gru, para_lstm
from rnnzoo.ops.pararnn import newton as newton_module
from rnnzoo.ops.pararnn.naive import gru_cell
from rnnzoo.ops.pararnn.newton import gru_linearize, lstm_linearize, lstm_step
from rnnzoo.ops.scan import scan

B, H = 2, 3
F64 = torch.float64
GRU_ARGS = ("xz", "xr", "xc", "uz", "ur", "uc")
LSTM_ARGS = ("xi", "xf", "xg", "xo", "ui", "uf", "ug", "uo")


def cell_inputs(cell, T, initial, u_scale=1.0, seed=0):
    """A dict of float64 leaves: the projections (B, T, H), the weights u (H,) and, if ``initial``, the state."""
    gen = torch.Generator().manual_seed(seed)
    names = GRU_ARGS if cell == "gru" else LSTM_ARGS
    x = {n: torch.randn(B, T, H, dtype=F64, generator=gen) if n[0] == "x" else
         u_scale * torch.randn(H, dtype=F64, generator=gen) for n in names}
    if initial:
        x["h0"] = torch.randn(B, H, dtype=F64, generator=gen)
        if cell == "lstm":
            x["c0"] = torch.randn(B, H, dtype=F64, generator=gen)
    return {n: t.requires_grad_() for n, t in x.items()}


def run(cell, x, **options):
    """([h, final state tensors...], info) of para_gru / para_lstm on the dict ``x`` of cell_inputs."""
    if cell == "gru":
        h, h_T, info = para_gru(*(x[n] for n in GRU_ARGS), initial_state=x.get("h0"), **options, return_info=True)
        return [h, h_T], info
    state = (x["h0"], x["c0"]) if "h0" in x else None
    h, (h_T, c_T), info = para_lstm(*(x[n] for n in LSTM_ARGS), initial_state=state, **options, return_info=True)
    return [h, h_T, c_T], info


def newton_and_reference(cell, x, dtype=F64, **options):
    """Outputs and every gradient from Newton (inputs cast to ``dtype``) and from the float64 loop."""
    want = with_grads(run(cell, x, mode="sequential")[0], x.values())
    xd = {n: t.detach().to(dtype).requires_grad_() for n, t in x.items()}
    outputs, info = run(cell, xd, mode="newton", **options)
    assert info.converged, f"Newton fell back to the loop: {info}"
    return with_grads(outputs, xd.values()), want, info


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("T", [1, 63, 500])
@pytest.mark.parametrize("initial", [False, True], ids=["zero_state", "initial_state"])
def test_newton_matches_autograd_through_the_loop(cell, T, initial):
    x = cell_inputs(cell, T, initial)
    got, want, info = newton_and_reference(cell, x)
    assert 1 <= info.iterations <= min(T, 20)
    assert_rel_close(got, want, 1e-10)
    got32, _, _ = newton_and_reference(cell, x, dtype=torch.float32)
    n_out = 2 if cell == "gru" else 3
    assert_rel_close(got32[:n_out], want[:n_out], 1e-5)  # h and the final state
    assert_rel_close(got32[n_out:], want[n_out:], 1e-4)  # every gradient


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradcheck(cell):
    x = cell_inputs(cell, 4, initial=True, seed=1)

    def fn(*tensors):
        return tuple(run(cell, dict(zip(x, tensors)), mode="newton")[0])

    assert torch.autograd.gradcheck(fn, tuple(x.values()))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_exact_after_T_steps_even_when_far_from_converged(cell):
    """Step k makes s_1..s_k exact, so T steps solve the system whatever the tolerance and the weights' size."""
    x = cell_inputs(cell, 6, initial=True, u_scale=4.0)
    got, want, info = newton_and_reference(cell, x, tol=1e-300)
    assert info.converged and info.iterations == 6
    assert_rel_close(got, want, 1e-10)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@settings(max_examples=8, deadline=None)
@given(T=st.integers(1, 40), data=st.data())
def test_two_calls_with_the_state_handed_over_equal_one(cell, T, data):
    x = {n: t.detach() for n, t in cell_inputs(cell, T, initial=True).items()}
    t = data.draw(st.integers(0, T), label="t")
    (h, *final), _ = run(cell, x, mode="newton")
    first = {n: v[:, :t] if v.dim() == 3 else v for n, v in x.items()}
    (h1, *mid), _ = run(cell, first, mode="newton")
    second = {n: v[:, t:] if v.dim() == 3 else v for n, v in x.items()}
    second.update(zip(["h0", "c0"], mid))
    (h2, *final2), _ = run(cell, second, mode="newton")
    assert_rel_close([torch.cat([h1, h2], dim=1), *final2], [h, *final], 1e-10)


def test_gru_jacobian_matches_autograd():
    h, *x = [torch.randn(B, 5, H, dtype=F64) for _ in range(4)]
    u = [torch.randn(H, dtype=F64) for _ in range(3)]
    h.requires_grad_()
    f = gru_cell(h, *x, *u)
    # every unit reads only its own h, so the gradient of the sum is the diagonal of the Jacobian
    diag = torch.autograd.grad(f.sum(), h)[0]
    f_lin, J = gru_linearize(h.detach(), *x, *u)
    assert_rel_close([f_lin, J], [f.detach(), diag], 1e-12)


def test_lstm_jacobian_matches_autograd():
    s = torch.randn(B, 5, H, 2, dtype=F64, requires_grad=True)
    x = [torch.randn(B, 5, H, dtype=F64) for _ in range(4)]
    u = [torch.randn(H, dtype=F64) for _ in range(4)]
    f = lstm_step(s, *x, *u)  # (B, 5, H, 2)
    rows = [torch.autograd.grad(f[..., i].sum(), s, retain_graph=True)[0] for i in range(2)]  # d f_i / d (h, c)
    f_lin, J = lstm_linearize(s.detach(), *x, *u)
    assert_rel_close([f_lin, J], [f.detach(), torch.stack(rows, dim=-2)], 1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_non_convergence_falls_back_to_the_loop_and_warns_once(cell, monkeypatch):
    monkeypatch.setattr(newton_module, "_WARNED", set())
    x = cell_inputs(cell, 200, initial=True, u_scale=2.0)
    want = with_grads(run(cell, x, mode="sequential")[0], x.values())
    with pytest.warns(RuntimeWarning, match=r"did not converge in 1 iterations .*fell back to the sequential loop"):
        outputs, info = run(cell, x, mode="newton", max_iters=1)
    assert not info.converged and info.iterations == 1 and info.step > 0
    assert_rel_close(with_grads(outputs, x.values()), want, 1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(cell, x, mode="newton", max_iters=1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_non_convergence_raises_when_asked(cell):
    x = cell_inputs(cell, 200, initial=False, u_scale=2.0)
    with pytest.raises(DivergedError, match="did not converge in 2 iterations.*raise max_iters or tol"):
        run(cell, x, mode="newton", max_iters=2, on_fail="raise")


def test_empty_sequence_returns_the_initial_state():
    x = {n: t.detach()[:, :0] if t.dim() == 3 else t.detach() for n, t in cell_inputs("lstm", 3, True).items()}
    (h, h_T, c_T), info = run("lstm", x, mode="newton")
    assert h.shape == (B, 0, H) and info is None
    assert torch.equal(h_T, x["h0"]) and torch.equal(c_T, x["c0"])


def test_bad_arguments_raise_clear_errors():
    x = [t.detach() for t in cell_inputs("gru", 5, False).values()]
    with pytest.raises(ShapeError, match=r"xr must have shape \(B, T, H\)"):
        para_gru(x[0], x[1][:, :4], *x[2:])
    with pytest.raises(ShapeError, match=r"uc must have shape \(H,\)"):
        para_gru(*x[:5], torch.zeros(H + 1, dtype=F64))
    with pytest.raises(ShapeError, match="initial_state"):
        para_gru(*x, initial_state=torch.zeros(B, H))
    for bad in ({"mode": "parallel"}, {"tol": 0.0}, {"tol": True}, {"max_iters": 0}, {"on_fail": "ignore"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            para_gru(*x, **bad)
    xl = [t.detach() for t in cell_inputs("lstm", 5, False).values()]
    with pytest.raises(ShapeError, match=r"pair \(h_0, c_0\)"):
        para_lstm(*xl, initial_state=torch.zeros(B, H, dtype=F64))


def test_mixer_records_the_last_solve():
    torch.manual_seed(0)
    newton = build_mixer("paragru", 8)
    sequential = build_mixer("paragru", 8, mode="sequential")
    sequential.load_state_dict(newton.state_dict())
    x = torch.randn(2, 300, 8)
    y, _ = newton(x)
    assert newton.last_info.converged and newton.last_info.step <= 1e-5
    assert_rel_close([y], [sequential(x)[0]], 1e-5)
    assert sequential.last_info is None


def block_inputs(B_, T, N, initial, seed=0, diagonal=False):
    gen = torch.Generator().manual_seed(seed)
    a = 0.7 * torch.randn(B_, T, N, 2, 2, dtype=F64, generator=gen)
    if diagonal:
        a = a * torch.eye(2, dtype=F64)
    b = torch.randn(B_, T, N, 2, dtype=F64, generator=gen)
    return a, b, torch.randn(B_, N, 2, dtype=F64, generator=gen) if initial else None


@settings(max_examples=25, deadline=None)
@given(B_=st.integers(1, 3), T=st.integers(1, 40), N=st.integers(1, 3), chunk_size=st.integers(2, 9),
       initial=st.booleans(), data=st.data())
def test_block_scan_matches_its_loop_and_splits(B_, T, N, chunk_size, initial, data):
    a, b, s0 = block_inputs(B_, T, N, initial)
    want = block_scan(a, b, s0, mode="recurrent")
    assert_rel_close(block_scan(a, b, s0, chunk_size=chunk_size), want, 1e-10)
    t = data.draw(st.integers(0, T), label="t")
    s1, mid = block_scan(a[:, :t], b[:, :t], s0, chunk_size=chunk_size)
    s2, end = block_scan(a[:, t:], b[:, t:], mid, chunk_size=chunk_size)
    assert_rel_close([torch.cat([s1, s2], dim=1), end], want, 1e-10)


@pytest.mark.parametrize("T", [1, 63, 500])
def test_block_scan_gradients_match_the_loop(T):
    a, b, s0 = (t.requires_grad_() for t in block_inputs(2, T, 3, initial=True, seed=T))
    want = with_grads(block_scan(a, b, s0, mode="recurrent"), [a, b, s0])
    assert_rel_close(with_grads(block_scan(a, b, s0, chunk_size=4), [a, b, s0]), want, 1e-10)


def test_block_scan_with_diagonal_blocks_is_two_scalar_scans():
    a, b, s0 = block_inputs(2, 50, 3, initial=True, diagonal=True)
    s, s_T = block_scan(a, b, s0, chunk_size=4)
    for i in range(2):
        h, h_T = scan(a[..., i, i], b[..., i], s0[..., i], mode="recurrent")
        assert_rel_close([s[..., i], s_T[..., i]], [h, h_T], 1e-10)


def test_block_scan_bad_arguments():
    a, b, _ = block_inputs(1, 4, 2, initial=False)
    with pytest.raises(ShapeError, match=r"a must have shape \(B, T, \.\.\., 2, 2\)"):
        block_scan(a[..., :1], b)
    with pytest.raises(ShapeError, match=r"b must be a floating tensor of shape \(B, T, \.\.\., 2\)"):
        block_scan(a, b[..., :1])
    with pytest.raises(ConfigError, match="chunk_size must be at least 2"):
        block_scan(a, b, chunk_size=1)
