"""scan and scan_log_space: the chunked parallel forms against the reference loops and each other."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_rel_close
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.ops.scan import scan, scan_log_space

SHAPE = (3, 2)  # any trailing shape


def leaves(*xs):
    return [None if x is None else x.detach().clone().requires_grad_() for x in xs]


def run_with_grads(f, a, b, h0, dtype=None, **kw):
    """h, h_T and the gradients of a fixed random loss w.r.t. a, b and h0, optionally recast to ``dtype``."""
    a, b, h0 = leaves(*(None if x is None else x.to(dtype or x.dtype) for x in (a, b, h0)))
    h, hT = f(a, b, initial_state=h0, **kw)
    gen = torch.Generator().manual_seed(1)
    loss = (h * torch.randn(h.shape, generator=gen, dtype=torch.float64).to(h.dtype)).sum()
    (loss + (hT * torch.randn(hT.shape, generator=gen, dtype=torch.float64).to(h.dtype)).sum()).backward()
    grads = [torch.zeros_like(x) if x.grad is None else x.grad for x in (a, b)]  # log a_1 is unused when h_0 = 0
    return [h.detach(), hT.detach(), *grads] + ([] if h0 is None else [h0.grad])


def signed_inputs(T, initial, B=2):
    """a uniform in [-1, 1] with some exact zeros and ones, b normal."""
    a = torch.rand(B, T, *SHAPE, dtype=torch.float64) * 2 - 1
    a = torch.where(torch.rand_like(a) < 0.05, torch.zeros_like(a), a)
    a = torch.where(torch.rand_like(a) < 0.05, torch.ones_like(a), a)
    b = torch.randn(B, T, *SHAPE, dtype=torch.float64)
    return a, b, torch.randn(B, *SHAPE, dtype=torch.float64) if initial else None


def log_inputs(T, initial, B=2, decay=1.0):
    log_a = -decay * torch.rand(B, T, *SHAPE, dtype=torch.float64)
    log_b = torch.randn(B, T, *SHAPE, dtype=torch.float64)
    return log_a, log_b, torch.randn(B, *SHAPE, dtype=torch.float64) if initial else None


@pytest.mark.parametrize("T", [1, 63, 500])
@pytest.mark.parametrize("initial", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 64])
@pytest.mark.parametrize("f,inputs", [(scan, signed_inputs), (scan_log_space, log_inputs)],
                         ids=["scan_signed_a", "scan_log_space"])
def test_chunk_matches_the_loop(f, inputs, T, initial, chunk_size):
    x, y, h0 = inputs(T, initial)
    want = run_with_grads(f, x, y, h0, mode="recurrent")
    assert_rel_close(run_with_grads(f, x, y, h0, mode="chunk", chunk_size=chunk_size), want, 1e-10, floor=None)
    assert_rel_close(run_with_grads(f, x, y, h0, dtype=torch.float32, chunk_size=chunk_size), want, 1e-4, floor=None)


def test_scan_log_space_is_the_log_of_scan():
    """Two independent computations of the same positive recurrence."""
    log_a, log_b, log_h0 = log_inputs(300, True)
    log_h, log_hT = scan_log_space(log_a, log_b, log_h0)
    h, hT = scan(log_a.exp(), log_b.exp(), log_h0.exp())
    torch.testing.assert_close(log_h, h.log(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(log_hT, hT.log(), rtol=1e-10, atol=1e-10)


def test_scan_log_space_long_strong_decay_float32():
    """log a ~ -5 per step over T = 3000: segment sums (no long cumulative sums) keep float32 precise."""
    log_a, log_b, log_h0 = log_inputs(3000, True, B=1, decay=10.0)
    want = run_with_grads(scan_log_space, log_a, log_b, log_h0, mode="recurrent")
    assert_rel_close(run_with_grads(scan_log_space, log_a, log_b, log_h0, dtype=torch.float32), want, 1e-5, floor=None)


def test_scan_long_sequence_with_a_near_one():
    """T = 3000 with a in [0.99, 1]: products over the whole sequence never appear, chunk ends are exact."""
    a = 0.99 + 0.01 * torch.rand(1, 3000, *SHAPE, dtype=torch.float64)
    b = torch.randn(1, 3000, *SHAPE, dtype=torch.float64)
    want = run_with_grads(scan, a, b, None, mode="recurrent")
    assert_rel_close(run_with_grads(scan, a, b, None, dtype=torch.float32, chunk_size=16), want, 1e-4, floor=None)


@settings(max_examples=10, deadline=None)
@given(t=st.integers(1, 49), log_space=st.booleans())
def test_split_with_carried_state_equals_one_run(t, log_space):
    torch.manual_seed(t)
    f = scan_log_space if log_space else scan
    x, y, h0 = log_inputs(50, True) if log_space else signed_inputs(50, True)
    h, hT = f(x, y, h0, chunk_size=8)
    h1, s1 = f(x[:, :t], y[:, :t], h0, chunk_size=8)
    h2, s2 = f(x[:, t:], y[:, t:], s1, chunk_size=8)
    torch.testing.assert_close(torch.cat([h1, h2], dim=1), h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s2, hT, rtol=1e-12, atol=1e-12)


def test_empty_sequence_returns_the_initial_state():
    a, b, h0 = signed_inputs(0, True)
    h, hT = scan(a, b, h0)
    assert h.shape == a.shape and hT is h0
    assert torch.equal(scan(a, b)[1], torch.zeros(2, *SHAPE, dtype=torch.float64))
    assert torch.isneginf(scan_log_space(a, b)[1]).all()


@pytest.mark.parametrize("f", [scan, scan_log_space])
def test_bad_input_raises_a_named_error(f):
    a, b, h0 = signed_inputs(5, True)
    with pytest.raises(ShapeError, match="same shape"):
        f(a, b[:, :4])
    with pytest.raises(ShapeError, match=r"\(B, T, \.\.\.\)"):
        f(a[0, 0, 0], b[0, 0, 0])
    with pytest.raises(ShapeError, match="initial_state"):
        f(a, b, h0[:, :1])
    with pytest.raises(ShapeError, match="dtype"):
        f(a, b, h0.float())
    with pytest.raises(ConfigError, match="mode"):
        f(a, b, mode="fast")
    with pytest.raises(ConfigError, match="chunk_size"):
        f(a, b, chunk_size=0)
