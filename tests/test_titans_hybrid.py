"""The Titans hybrids against computations written out here in float64: MAG as its two branches run by hand and
the gate spelled out, MAL as the memory then attention, and MAC as a plain loop over segments following the
paper's Eqs. 21-25, with the retrieval, the masked attention over [persistent | retrieved | segment] and the
gate written out (the memory's writes are the titans mixer's, tested in test_titans.py). The contract suite
(tests/test_contract.py -k titans_) covers steps, splits, padding and gradients."""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import with_grads

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer, flatten_state, select_state
from rnnzoo.mixers.deltanet import L2_EPS
from rnnzoo.mixers.retnet import rotate
from rnnzoo.mixers.titans import NORM_EPS

F64 = torch.float64
D, B = 8, 2
TIGHT = dict(rtol=1e-10, atol=1e-10)


def make(name, **options):
    torch.manual_seed(0)
    return build_mixer(name, D, n_heads=2, **options).double()


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def rms_norm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * weight


def gate(mixer, y, m):
    """o = W_o (RMSNorm(y) * sigmoid(RMSNorm(m))), each norm with its learned gain vector."""
    g = mixer.gate
    return (rms_norm(y, g.y_norm.weight) * torch.sigmoid(rms_norm(m, g.m_norm.weight))) @ g.o_proj.weight.T


def assert_states_equal(got, want):
    got, want = flatten_state(got), flatten_state(want)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TIGHT)


SLIDING_OPTIONS = [{"window": 3, "n_mem_layers": 1, "chunk_size": 2},
                   {"window": 4, "d_mem": 3, "n_persistent": 2, "rotary": False}]


def warm(mixer, seed=5):
    return mixer(randn(B, 3, D, seed=seed))[1]


@pytest.mark.parametrize("options", SLIDING_OPTIONS)
def test_mag_is_attention_and_memory_mixed_by_the_gate(options):
    mixer = make("titans_mag", **options)
    x, s0 = randn(B, 7, D), warm(mixer)
    y, s = mixer(x, s0)
    a, s_att = mixer.attention(x, s0.attention)
    m, s_mem = mixer.memory(x, s0.memory)
    torch.testing.assert_close(y, gate(mixer, a, m), **TIGHT)
    assert_states_equal(s, (s_att, s_mem))


@pytest.mark.parametrize("options", SLIDING_OPTIONS)
def test_mal_is_memory_then_attention(options):
    mixer = make("titans_mal", **options)
    x, s0 = randn(B, 7, D), warm(mixer)
    y, s = mixer(x, s0)
    m, s_mem = mixer.memory(x, s0.memory)
    a, s_att = mixer.attention(m, s0.attention)
    torch.testing.assert_close(y, a, **TIGHT)
    assert_states_equal(s, (s_mem, s_att))


def memory_read(memory, weights, x):
    """Eq. 21, h = M*(q) with q = l2norm(SiLU(W_q x)), through the memory's output norm, gate and projection."""
    n, H = x.shape[1], memory.n_heads
    q = F.silu(x @ memory.q_proj.weight.T).reshape(B, n, H, -1)
    q = q * torch.rsqrt(q.pow(2).sum(-1, keepdim=True) + L2_EPS)  # (B, n, H, K)
    for l, W in enumerate(weights):
        q = torch.einsum("bhoi,bnhi->bnho", W, q)
        q = F.silu(q) if l < len(weights) - 1 else q
    o = rms_norm(q, memory.o_norm.weight) * F.silu(x @ memory.g_proj.weight.T).reshape(B, n, H, -1)
    return o.flatten(2) @ memory.o_proj.weight.T


def segment_attention(att, h, x):
    """Eqs. 22-23: query j (the token x_j, at position 2j + 1) attends over the persistent tokens (no position),
    h_i at positions 2i and x_i at 2i + 1 for i <= j; the context is laid out as the paper's [h | x]."""
    n, H, Dh = x.shape[1], att.n_heads, att.head_dim
    heads = lambda z: z.reshape(B, -1, H, Dh)  # noqa: E731
    ctx = torch.cat([h, x], dim=1)  # (B, 2n, d)
    q, k, v = heads(x @ att.q_proj.weight.T), heads(ctx @ att.k_proj.weight.T), heads(ctx @ att.v_proj.weight.T)
    q_pos = 2 * torch.arange(n) + 1
    k_pos = torch.cat([2 * torch.arange(n), 2 * torch.arange(n) + 1])
    q_turned, k_turned = (rotate(q, q_pos), rotate(k, k_pos)) if att.rotary else (q, k)
    scores = torch.einsum("bjhd,bshd->bhjs", q_turned, k_turned)  # (B, H, n, 2n)
    i = torch.arange(n)
    visible = torch.cat([i[None, :] <= i[:, None]] * 2, dim=1)  # (n, 2n): h_i and x_i for i <= j
    scores = scores.masked_fill(~visible, -math.inf)
    if att.n_persistent:
        p = att.persistent
        k_p, v_p = ((p @ W.weight.T).reshape(-1, H, Dh) for W in (att.k_proj, att.v_proj))  # (n_p, H, Dh)
        scores = torch.cat([torch.einsum("bjhd,phd->bhjp", q, k_p), scores], dim=-1)
        v = torch.cat([v_p.expand(B, -1, H, Dh), v], dim=1)
    o = torch.einsum("bhjs,bshd->bjhd", (scores / math.sqrt(Dh)).softmax(-1), v)  # (B, n, H, Dh)
    return o.flatten(2) @ att.o_proj.weight.T


def mac_by_segments(mixer, x):
    """Segment by segment from the memory M_s at its start: h = M_s*(x) (Eq. 21), y = Attn([p | h | x]) (Eqs.
    22-23), the memory written with y and read at y after each token's write (Eq. 24 and the read of Eq. 25),
    o = y gated by that read (Eq. 25)."""
    state = mixer.memory.init_state(B, dtype=F64)
    outs = []
    for seg in x.split(mixer.segment_len, dim=1):
        h = memory_read(mixer.memory, state.weights, seg)
        y = segment_attention(mixer.attention, h, seg)
        m, state = mixer.memory(y, state)
        outs.append(gate(mixer, y, m))
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("options", [
    {"segment_len": 4, "n_mem_layers": 1, "chunk_size": 3},
    {"segment_len": 3, "d_mem": 3, "n_persistent": 2, "rotary": False},
    {"segment_len": 5, "n_mem_layers": 1, "n_persistent": 3, "use_short_conv": False, "mode": "recurrent"},
])
def test_mac_matches_the_paper_segment_by_segment(options):
    mixer = make("titans_mac", **options)
    x = randn(B, 11, D).requires_grad_()
    y, s = mixer(x)
    y_ref, memory = mac_by_segments(mixer, x)
    params = list(mixer.parameters())
    got, want = with_grads([y], [x, *params]), with_grads([y_ref], [x, *params])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TIGHT)
    assert_states_equal(s.memory, memory)
    state, y_steps = None, []  # token by token, each step inside a segment reads the snapshot M_s
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        y_steps.append(y_t)
    torch.testing.assert_close(torch.stack(y_steps, dim=1), y_ref, **TIGHT)


def test_mac_retrieves_from_the_memory_where_the_segment_started():
    """Changing the memory's weights changes a segment's first output only through the retrieval snapshot."""
    mixer = make("titans_mac", segment_len=4, n_mem_layers=1)
    s0 = mixer(randn(B, 6, D, seed=1))[1]  # two tokens into the second segment
    x = randn(B, 1, D)
    y, _ = mixer(x, s0)
    moved = s0._replace(retrieval=tuple(2 * W for W in s0.retrieval))
    assert not torch.allclose(mixer(x, moved)[0], y)
    h = memory_read(mixer.memory, s0.retrieval, x)
    torch.testing.assert_close(mixer.memory.retrieve(x, s0.retrieval), h, **TIGHT)


def test_mac_rows_at_different_places_in_their_segments():
    """After a padded batch the rows sit at different places in their segments; each matches the row alone."""
    mixer = make("titans_mac", segment_len=3, n_mem_layers=1, chunk_size=2)
    lengths = torch.tensor([1, 2, 3, 5])
    _, state = mixer(randn(4, 5, D, seed=2), lengths=lengths)
    assert state.memory.pos.tolist() == lengths.tolist()
    x = randn(4, 7, D)
    y, final = mixer(x, state)
    for b in range(4):
        y_b, s_b = mixer(x[b:b + 1], select_state(state, [b]))
        torch.testing.assert_close(y[b:b + 1], y_b, **TIGHT)
        assert_states_equal(select_state(final, [b]), s_b)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="segment_len"):
        build_mixer("titans_mac", D, segment_len=0)
    for name in ("titans_mag", "titans_mal", "titans_mac"):
        with pytest.raises(ConfigError, match="n_persistent"):
            build_mixer(name, D, n_persistent=-1)
    with pytest.raises(ConfigError, match="window"):
        build_mixer("titans_mag", D, window=0)
    with pytest.raises(ConfigError, match="n_mem_layers"):
        build_mixer("titans_mal", D, n_mem_layers=0)
