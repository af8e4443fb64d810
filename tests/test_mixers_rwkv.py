"""RWKV-6 and RWKV-7 mixers beyond the generic contract: the chunk and recurrent forms on a long sequence, the
recurrences written as the papers write them, the eigenvalue range of RWKV-7's transition, the token-shift
field of the state, and width checks."""
from __future__ import annotations

import pytest
import torch

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.rwkv import shifted

D, B = 8, 2
NAMES = ("rwkv6", "rwkv7")


def make(name, seed=0, **options):
    """A float64 mixer whose every parameter is moved off its initial value, so that the LoRA paths, the bonus
    and the data-dependent shifts all take part."""
    torch.manual_seed(seed)
    mixer = build_mixer(name, D, n_heads=2, **options).double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return mixer


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def warm(mixer):
    """The detached state after a short random prefix."""
    with torch.no_grad():
        return mixer(randn(B, 5, D))[1]


@pytest.mark.parametrize("name", NAMES)
def test_chunk_matches_recurrent_on_a_long_sequence(name):
    chunked = make(name, mode="chunk", chunk_size=32)
    looped = make(name, mode="recurrent")
    looped.load_state_dict(chunked.state_dict())
    x, s0 = randn(B, 200, D), warm(chunked)

    def run(mixer):
        xm = x.clone().requires_grad_()
        S0 = s0.S.clone().requires_grad_()
        y, s = mixer(xm, s0._replace(S=S0))
        (y.square().sum() + s.S.sum()).backward()
        return y, s.S, s.x_prev, xm.grad, S0.grad

    for got, want in zip(run(chunked), run(looped), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_rwkv6_matches_the_papers_sum_over_past_tokens():
    """o_t = sum_{i<t} (r_t * prod_{i<j<t} w_j * k_i) v_i + (r_t . (u * k_t)) v_t, from a zero state."""
    mixer = make("rwkv6", chunk_size=4)
    x = randn(B, 11, D)
    y, _ = mixer(x)
    r, k, log_w, v, g = mixer._streams(x, shifted(x, torch.zeros(B, D, dtype=x.dtype)))  # (B, T, H, K|V)
    w = log_w.exp()
    o = torch.zeros_like(v)
    for t in range(x.shape[1]):
        o[:, t] = (r[:, t] * mixer.bonus * k[:, t]).sum(-1, keepdim=True) * v[:, t]
        for i in range(t):
            decay = w[:, i + 1:t].prod(dim=1)  # (B, H, K), empty product = 1
            o[:, t] += (r[:, t] * decay * k[:, i]).sum(-1, keepdim=True) * v[:, i]
    torch.testing.assert_close(mixer._output(o, g), y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("allow_neg_eigval", [False, True])
def test_rwkv7_matches_explicit_transitions_in_the_papers_orientation(allow_neg_eigval):
    """The paper keeps the state as (V, K): S'_t = S'_{t-1} (diag(w_t) - kappa^T (a * kappa)) + v^T k, o = S' r."""
    mixer = make("rwkv7", chunk_size=4, allow_neg_eigval=allow_neg_eigval)
    x, s0 = randn(B, 11, D), warm(mixer)
    y, s = mixer(x, s0)
    r, log_w, k, v, kappa, a, g = mixer._streams(x, shifted(x, s0.x_prev))  # (B, T, H, K)
    S = s0.S.transpose(-1, -2)  # (B, H, V, K)
    o = []
    for t in range(x.shape[1]):
        removal = kappa[:, t].unsqueeze(-1) * (a * kappa)[:, t].unsqueeze(-2)  # (B, H, K, K), kappa^T (a kappa)
        transition = torch.diag_embed(log_w[:, t].exp()) - removal
        S = S @ transition + v[:, t].unsqueeze(-1) * k[:, t].unsqueeze(-2)  # (B, H, V, K)
        o.append((S @ r[:, t].unsqueeze(-1)).squeeze(-1))  # (B, H, V)
    torch.testing.assert_close(mixer._output(torch.stack(o, 1), r, k, v, g), y, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S.transpose(-1, -2), s.S, rtol=1e-10, atol=1e-10)


def rwkv7_transitions(mixer, x):
    """The (K, K) transition diag(w_t) - (a_t * kappa_t) kappa_t^T of every step and head: (B, T, H, K, K)."""
    _, log_w, _, _, kappa, a, _ = mixer._streams(x, shifted(x, torch.zeros_like(x[:, 0])))
    return torch.diag_embed(log_w.exp()) - (a * kappa).unsqueeze(-1) * kappa.unsqueeze(-2)


def real_eigenvalues(M):
    eig = torch.linalg.eigvals(M)
    torch.testing.assert_close(eig.imag, torch.zeros_like(eig.imag), rtol=0, atol=1e-8)
    return eig.real


def test_allow_neg_eigval_reaches_towards_minus_one():
    """With the strongest decay (w = 0.545) and a learning rate near its top, the eigenvalue along kappa is
    w - a: about -0.45 by default, about -1 with the option, never below."""
    x = randn(B, 6, D)
    low = {}
    for option in (False, True):
        mixer = make("rwkv7", allow_neg_eigval=option)
        with torch.no_grad():
            mixer.w0.fill_(30.0)
            mixer.a0.fill_(8.0)
            mixer.a_A.zero_()
        eig = real_eigenvalues(rwkv7_transitions(mixer, x))
        assert eig.max() <= 1 + 1e-12
        low[option] = eig.min().item()
    assert -0.4549 < low[False] < -0.44
    assert -1 < low[True] < -0.99


@pytest.mark.parametrize("seed", range(3))
def test_rwkv7_eigenvalues_stay_in_range_for_any_decays(seed):
    """(-1, 1] with the option, (min w - 1, 1] without, for decays and learning rates spread over channels."""
    x = randn(B, 6, D)
    for option in (False, True):
        mixer = make("rwkv7", seed=seed, allow_neg_eigval=option)
        with torch.no_grad():
            mixer.w0.normal_(0, 4)
            mixer.a0.normal_(3, 3)
        eig = real_eigenvalues(rwkv7_transitions(mixer, x))
        assert eig.max() <= 1 + 1e-12
        assert eig.min() > (-1 if option else -0.4549)


@pytest.mark.parametrize("name", NAMES)
def test_token_shift_field_carries_the_last_input_across_a_split(name):
    mixer = make(name, chunk_size=3)
    x, s0 = randn(B, 9, D), warm(mixer)
    y, _ = mixer(x, s0)
    y1, s1 = mixer(x[:, :4], s0)
    assert torch.equal(s1.x_prev, x[:, 3])
    y2, _ = mixer(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-10, atol=1e-10)
    y2_forgot, _ = mixer(x[:, 4:], s1._replace(x_prev=torch.zeros_like(s1.x_prev)))
    assert not torch.allclose(y2_forgot[:, 0], y2[:, 0]), "the first step after a split must read x_prev"


@pytest.mark.parametrize("name, options, match", [
    ("rwkv6", {"n_heads": 3}, "n_heads"),
    ("rwkv6", {"expand_k": 0.3}, "expand_k"),
    ("rwkv6", {"expand_v": -1.0}, "expand_v"),
    ("rwkv7", {"n_heads": 3}, "n_heads"),
    ("rwkv7", {"a_low_rank_dim": 0}, "a_low_rank_dim"),
    ("rwkv7", {"chunk_size": 0}, "chunk_size"),
])
def test_bad_widths_raise_config_errors(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_mixer(name, D, **options)
