"""The Recurrent Memory Transformer against a direct computation: the backbone run on [memory | segment | memory]
for each segment, the memory carried by hand; truncation through segments; the memory carries information.
ARMT's associative write against the delta rule written out per row and token."""
import pytest
import torch

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer

D, N_MEM, L = 8, 2, 3


def make(name="rmt", **options):
    torch.manual_seed(0)
    return build_mixer(name, D, backbone_layers=2, n_heads=2, n_mem=N_MEM, segment_len=L, **options).double()


def direct(rmt, x):
    """Outputs (B, T, D) and the final memory, each segment a fresh backbone call on [M | segment | M]."""
    B, T, _ = x.shape
    memory, ys = rmt.memory_init.expand(B, -1, -1), []
    for start in range(0, T, L):
        seg = x[:, start:start + L]
        full = seg.shape[1] == L
        y, _ = rmt.backbone(torch.cat([memory, seg] + ([memory] if full else []), dim=1))
        ys.append(rmt.norm(y[:, N_MEM:N_MEM + seg.shape[1]]))
        if full:
            memory = rmt.norm(y[:, N_MEM + L:])
    return torch.cat(ys, dim=1), memory


@pytest.mark.parametrize("T", [2, 3, 7, 9])
def test_matches_the_direct_computation(T):
    rmt = make()
    x = torch.randn(2, T, D, dtype=torch.float64)
    y, state = rmt(x)
    want_y, want_memory = direct(rmt, x)
    torch.testing.assert_close(y, want_y)
    torch.testing.assert_close(state.memory, want_memory)
    assert state.segments.tolist() == [T // L] * 2


@pytest.mark.parametrize("name", ["rmt", "armt"])
def test_pieces_and_steps_equal_one_call(name):
    rmt = make(name)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    y, _ = rmt(x)
    y1, s = rmt(x[:, :4])
    y2, _ = rmt(x[:, 4:], s)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    s, steps = None, []
    for x_t in x.unbind(1):
        y_t, s = rmt.step(x_t, s)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, dim=1), y)


@pytest.mark.parametrize("name", ["rmt", "armt"])
def test_memory_stays_bounded_over_a_long_stream(name):
    """Carried over 300 segments the memory is a LayerNorm output (RMS about 1 per token) and ARMT's store stays
    finite: the raw residual outputs grew with every segment."""
    rmt = make(name).float()
    with torch.no_grad():
        _, state = rmt(torch.randn(2, 300 * L, D))
    rms = state.memory.pow(2).mean(-1).sqrt()  # (B, n_mem)
    assert float(rms.max()) < 3.0
    if name == "armt":
        assert bool(torch.isfinite(state.A).all()) and float(state.A.abs().max()) < 1e3


@pytest.mark.parametrize("name", ["rmt", "armt"])
def test_memory_carries_information_across_segments(name):
    rmt = make(name)
    x = torch.randn(1, 2 * L, D, dtype=torch.float64)
    changed = x.clone()
    changed[:, 0] += torch.randn(D, dtype=torch.float64)  # only the first segment differs
    y, y_changed = rmt(x)[0], rmt(changed)[0]
    assert not torch.allclose(y[:, L:], y_changed[:, L:])


@pytest.mark.parametrize("name", ["rmt", "armt"])
def test_bptt_segments_cuts_the_gradient_between_segments(name):
    x = torch.randn(1, 2 * L, D, dtype=torch.float64, requires_grad=True)
    for bptt, reaches in ((1, False), (None, True)):
        y, _ = make(name, bptt_segments=bptt)(x)
        weights = torch.randn(y[:, L:].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad((y[:, L:] * weights).sum(), x)  # a plain sum is flat through the LayerNorm
        assert bool(grad[:, :L].abs().max() > 1e-8) == reaches


def test_learned_first_memory_trains():
    rmt = make()
    y, _ = rmt(torch.randn(2, 4, D, dtype=torch.float64))
    (y * torch.randn(y.shape, dtype=torch.float64)).sum().backward()
    assert rmt.memory_init.grad is not None and rmt.memory_init.grad.abs().max() > 1e-8


@torch.no_grad()
def test_armt_writes_with_the_delta_rule():
    """One segment from an empty associative memory: the reads are zero, so each layer's input at the write tokens
    comes from the plain backbone; A and z must follow the delta rule over those tokens, row by row."""
    armt = make("armt", d_key=4, nu=2)
    x = torch.randn(2, L, D, dtype=torch.float64)
    _, state = armt(x)
    memory = armt.memory_init.expand(2, -1, -1)
    h = torch.cat([memory, x, memory], dim=1)
    for i, layer in enumerate(armt.backbone.layers):
        m = h[:, -N_MEM:]  # (B, n_mem, D)
        for b in range(2):
            A, z = torch.zeros(armt.features, D, dtype=torch.float64), torch.zeros(armt.features, dtype=torch.float64)
            for j in range(N_MEM):
                r = torch.relu(torch.cat([armt.k_proj[i](m[b, j]), -armt.k_proj[i](m[b, j])]))
                k = torch.cat([r * r.roll(s) for s in (1, 2)])
                v, beta = armt.v_proj[i](m[b, j]), torch.sigmoid(armt.b_proj[i](m[b, j]))
                v_old = A.T @ k / (z @ k + armt.EPS)
                A = A + beta * torch.outer(k, v - v_old)
                z = z + max(0.0, float(1 - z @ k / (k @ k + armt.EPS))) * k
            torch.testing.assert_close(state.A[b, i], A)
            torch.testing.assert_close(state.z[b, i], z)
        h, _ = layer(h)


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="segment_len"):
        build_mixer("rmt", D, segment_len=0)
    with pytest.raises(ConfigError, match="bptt_segments"):
        build_mixer("rmt", D, bptt_segments=0)
    with pytest.raises(ConfigError, match="nu"):
        build_mixer("armt", D, nu=0)
