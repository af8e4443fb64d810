"""S4D: the FFT convolution form against the reference loop, the kernel against powers and the impulse
response, the two discretizations against each other, and the mixer's initialisation."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rel_close, with_grads
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.mixers import build_mixer
from rnnzoo.ops.ssm import s4d, s4d_kernel

H, N = 3, 8  # channels, state size (N/2 = 4 conjugate pairs)


def imag_init(init, N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return math.pi * n if init == "lin" else N / math.pi * (N / (2 * n + 1) - 1)


def inputs(T, init="lin", initial=True, batch=2, seed=0):
    """Random SSM parameters near the S4D inits, as the real tensors a mixer holds, plus u and x0, in float64."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    x = {"u": randn(batch, T, H),
         "log_A_real": math.log(0.5) + 0.3 * randn(H, N // 2),
         "A_imag": imag_init(init, N) + 0.1 * randn(H, N // 2),
         "B": torch.stack([1 + 0.3 * randn(H, N // 2), 0.3 * randn(H, N // 2)], dim=-1),
         "C": randn(H, N // 2, 2) * 0.5 ** 0.5,
         "log_dt": math.log(1e-3) + math.log(100) * torch.rand(H, generator=gen, dtype=torch.float64),
         "D": randn(H)}
    if initial:
        x["x0"] = randn(batch, H, N // 2, 2)
    return x


def complex_params(x):
    """(A, B, C, log_dt, D) for the op from the real tensors of ``inputs``."""
    A = torch.complex(-x["log_A_real"].exp(), x["A_imag"])
    return (A, torch.complex(x["B"][..., 0], x["B"][..., 1]), torch.complex(x["C"][..., 0], x["C"][..., 1]),
            x["log_dt"], x["D"])


def run(x, mode, disc, dtype=torch.float64):
    """y, the final state and the gradient of a fixed random loss w.r.t. every input, x0 and parameters included."""
    leaves = {k: v.detach().to(dtype).requires_grad_() for k, v in x.items()}
    y, state = s4d(leaves["u"], *complex_params(leaves), initial_state=leaves.get("x0"), disc=disc, mode=mode)
    return with_grads([y, state], leaves.values())


@pytest.mark.parametrize("T", [1, 63, 500])
@pytest.mark.parametrize("initial", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("disc,init", [("zoh", "lin"), ("bilinear", "inv")])
def test_conv_matches_recurrent(T, initial, disc, init):
    x = inputs(T, init, initial)
    want = run(x, "recurrent", disc)
    assert_rel_close(run(x, "conv", disc), want, 1e-10, floor=None)
    assert_rel_close(run(x, "auto", disc, torch.float32), want, 1e-4, floor=None)


@settings(max_examples=15, deadline=None)
@given(T=st.integers(1, 40), data=st.data(), mode=st.sampled_from(["conv", "recurrent"]),
       disc=st.sampled_from(["zoh", "bilinear"]))
def test_split_consistency(T, data, mode, disc):
    x = inputs(T)
    t = data.draw(st.integers(0, T), label="t")
    params = complex_params(x)
    y, s = s4d(x["u"], *params, initial_state=x["x0"], disc=disc, mode=mode)
    y1, s1 = s4d(x["u"][:, :t], *params, initial_state=x["x0"], disc=disc, mode=mode)
    y2, s2 = s4d(x["u"][:, t:], *params, initial_state=s1, disc=disc, mode=mode)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s2, s, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_kernel_is_the_sum_of_powers_and_the_impulse_response(disc):
    T = 300
    x = inputs(T, initial=False)
    A, B, C, log_dt, D = complex_params(x)
    K = s4d_kernel(A, B, C, log_dt, T, disc)  # (H, T)
    dt = log_dt.exp()[:, None]
    if disc == "zoh":
        Abar, Bbar = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A * B
    else:
        Abar, Bbar = (2 + dt * A) / (2 - dt * A), 2 * dt * B / (2 - dt * A)
    power, columns = torch.ones_like(Abar), []
    for _ in range(T):
        columns.append(2 * (C * Bbar * power).sum(-1).real)
        power = power * Abar
    assert_rel_close([K], [torch.stack(columns, dim=-1)], 1e-10, floor=None)
    impulse = torch.zeros(1, T, H, dtype=torch.float64)
    impulse[:, 0] = 1
    y, _ = s4d(impulse, A, B, C, log_dt, torch.zeros_like(D), disc=disc, mode="recurrent")
    assert_rel_close([K], [y[0].T], 1e-10, floor=None)


def test_long_kernel_float32():
    """T = 4096: powers taken as exp(l log Abar) keep float32 close to float64."""
    T = 4096
    params64 = complex_params(inputs(1, initial=False))
    params32 = [p.to(torch.complex64 if p.is_complex() else torch.float32) for p in params64]
    for disc in ("zoh", "bilinear"):
        want = s4d_kernel(*params64[:4], T, disc)
        assert_rel_close([s4d_kernel(*params32[:4], T, disc)], [want], 2e-6, floor=None)


def test_zoh_and_bilinear_agree_to_second_order():
    """Over a fixed horizon (T dt = 1) the two kernels differ by O(dt^2): halving dt divides the gap by 4."""
    A, B, C, _, _ = complex_params(inputs(1, initial=False))
    gaps = []
    for dt in (1e-2, 5e-3, 2.5e-3):
        log_dt = torch.full((H,), math.log(dt), dtype=torch.float64)
        T = round(1 / dt)
        K_zoh, K_bil = s4d_kernel(A, B, C, log_dt, T, "zoh"), s4d_kernel(A, B, C, log_dt, T, "bilinear")
        gaps.append(((K_zoh - K_bil).abs().max() / K_zoh.abs().max()).item())
    assert gaps[0] < 1e-2
    for coarse, fine in zip(gaps, gaps[1:]):
        assert 3.5 < coarse / fine < 4.5, gaps


def test_empty_sequence_returns_the_state():
    x = inputs(0)
    y, s = s4d(x["u"], *complex_params(x), initial_state=x["x0"])
    assert y.shape == (2, 0, H) and s is x["x0"]
    y, s = s4d(x["u"], *complex_params(x))
    assert torch.equal(s, torch.zeros(2, H, N // 2, 2, dtype=torch.float64))


def test_bad_inputs_raise_clear_errors():
    x = inputs(5)
    A, B, C, log_dt, D = complex_params(x)
    u = x["u"]
    with pytest.raises(ShapeError, match="complex"):
        s4d(u, A.real, B, C, log_dt, D)
    with pytest.raises(ShapeError, match="u is torch.float32"):
        s4d(u.float(), A, B, C, log_dt, D)
    with pytest.raises(ShapeError, match="initial_state"):
        s4d(u, A, B, C, log_dt, D, initial_state=x["x0"][..., 0])
    with pytest.raises(ShapeError, match="C must have shape"):
        s4d(u, A, B, C[:, :2], log_dt, D)
    with pytest.raises(ShapeError, match="D must have shape"):
        s4d(u, A, B, C, log_dt, D[:2])
    with pytest.raises(ConfigError, match="negative real part"):
        s4d(u, -A, B, C, log_dt, D)
    with pytest.raises(ConfigError, match="mode"):
        s4d(u, A, B, C, log_dt, D, mode="chunk")
    with pytest.raises(ConfigError, match="disc"):
        s4d_kernel(A, B, C, log_dt, 5, disc="euler")


@pytest.mark.parametrize("options", [{"d_state": 5}, {"d_state": 0}, {"dt_min": 0.2}, {"dt_max": -1.0},
                                     {"init": "legs"}, {"discretization": "euler"}, {"mode": "chunk"}])
def test_mixer_bad_options(options):
    with pytest.raises(ConfigError):
        build_mixer("s4d", 4, **options)


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_mixer_initialisation(init):
    torch.manual_seed(0)
    d, n = 64, 8
    mixer = build_mixer("s4d", d, d_state=n, init=init, dt_min=1e-3, dt_max=1e-1)
    A = torch.complex(-mixer.log_A_real.exp(), mixer.A_imag)  # (d, n/2)
    want = {"lin": [0, math.pi, 2 * math.pi, 3 * math.pi],
            "inv": [8 / math.pi * 7, 8 / math.pi * (8 / 3 - 1), 8 / math.pi * (8 / 5 - 1), 8 / math.pi * (8 / 7 - 1)]}
    torch.testing.assert_close(A.real, torch.full((d, n // 2), -0.5))
    torch.testing.assert_close(A.imag, torch.tensor(want[init]).expand(d, n // 2))
    dt = mixer.log_dt.exp()
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1 and dt.min() < 2e-3 and dt.max() > 5e-2
    torch.testing.assert_close(mixer.B, torch.tensor([1.0, 0.0]).expand(d, n // 2, 2))
    assert mixer.C.shape == (d, n // 2, 2) and abs(mixer.C.std().item() - 0.5 ** 0.5) < 0.05
    assert mixer.D.shape == (d,) and mixer.out_proj.weight.shape == (2 * d, d)


def test_mixer_bfloat16_runs_the_ssm_in_float32():
    torch.manual_seed(0)
    mixer = build_mixer("s4d", 8, d_state=4)
    x = torch.randn(2, 30, 8)
    y32, s32 = mixer(x)
    y16, s16 = mixer.to(torch.bfloat16)(x.bfloat16())
    assert y16.dtype == s16.x.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, rtol=0.05, atol=0.05)
    torch.testing.assert_close(s16.x.float(), s32.x, rtol=0.05, atol=0.05)
