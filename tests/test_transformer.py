"""The transformer mixer against softmax attention written out here in float64; its KV cache in blocks (steps,
pieces, ring-buffer wrap-around, rows at different positions, the max_len limit, one block written per step),
its rotary positions and its persistent memory tokens."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, StateError
from rnnzoo.mixers import build_mixer, select_state

D = 8
TIGHT = dict(rtol=1e-10, atol=1e-10)
OPTIONS = [{}, {"n_heads": 2}, {"n_heads": 2, "window": 3}, {"rotary": False, "window": 5}, {"max_len": 11},
           {"n_heads": 2, "max_len": 11, "block_size": 3}, {"n_heads": 2, "window": 5, "block_size": 2},
           {"n_heads": 2, "n_persistent": 3}, {"n_heads": 2, "window": 3, "n_persistent": 2, "block_size": 2},
           {"rotary": False, "n_persistent": 1, "max_len": 12, "block_size": 5}]


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
    """y = W_o softmax([q P_K^T, Q K^T / sqrt(D) + mask]) [P_V; V] per head, for x (B, T, d_model) read from
    position 0; mask is 0 where 0 <= t - s < window and -inf elsewhere. P_K = P W_k^T and P_V = P W_v^T are the
    persistent tokens' keys and values, scored (divided by sqrt(D) too) against the query before its turn."""
    B, T, _ = x.shape
    H, Dh = mixer.n_heads, mixer.head_dim
    q, k, v = (x @ p.weight.T for p in (mixer.q_proj, mixer.k_proj, mixer.v_proj))
    q, k, v = (z.reshape(B, T, H, Dh) for z in (q, k, v))
    q_free = q
    if mixer.rotary:
        pos = torch.arange(T, dtype=torch.float64)
        q, k = turn(q, pos), turn(k, pos)
    lag = torch.arange(T)[:, None] - torch.arange(T)  # (T, T)
    allowed = (lag >= 0) & (lag < (window or T + 1))
    mask = torch.zeros(T, T, dtype=torch.float64).masked_fill(~allowed, -math.inf)
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(Dh) + mask  # (B, H, T, T)
    if mixer.n_persistent:
        P = mixer.persistent  # (n_p, d_model)
        k_p, v_p = ((P @ p.weight.T).reshape(-1, H, Dh) for p in (mixer.k_proj, mixer.v_proj))  # (n_p, H, Dh)
        persistent = torch.einsum("bthd,jhd->bhtj", q_free, k_p) / math.sqrt(Dh)  # (B, H, T, n_p)
        scores = torch.cat([persistent, scores], dim=-1)
        v = torch.cat([v_p.expand(B, *v_p.shape), v], dim=1)  # (B, n_p + T, H, Dh)
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


def whole(blocks, dim):
    return torch.cat(blocks, dim=dim)


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


@pytest.mark.parametrize("L, block_size, n_blocks, block", [(11, 4, 3, 4), (12, 5, 3, 4), (3, 512, 1, 3),
                                                             (65737, 256, 257, 256), (65536, 512, 128, 512)])
def test_cache_blocks_cover_the_length_with_little_spare(L, block_size, n_blocks, block):
    for options in ({"max_len": L}, {"window": L}):
        mixer = build_mixer("transformer", D, block_size=block_size, **options)
        assert (mixer.n_blocks, mixer.block, mixer.cache_len) == (n_blocks, block, n_blocks * block)
        assert L <= mixer.cache_len < L + n_blocks


def test_ring_buffer_wraps_around():
    """Window 3 in blocks of 2: C = 4 slots, so after 9 tokens slot p % 4 holds position p for p = 5 .. 8, the key
    turned at p; position 5 stays cached but lies outside the window of every later query."""
    mixer = make(n_heads=2, window=3, block_size=2)
    x = randn(2, 14, D)
    _, state = mixer(x[:, :9])
    assert [tuple(b.shape) for b in state.k] == [(2, 2, 2, 4)] * 2
    assert whole(state.kpos, 1).tolist() == [[8, 5, 6, 7]] * 2 and state.pos.tolist() == [9, 9]
    _, k_all, v_all = mixer._qkv(x[:, :9], torch.arange(9).expand(2, 9))  # (B, H, 9, D)
    torch.testing.assert_close(whole(state.k, 2), k_all[:, :, [8, 5, 6, 7]], **TIGHT)
    torch.testing.assert_close(whole(state.v, 2), v_all[:, :, [8, 5, 6, 7]], **TIGHT)
    y_rest, _ = run_steps(mixer, x[:, 9:], state)
    torch.testing.assert_close(y_rest, reference(mixer, x, window=3)[:, 9:], **TIGHT)


@pytest.mark.parametrize("options", [{"window": 5, "block_size": 2}, {"max_len": 12, "block_size": 4}])
def test_a_step_writes_one_block_and_shares_the_others(options):
    """The O(block) step: the new state holds the very tensors of the old one except in the block written."""
    mixer = make(n_heads=2, **options)
    x = randn(2, 11, D)
    _, state = mixer(x[:, :7])
    for t in range(7, 11):
        _, new = mixer.step(x[:, t], state)
        written = t % mixer.cache_len // mixer.block
        for field in ("k", "v", "kpos"):
            old_blocks, new_blocks = getattr(state, field), getattr(new, field)
            assert [a is b for a, b in zip(old_blocks, new_blocks)] == [j != written for j in range(mixer.n_blocks)]
        assert new.kpos[written][:, t % mixer.block].tolist() == [t, t]
        state = new


@pytest.mark.parametrize("options", [{"window": 4}, {"window": 4, "block_size": 3}, {"max_len": 13, "block_size": 2},
                                     {"window": 3, "block_size": 2, "n_persistent": 2}])
def test_rows_at_different_positions_after_a_padded_batch(options):
    mixer = make(n_heads=2, **options)
    x, more = randn(3, 7, D), randn(3, 5, D, seed=1)
    lengths = [2, 7, 5]
    _, state = mixer(x, lengths=torch.tensor(lengths))
    assert state.pos.tolist() == lengths
    y, _ = mixer(more, state)
    y_steps, _ = run_steps(mixer, more, state)
    torch.testing.assert_close(y_steps, y, **TIGHT)
    for b, L in enumerate(lengths):
        row = torch.cat([x[b:b + 1, :L], more[b:b + 1]], dim=1)
        torch.testing.assert_close(y[b:b + 1], reference(mixer, row, window=options.get("window"))[:, L:], **TIGHT)
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
    blocked = make(max_len=5, block_size=2)  # 3 blocks of 2: a spare slot, still 5 positions at most
    _, state = blocked(x[:, :5])
    with pytest.raises(StateError, match="max_len=5"):
        blocked.step(x[:, 5], state)


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
@pytest.mark.parametrize("n_persistent", [0, 2])
def test_windowed_outputs_see_relative_positions_only(rotary, n_persistent):
    """With a window of 3 the output at t depends on x_{t-2..t} and, through rotary, on their order; a prefix
    before the window shifts every absolute position and changes nothing, persistent tokens included (they
    have no position)."""
    mixer = make(n_heads=2, window=3, rotary=rotary, n_persistent=n_persistent)
    x, prefix = randn(1, 6, D), randn(1, 5, D, seed=1)
    y, _ = mixer(x)
    y_shifted, _ = mixer(torch.cat([prefix, x], dim=1))
    torch.testing.assert_close(y_shifted[:, 5 + 2:], y[:, 2:], **TIGHT)
    swapped = x[:, [1, 0, 2, 3, 4, 5]]
    y_swapped, _ = mixer(swapped)
    assert torch.allclose(y_swapped[:, 2], y[:, 2]) != rotary, "only rotary positions see the order in the window"


def test_persistent_tokens_are_tokens_prepended_to_the_input():
    """Without positions, attending to n_p persistent tokens is a plain transformer reading [P; x] (Titans'
    form); its outputs at P's own positions are dropped."""
    mixer = make(n_heads=2, rotary=False, n_persistent=3)
    plain = make(n_heads=2, rotary=False)
    plain.load_state_dict({k: v for k, v in mixer.state_dict().items() if k != "persistent"})
    x = randn(2, 6, D)
    prepended = torch.cat([mixer.persistent.detach().expand(2, 3, D), x], dim=1)  # (B, 3 + T, d_model)
    torch.testing.assert_close(mixer(x)[0], plain(prepended)[0][:, 3:], **TIGHT)


def test_persistent_tokens_matter_and_learn():
    mixer = make(n_heads=2, window=2, n_persistent=2)
    x = randn(2, 5, D)
    y, _ = mixer(x)
    without = make(n_heads=2, window=2)
    without.load_state_dict({k: v for k, v in mixer.state_dict().items() if k != "persistent"})
    assert not torch.allclose(without(x)[0], y), "the persistent tokens should change every output"
    y.square().sum().backward()
    assert mixer.persistent.grad is not None and mixer.persistent.grad.abs().sum() > 0
    assert mixer.init_state(1).k[0].shape == without.init_state(1).k[0].shape, "they take no cache slots"


@pytest.mark.parametrize("options, match", [
    ({"n_heads": 3}, "n_heads=3"),
    ({"n_heads": 8}, "even head width"),
    ({"window": 0}, "window"),
    ({"max_len": 0}, "max_len"),
    ({"n_persistent": -1}, "n_persistent"),
    ({"block_size": 0}, "block_size"),
])
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        build_mixer("transformer", D, **options)
    build_mixer("transformer", D, n_heads=8, rotary=False)
