"""DeltaNet, Gated DeltaNet and DeltaProduct beyond the contract suite: the chunk form against the recurrent
loop on long sequences, the spectrum of the explicit per-token transition with and without negative
eigenvalues, DeltaProduct with one Householder step against the two single-step mixers, and option checks."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer, detach_state, flatten_state

D = 8
NAMES = ("deltanet", "gated_deltanet", "deltaproduct")


def make(name, **options):
    torch.manual_seed(0)
    return build_mixer(name, D, n_heads=2, **options).double()


def randn(*shape, seed=1):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def run_with_grads(mixer, x, state):
    """y, the final state's tensors, and the gradients of a fixed probe loss w.r.t. x and every parameter."""
    x = x.clone().requires_grad_()
    mixer.zero_grad()
    y, s = mixer(x, state)
    flat = flatten_state(s)
    loss = sum((t * torch.linspace(-1, 2, t.numel(), dtype=t.dtype).reshape(t.shape)).sum() for t in [y, *flat])
    loss.backward()
    return [y, *flat, x.grad, *[p.grad for p in mixer.parameters()]]


@pytest.mark.parametrize("name", NAMES)
def test_chunk_mode_equals_recurrent_mode_on_a_long_sequence(name):
    chunked = make(name, mode="chunk", chunk_size=32)
    loop = make(name, mode="recurrent")
    loop.load_state_dict(chunked.state_dict())
    x = randn(2, 200, D)
    warm = detach_state(chunked(randn(2, 5, D, seed=2))[1])
    for state in (None, warm):
        for got, want in zip(run_with_grads(chunked, x, state), run_with_grads(loop, x, state), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=8, deadline=None)
@given(T=st.integers(1, 30), chunk_size=st.integers(1, 12), n_householder=st.integers(1, 3),
       seed=st.integers(0, 2**31 - 1))
def test_deltaproduct_chunk_equals_recurrent_for_any_chunk_size(T, chunk_size, n_householder, seed):
    chunked = make("deltaproduct", n_householder=n_householder, chunk_size=chunk_size)
    loop = make("deltaproduct", n_householder=n_householder, mode="recurrent")
    x = randn(2, T, D, seed=seed)
    y, s = chunked(x)
    y_loop, s_loop = loop(x)
    torch.testing.assert_close(y, y_loop, rtol=1e-9, atol=1e-9)
    for got, want in zip(flatten_state(s), flatten_state(s_loop), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def token_transitions(mixer, x):
    """The explicit (K, K) matrix A_t = exp(g_t) prod_j (I - beta_tj k_tj k_tj^T) of every token and head,
    built from the mixer's own k, beta and g: (B, T, H, K, K)."""
    _, k, _, beta, g, _ = mixer._inputs(x, mixer.init_state(x.shape[0], dtype=x.dtype).conv)
    K = k.shape[-1]
    A = torch.eye(K, dtype=x.dtype).expand(*beta.shape[:2], beta.shape[3], K, K)  # (B, T, H, K, K)
    for j in range(k.shape[2]):
        k_j = k[:, :, j, :, :, None]  # (B, T, H, K, 1)
        A = (torch.eye(K, dtype=x.dtype) - beta[:, :, j, :, None, None] * k_j * k_j.transpose(-1, -2)) @ A
    if g is not None:
        A = g.exp()[..., None, None] * A
    return A


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("allow_neg_eigval", [False, True])
def test_transition_spectrum(name, allow_neg_eigval):
    mixer = make(name, allow_neg_eigval=allow_neg_eigval)
    x = 2 * randn(4, 12, D)
    A = token_transitions(mixer, x)  # (B, T, H, K, K)

    # the explicit matrix is the transition the mixer applies: the writes cancel in a difference of two states
    s0, s1 = mixer.init_state(4, dtype=torch.float64), mixer.init_state(4, dtype=torch.float64)
    s0, s1 = s0._replace(S=randn(*s0.S.shape, seed=3)), s1._replace(S=randn(*s1.S.shape, seed=4))
    (_, n0), (_, n1) = mixer(x[:, :1], s0), mixer(x[:, :1], s1)
    torch.testing.assert_close(n0.S - n1.S, A[:, 0] @ (s0.S - s1.S), rtol=1e-9, atol=1e-9)

    eig = torch.linalg.eigvals(A)  # (B, T, H, K)
    assert (eig.abs() <= 1 + 1e-9).all(), "every transition should be a contraction"
    if allow_neg_eigval:
        assert (eig.real < -0.1).any(), "beta = 2 sigmoid(.) should give some transition a negative eigenvalue"
    else:
        # a product of two symmetric matrices with spectrum in [0, 1] has a real spectrum in [0, 1]
        assert (eig.imag.abs() < 1e-9).all()
        assert (eig.real >= -1e-9).all() and (eig.real <= 1 + 1e-9).all()


@pytest.mark.parametrize("name, options", [
    ("deltanet", {}),
    ("deltanet", {"use_output_gate": True, "allow_neg_eigval": True}),
    ("gated_deltanet", {}),
    ("gated_deltanet", {"use_output_gate": False, "allow_neg_eigval": True}),
], ids=["deltanet", "deltanet-gate-neg", "gated_deltanet", "gated_deltanet-nogate-neg"])
def test_deltaproduct_with_one_householder_step_equals_the_single_step_mixer(name, options):
    single = make(name, expand_k=1.0, expand_v=1.5, chunk_size=8, **options)
    product = make("deltaproduct", expand_k=1.0, expand_v=1.5, chunk_size=8, n_householder=1,
                   use_forget_gate=name == "gated_deltanet", use_output_gate=single.g_proj is not None,
                   allow_neg_eigval=single.allow_neg_eigval)
    product.load_state_dict(single.state_dict())
    x, x_warm = randn(3, 21, D), randn(3, 4, D, seed=2)
    _, warm = single(x_warm)
    for state in (None, warm):
        y, s = single(x, state)
        y_p, s_p = product(x, None if state is None else product.state_type(*state))
        torch.testing.assert_close(y_p, y, rtol=1e-10, atol=1e-10)
        for got, want in zip(flatten_state(s_p), flatten_state(s), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_deltaproduct_holds_separate_weights_per_householder_step():
    one, two = make("deltaproduct", n_householder=1), make("deltaproduct", n_householder=2)
    assert two.k_proj.weight.shape[0] == 2 * one.k_proj.weight.shape[0]
    assert two.v_proj.weight.shape[0] == 2 * one.v_proj.weight.shape[0]
    assert two.b_proj.weight.shape[0] == 2 * one.b_proj.weight.shape[0]
    assert two.q_proj.weight.shape == one.q_proj.weight.shape


def test_head_width_and_conv_options_are_checked():
    with pytest.raises(ConfigError, match="expand_k"):
        build_mixer("deltanet", D, n_heads=4, expand_k=0.25)
    with pytest.raises(ConfigError, match="expand_v"):
        build_mixer("gated_deltanet", D, expand_v=-1.0)
    with pytest.raises(ConfigError, match="conv_size"):
        build_mixer("deltaproduct", D, conv_size=1)
    with pytest.raises(ConfigError, match="n_householder"):
        build_mixer("deltaproduct", D, n_householder=0)
    with pytest.raises(ConfigError, match="chunk_size"):
        build_mixer("deltanet", D, chunk_size=0)
