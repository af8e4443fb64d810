"""The Legendre Memory Unit: its matrices against the formula and an ODE integration, the FFT convolution against
the loop, and the Legendre property (the memory decodes a delayed copy of its input)."""
import math

import numpy as np
import pytest
import torch
from helpers import as_float32, assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.lmu import LMUState
from rnnzoo.ops.lmu import discretize_zoh, legendre_matrices, lmu_memory


def memory_inputs(B=2, T=63, H=3, q=6, theta=20.0, seed=0):
    """Float64 leaves: u (B, T, H), A_bar, B_bar of the Legendre system, m0 (B, H, q)."""
    gen = torch.Generator().manual_seed(seed)
    A_bar, B_bar = discretize_zoh(*legendre_matrices(q, theta))
    return {"u": torch.randn(B, T, H, generator=gen, dtype=torch.float64).requires_grad_(),
            "A_bar": A_bar.requires_grad_(), "B_bar": B_bar.requires_grad_(),
            "m0": torch.randn(B, H, q, generator=gen, dtype=torch.float64).requires_grad_()}


def run(x, mode, with_state=True):
    """[m, m_T, *the gradients of a fixed weighted sum of both with respect to every input used]."""
    names = ["u", "A_bar", "B_bar"] + (["m0"] if with_state else [])
    m, m_T = lmu_memory(x["u"], x["A_bar"], x["B_bar"], x["m0"] if with_state else None, mode=mode)
    return with_grads([m, m_T], [x[k] for k in names])


def test_matrices_match_a_hand_written_case():
    A, B = legendre_matrices(3, 2.0)
    want_A = torch.tensor([[-1.0, -1, -1], [3, -3, -3], [-5, 5, -5]], dtype=torch.float64) / 2
    want_B = torch.tensor([1.0, -3, 5], dtype=torch.float64) / 2
    torch.testing.assert_close(A, want_A, rtol=0, atol=0)
    torch.testing.assert_close(B, want_B, rtol=0, atol=0)


def test_zero_order_hold_matches_integrating_the_ode():
    """m' = A m + B u over one step, by RK4 with 2000 sub-steps: from m = e_i with u = 0 gives A_bar's column i,
    from m = 0 with u = 1 gives B_bar."""
    A, B = legendre_matrices(4, 3.0)
    A_bar, B_bar = discretize_zoh(A, B)
    n = 2000
    dt = 1.0 / n

    def integrate(m, u):
        for _ in range(n):
            k1 = A @ m + B * u
            k2 = A @ (m + dt / 2 * k1) + B * u
            k3 = A @ (m + dt / 2 * k2) + B * u
            k4 = A @ (m + dt * k3) + B * u
            m = m + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return m

    columns = torch.stack([integrate(e, 0.0) for e in torch.eye(4, dtype=torch.float64)], dim=1)
    assert_rel_close([A_bar, B_bar], [columns, integrate(torch.zeros(4, dtype=torch.float64), 1.0)], 1e-10)


@pytest.mark.parametrize("T", [1, 63, 500])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero", "m0"])
def test_conv_equals_recurrent(T, with_state):
    x = memory_inputs(T=T)
    want = run(x, "recurrent", with_state)
    assert_rel_close(run(x, "conv", with_state), want, 1e-10)
    assert_rel_close(run(as_float32(x), "conv", with_state), want, 1e-4)
    assert_rel_close(run(as_float32(x), "recurrent", with_state), want, 1e-4)
    assert_rel_close(run(x, "auto", with_state)[:2], want[:2], 1e-10)


@settings(max_examples=15, deadline=None)
@given(T=st.integers(1, 40), data=st.data(), mode=st.sampled_from(["conv", "recurrent"]))
def test_split_in_two_equals_one_run(T, data, mode):
    x = {k: v.detach() for k, v in memory_inputs(T=T, q=5, theta=9.0).items()}
    t = data.draw(st.integers(0, T), label="t")
    m, m_T = lmu_memory(x["u"], x["A_bar"], x["B_bar"], x["m0"], mode=mode)
    m1, s1 = lmu_memory(x["u"][:, :t], x["A_bar"], x["B_bar"], x["m0"], mode=mode)
    m2, s2 = lmu_memory(x["u"][:, t:], x["A_bar"], x["B_bar"], s1, mode=mode)
    assert_rel_close([torch.cat([m1, m2], dim=1), s2], [m, m_T], 1e-10)


@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_memory_decodes_the_delayed_input(mode):
    """The Legendre property: u(t - r theta) ~ sum_i P_i(2r - 1) m_i(t) for r in [0, 1], with P_i the Legendre
    polynomials (numpy's), for an input slow compared with the window."""
    q, theta, T = 12, 100.0, 600
    A_bar, B_bar = discretize_zoh(*legendre_matrices(q, theta))
    t = torch.arange(T, dtype=torch.float64)
    u = torch.sin(2 * math.pi * t / 150) + 0.5 * torch.sin(2 * math.pi * t / 97 + 1.0)  # (T,)
    m, _ = lmu_memory(u.reshape(1, T, 1), A_bar, B_bar, mode=mode)  # (1, T, 1, q)
    start = 200  # past the first window, which began from an empty memory
    for r in (0.0, 0.3, 0.5, 1.0):
        decoder = torch.from_numpy(np.polynomial.legendre.legvander(np.array([2 * r - 1]), q - 1)[0])  # (q,)
        delay = round(r * theta)
        decoded = m[0, start:, 0] @ decoder  # (T - start,)
        rmse = (decoded - u[start - delay:T - delay]).pow(2).mean().sqrt().item()
        assert rmse < 0.05 * u.pow(2).mean().sqrt().item(), f"delay {delay}: rmse {rmse:.3g}"
        if delay:
            wrong = (decoded - u[start:]).pow(2).mean().sqrt().item()
            assert wrong > 5 * rmse, "the decoded signal should be the delayed input, not the present one"


def test_op_rejects_bad_inputs():
    x = {k: v.detach() for k, v in memory_inputs(T=4).items()}
    u, A_bar, B_bar, m0 = x.values()
    with pytest.raises(ShapeError, match=r"u must have shape \(B, T, H\)"):
        lmu_memory(u[0], A_bar, B_bar)
    with pytest.raises(ShapeError, match="A_bar"):
        lmu_memory(u, A_bar[:, :3], B_bar)
    with pytest.raises(ShapeError, match="B_bar"):
        lmu_memory(u, A_bar, B_bar[:3])
    with pytest.raises(ShapeError, match="initial_state"):
        lmu_memory(u, A_bar, B_bar, m0[:, :1])
    with pytest.raises(ShapeError, match="dtype"):
        lmu_memory(u.float(), A_bar, B_bar)
    with pytest.raises(ConfigError, match="mode"):
        lmu_memory(u, A_bar, B_bar, mode="fft")
    m, m_T = lmu_memory(u[:, :0], A_bar, B_bar, m0)
    assert m.shape == (2, 0, 3, 6) and torch.equal(m_T, m0)


@pytest.mark.parametrize("act", ["tanh", "identity"])
def test_mixer_equals_its_equations(act):
    mixer = build_mixer("lmu", 4, memory_size=5, theta=6.0, n_channels=2, hidden_size=3, act=act).double()
    A_bar, B_bar = discretize_zoh(*legendre_matrices(5, 6.0))
    assert_rel_close([mixer.A_bar, mixer.B_bar], [A_bar, B_bar], 1e-6)  # built in float32, then cast
    assert "A_bar" not in mixer.state_dict() and len(list(mixer.parameters())) == 6
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    m = torch.randn(2, 2, 5, dtype=torch.float64)
    y, state = mixer(x, LMUState(m))
    ys = []
    for t in range(9):
        u_t = x[:, t] @ mixer.encoder.weight.T  # (B, H)
        m = torch.einsum("ij,bhj->bhi", mixer.A_bar, m) + u_t[..., None] * mixer.B_bar
        pre = x[:, t] @ mixer.x_proj.weight.T + mixer.x_proj.bias + m.reshape(2, -1) @ mixer.m_proj.weight.T
        h = torch.tanh(pre) if act == "tanh" else pre
        ys.append(h @ mixer.out_proj.weight.T + mixer.out_proj.bias)
    assert_rel_close([y, state.m], [torch.stack(ys, dim=1), m], 1e-10)


def test_mixer_options_are_checked():
    assert build_mixer("lmu", 8).n_channels == 2 and build_mixer("lmu", 2).n_channels == 1
    for options, match in [({"memory_size": 0}, "memory_size"), ({"theta": 0.0}, "theta"),
                           ({"theta": "5"}, "theta"), ({"n_channels": 0}, "n_channels"),
                           ({"act": "softmax"}, "act"), ({"mode": "fft"}, "mode")]:
        with pytest.raises(ConfigError, match=match):
            build_mixer("lmu", 4, **options)
