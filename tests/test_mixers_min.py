"""minGRU and minLSTM against a plain float64 loop written from the paper's equations, the exact hand-off of
the state between pieces, zero initial states, long-sequence precision, and option checks."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer

D = 8
NAMES = ("mingru", "minlstm")
MODES = ("parallel", "parallel_log", "sequential")  # the loop last: the others are compared with it


def make(name, dtype=torch.float64, **options):
    torch.manual_seed(0)
    return build_mixer(name, D, **options).to(dtype)


def paper_loop(mixer, x, h0):
    """The sequential equations of Feng et al. 2024 in linear space, from the mixer's weights."""
    H = mixer.hidden_size
    W, b = mixer.in_proj.weight, mixer.in_proj.bias
    h, ys = h0, []
    for t in range(x.shape[1]):
        k = x[:, t] @ W.T + b  # (B, n_gates * H)
        pre = k[:, -H:]
        h_tilde = torch.where(pre >= 0, pre + 0.5, 1 / (1 + torch.exp(-pre)))
        if mixer.n_gates == 2:
            z = 1 / (1 + torch.exp(-k[:, :H]))
            h = (1 - z) * h + z * h_tilde
        else:
            f, i = 1 / (1 + torch.exp(-k[:, :H])), 1 / (1 + torch.exp(-k[:, H:2 * H]))
            h = f / (f + i) * h + i / (f + i) * h_tilde
        ys.append(h if mixer.out_proj is None else h @ mixer.out_proj.weight.T)
    return torch.stack(ys, dim=1), h


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("options", [{}, {"expand": 2, "chunk_size": 8}, {"mode": "parallel_log", "chunk_size": 8},
                                     {"expand": 0.5, "mode": "sequential"}])
def test_matches_the_paper_loop_in_float64(name, options):
    mixer = make(name, **options)
    x = torch.randn(2, 50, D, dtype=torch.float64) * 2
    H = mixer.hidden_size
    for h0 in (torch.zeros(2, H, dtype=torch.float64), torch.randn(2, H, dtype=torch.float64)):
        y, state = mixer(x, type(mixer.init_state(1))(h0))
        y_ref, h_ref = paper_loop(mixer, x, h0)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state.h, h_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_forward_in_many_pieces_equals_one_forward(name, dtype, tol):
    mixer = make(name, dtype, chunk_size=16)
    T = 200
    x = 2 * torch.randn(2, T, D, dtype=dtype)
    y, s = mixer(x)

    @settings(max_examples=8, deadline=None)
    @given(cuts=st.lists(st.integers(0, T), min_size=1, max_size=12))
    def check(cuts):
        bounds = [0, *sorted(cuts), T]
        state, ys = None, []
        for start, end in zip(bounds[:-1], bounds[1:]):
            y_piece, state = mixer(x[:, start:end], state)
            ys.append(y_piece)
        torch.testing.assert_close(torch.cat(ys, dim=1), y, rtol=tol, atol=tol)
        torch.testing.assert_close(state.h, s.h, rtol=tol, atol=tol)

    check()


@pytest.mark.parametrize("name", NAMES)
def test_zero_initial_state_has_finite_exact_gradients(name):
    """h_T is linear in h_0, so d h_T / d h_0 is the product of the a's, at h_0 = 0 too (log h_0 = -inf)."""
    grads = {}
    for mode in MODES:
        mixer = make(name, mode=mode, chunk_size=4)
        x = torch.randn(2, 13, D, dtype=torch.float64, requires_grad=True)
        h0 = torch.zeros(2, mixer.hidden_size, dtype=torch.float64, requires_grad=True)
        y, s = mixer(x, type(mixer.init_state(1))(h0))
        assert torch.isfinite(y).all() and torch.isfinite(s.h).all()
        (y.sum() + (s.h ** 2).sum()).backward()
        grads[mode] = (x.grad, h0.grad)
    for mode in ("parallel", "parallel_log"):
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads[mode])
        for got, want in zip(grads[mode], grads["sequential"]):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_long_float32_run_matches_float64_loop(name):
    """Saturated gates (large inputs) over T = 1000: no NaN, and float32 keeps ~1e-5 relative precision."""
    mixer = make(name, torch.float64)
    x = 6 * torch.randn(1, 1000, D, dtype=torch.float64)
    h0 = torch.rand(1, D, dtype=torch.float64)
    y_ref, _ = paper_loop(mixer, x, h0)
    for mode in MODES[:2]:
        mixer.mode = mode
        y, _ = mixer.float()(x.float(), type(mixer.init_state(1))(h0.float()))
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_parallel_and_sequential_modes_agree_on_a_long_sequence(name):
    outs = []
    for mode in MODES:
        mixer = make(name, mode=mode, expand=2, chunk_size=32)
        x = torch.randn(2, 200, D, dtype=torch.float64, requires_grad=True)
        y, s = mixer(x, type(mixer.init_state(1))(torch.rand(2, 2 * D, dtype=torch.float64)))
        (y * torch.linspace(-1, 1, y.shape[1], dtype=y.dtype)[:, None]).sum().backward()
        outs.append([y, s.h, x.grad, *(p.grad for p in mixer.parameters())])
    for other in outs[:-1]:
        for got, want in zip(other, outs[-1], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_minlstm_gates_are_normalised_and_the_state_stays_positive():
    """f' + i' = 1, so with h~ > 0 the state is a convex mix: h_0 >= 0 keeps every h_t > 0."""
    mixer = make("minlstm")
    x = 5 * torch.randn(3, 64, D, dtype=torch.float64)
    y, s = mixer(x)
    assert (y > 0).all() and (s.h > 0).all()


def test_bad_expand_raises():
    for bad in (0, -1, 0.01, float("nan"), "2", True):
        with pytest.raises(ConfigError, match="expand"):
            build_mixer("mingru", D, expand=bad)
