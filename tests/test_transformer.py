"""The transformer mixer against softmax attention written out here in float64; its KV cache (steps, pieces,
ring-buffer wrap-around, rows at different positions, the max_len limit) and its rotary positions."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, StateError
from rnnzoo.mixers import build_mixer, select_state

D = 8
TIGHT = dict(rtol=1e-10, atol=1e-10)
OPTIONS = [{}, {"n_heads": 2}, {"n_heads": 2, "window": 3}, {"rotary": False, "window": 5}, {"max_len": 11}]


def make(**options):
    torch.manual_seed(0)
    return build_mixer("transformer", D, **options).double().eval()


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def turn(z, pos):
    """Rotary position as complex multiplication: channel pair (i, i + D/2) is the number z_i + i z_{i+D/2},
    multiplied by exp(i pos 10000^(-2i/D)). z (B, T, H, D), pos (T,)."""
    half = z.shape[-1] // 2
    freq = 10000.0 ** (-torch.arange(0, 2 * half, 2, dtype=torch.float64) / (2 * half))  # (D/2,)
    c = torch.complex(z[..., :half], z[..., half:]) * torch.polar(torch.ones(len(pos), half, dtype=torch.float64),
                                                                 pos[:, None] * freq)[:, None, :]
    return torch.cat([c.real, c.imag], dim=-1)


def reference(mixer, x, window=None):
    """y = W_o softmax(Q K^T / sqrt(D) + mask) V per head, for x (B, T, d_model) read from position 0;
    mask is 0 where 0 <= t - s < window and -inf elsewhere."""
    B, T, _ = x.shape
    H, Dh = mixer.n_heads, mixer.head_dim
    q, k, v = (x @ p.weight.T for p in (mixer.q_proj, mixer.k_proj, mixer.v_proj))
    q, k, v = (z.reshape(B, T, H, Dh) for z in (q, k, v))
    if mixer.rotary:
        pos = torch.arange(T, dtype=torch.float64)
        q, k = turn(q, pos), turn(k, pos)
    lag = torch.arange(T)[:, None] - torch.arange(T)  # (T, T)
    allowed = (lag >= 0) & (lag < (window or T + 1))
    mask = torch.zeros(T, T, dtype=torch.float64).masked_fill(~allowed, -math.inf)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(Dh) + mask  # (B, H, T, T)
    o = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v)  # (B, T, H, Dh)
    return o.reshape(B, T, H * Dh) @ mixer.o_proj.weight.T


def run_steps(mixer, x, state=None):
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, dim=1), state


def assert_states_equal(a, b):
    for ta, tb in zip(a, b, strict=True):
        torch.testing.assert_close(ta, tb, **TIGHT)


@pytest.mark.parametrize("options", OPTIONS)
def test_forward_and_steps_match_written_out_attention(options):
    mixer = make(**options)
    x = randn(2, 11, D)
    want = reference(mixer, x, options.get("window"))
    y, state = mixer(x)
    torch.testing.assert_close(y, want, **TIGHT)
    y_steps, state_steps = run_steps(mixer, x)
    torch.testing.assert_close(y_steps, want, **TIGHT)
    assert_states_equal(state_steps, state)


@pytest.mark.parametrize("options", OPTIONS)
def test_forward_in_pieces_with_the_cache_equals_one_call(options):
    mixer = make(**options)
    x = randn(2, 11, D)
    y, state = mixer(x)

    @settings(max_examples=15, deadline=None)
    @given(cuts=st.lists(st.integers(0, 11), max_size=4))
    def check(cuts):
        bounds = [0, *sorted(cuts), 11]
        ys, s = [], None
        for a, b in zip(bounds, bounds[1:]):
            y_piece, s = mixer(x[:, a:b], s)
            ys.append(y_piece)
        torch.testing.assert_close(torch.cat(ys, dim=1), y, **TIGHT)
        assert_states_equal(s, state)

    check()


def test_ring_buffer_wraps_around():
    """With window 3, after 8 tokens slot p % 3 holds position p for p = 5, 6, 7, with the key rotated at p."""
    mixer = make(n_heads=2, window=3)
    x = randn(2, 14, D)
    _, state = mixer(x[:, :8])
    assert state.k.shape == (2, 2, 3, 4) and state.kpos.tolist() == [[6, 7, 5]] * 2
    assert state.pos.tolist() == [8, 8]
    _, k_all, v_all = mixer._qkv(x[:, :8], torch.arange(8).expand(2, 8))  # (B, H, 8, D)
    torch.testing.assert_close(state.k, k_all[:, :, [6, 7, 5]], **TIGHT)
    torch.testing.assert_close(state.v, v_all[:, :, [6, 7, 5]], **TIGHT)
    y_rest, _ = run_steps(mixer, x[:, 8:], state)
    torch.testing.assert_close(y_rest, reference(mixer, x, window=3)[:, 8:], **TIGHT)


def test_rows_at_different_positions_after_a_padded_batch():
    mixer = make(n_heads=2, window=4)
    x, more = randn(3, 7, D), randn(3, 5, D, seed=1)
    lengths = [2, 7, 5]
    _, state = mixer(x, lengths=torch.tensor(lengths))
    assert state.pos.tolist() == lengths
    y, _ = mixer(more, state)
    for b, L in enumerate(lengths):
        whole = torch.cat([x[b:b + 1, :L], more[b:b + 1]], dim=1)
        torch.testing.assert_close(y[b:b + 1], reference(mixer, whole, window=4)[:, L:], **TIGHT)
        _, alone = mixer(x[b:b + 1, :L])
        assert_states_equal(select_state(state, [b]), alone)


def test_reading_past_max_len_raises_a_state_error():
    mixer = make(max_len=5)
    x = randn(2, 6, D)
    _, state = mixer(x[:, :5])
    with pytest.raises(StateError, match="max_len=5.*window"):
        mixer.step(x[:, 5], state)
    with pytest.raises(StateError, match="max_len"):
        mixer(x)
    with pytest.raises(StateError, match="max_len"):
        mixer(x[:, :3], mixer(x[:, :3])[1])
    y, _ = make(max_len=5, window=5)(randn(2, 12, D))
    assert y.shape == (2, 12, D)


def test_rotary_scores_depend_on_the_offset_only():
    mixer = make(n_heads=2)
    x = randn(1, 2, D)

    def score(t, s):
        q, _, _ = mixer._qkv(x[:, :1], torch.tensor([[t]]))
        _, k, _ = mixer._qkv(x[:, 1:], torch.tensor([[s]]))
        return (q * k).sum(-1).flatten()  # (H,)

    for t, s in [(3, 0), (5, 5), (9, 2)]:
        for shift in (1, 7, 100):
            torch.testing.assert_close(score(t + shift, s + shift), score(t, s), **TIGHT)
        assert not torch.allclose(score(t + 1, s), score(t, s))


@pytest.mark.parametrize("rotary", [True, False])
def test_windowed_outputs_see_relative_positions_only(rotary):
    """With a window of 3 the output at t depends on x_{t-2..t} and, through rotary, on their order; a prefix
    before the window shifts every absolute position and changes nothing."""
    mixer = make(n_heads=2, window=3, rotary=rotary)
    x, prefix = randn(1, 6, D), randn(1, 5, D, seed=1)
    y, _ = mixer(x)
    y_shifted, _ = mixer(torch.cat([prefix, x], dim=1))
    torch.testing.assert_close(y_shifted[:, 5 + 2:], y[:, 2:], **TIGHT)
    swapped = x[:, [1, 0, 2, 3, 4, 5]]
    y_swapped, _ = mixer(swapped)
    assert torch.allclose(y_swapped[:, 2], y[:, 2]) != rotary, "only rotary positions see the order in the window"


@pytest.mark.parametrize("options, match", [
    ({"n_heads": 3}, "n_heads=3"),
    ({"n_heads": 8}, "even head width"),
    ({"window": 0}, "window"),
    ({"max_len": 0}, "max_len"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        build_mixer("transformer", D, **options)
    build_mixer("transformer", D, n_heads=8, rotary=False)
