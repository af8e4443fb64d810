"""Memory caching against a direct computation written out here: the online output of the inner mixer over the
prefix, the states cached at segment ends (run from scratch over each prefix), one inner step from each, the
router's softmax (or top-k), the oldest segments evicted past max_segments. And Mixer.read, which takes those
steps from many states at once, against one step per state and token, for every registered mixer."""
import math

import pytest
import torch
from mixer_configs import mixer_cases

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import base, build_mixer, flatten_state, map_state, unflatten_state

D, L = 8, 3


def direct(mc, x):
    """y (B, T, D) token by token, every piece recomputed from the inputs."""
    inner, ys = mc.mixer, []
    r = mc.router_r(x)  # (B, T, d_r)
    for t in range(x.shape[1]):
        y_on = inner(x[:, :t + 1])[0][:, -1]  # (B, D)
        seg = t // L
        cached = list(range(seg))[-mc.max_segments:]
        if not cached:
            ys.append(y_on)
            continue
        u = mc.router_u(x[:, t])  # (B, d_r)
        outs = [y_on] + [inner.step(x[:, t], inner(x[:, :(i + 1) * L])[1])[0] for i in cached]
        summaries = [r[:, seg * L:t + 1].mean(1)] + [r[:, i * L:(i + 1) * L].mean(1) for i in cached]
        scores = torch.stack([(u * s).sum(-1) for s in summaries], dim=-1) / math.sqrt(mc.d_r)  # (B, 1 + n)
        if mc.aggregation == "sparse":
            top = scores[:, 1:].topk(min(mc.top_k, len(cached)), dim=-1).values[:, -1:]
            scores = torch.cat([scores[:, :1], scores[:, 1:].masked_fill(scores[:, 1:] < top, -torch.inf)], -1)
        gamma = torch.softmax(scores, dim=-1)
        ys.append(sum(gamma[:, j, None] * o for j, o in enumerate(outs)))
    return torch.stack(ys, dim=1)


@pytest.mark.parametrize("inner,options", [("gru", {}), ("gla", {"inner_options": {"n_heads": 2}}),
                                           ("gru", {"aggregation": "sparse", "top_k": 2}),
                                           ("retnet", {"inner_options": {"n_heads": 2}, "aggregation": "sparse"})])
def test_matches_the_direct_computation(inner, options):
    torch.manual_seed(0)
    mc = build_mixer("memory_cache", D, inner=inner, segment_len=L, max_segments=3, d_r=4, **options).double()
    x = torch.randn(2, 14, D, dtype=torch.float64)  # 4 full segments and a part: the first one is evicted
    y, state = mc(x)
    torch.testing.assert_close(y, direct(mc, x))
    assert state.n_cached.tolist() == [4, 4] and state.seg_pos.tolist() == [2, 2]


def test_without_a_cache_it_is_the_inner_mixer():
    torch.manual_seed(0)
    mc = build_mixer("memory_cache", D, inner="gru", segment_len=8)
    x = torch.randn(2, 8, D)
    torch.testing.assert_close(mc(x)[0], mc.mixer(x)[0])


def test_gradients_reach_the_router_and_the_inner_mixer():
    torch.manual_seed(0)
    mc = build_mixer("memory_cache", D, inner="gru", segment_len=2)
    mc(torch.randn(2, 7, D))[0].sum().backward()
    for name, p in mc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_options_name_the_problem():
    with pytest.raises(ConfigError, match="segment_len"):
        build_mixer("memory_cache", D, segment_len=0)
    with pytest.raises(ConfigError, match="aggregation"):
        build_mixer("memory_cache", D, aggregation="mean")
    with pytest.raises(ConfigError, match="inner_options"):
        build_mixer("memory_cache", D, inner_options=3)
    with pytest.raises(ConfigError, match="not causal"):
        build_mixer("memory_cache", D, inner="gru", inner_options={"bidirectional": True})


def stacked_states(mixer, batch, slots):
    """States left by random prefixes of different lengths, stacked on a slot axis: every tensor (B, S, ...)."""
    states = [flatten_state(mixer(torch.randn(batch, 1 + s, D, dtype=torch.float64))[1]) for s in range(slots)]
    template = mixer.init_state(1, device="meta")
    return unflatten_state(template, [torch.stack(ts, dim=1) for ts in zip(*states)])


@pytest.mark.parametrize("name, options", mixer_cases())
def test_read_is_one_step_from_each_state(name, options):
    torch.manual_seed(0)
    mixer = build_mixer(name, D, **options).double().eval()
    if not mixer.causal:
        pytest.skip("read takes steps; a mixer that is not causal has none")
    states = stacked_states(mixer, 2, 3)
    x = torch.randn(2, 4, D, dtype=torch.float64)
    steps = [[mixer.step(x_t, map_state(lambda t: t[:, s], states))[0] for x_t in x.unbind(1)] for s in range(3)]
    torch.testing.assert_close(mixer.read(x, states), torch.stack([torch.stack(ys, 1) for ys in steps], 1))


def test_the_fallback_read_in_pieces_has_the_same_values_and_gradients(monkeypatch):
    torch.manual_seed(0)
    mixer = build_mixer("gru", D).double()
    states = map_state(lambda t: t.detach().requires_grad_(), stacked_states(mixer, 2, 3))
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, 3, 5, D, dtype=torch.float64)
    inputs = [x, *flatten_state(states), *mixer.parameters()]

    def run():
        y = mixer.read(x, states)
        return [y, *torch.autograd.grad((y * probe).sum(), inputs)]

    whole = run()
    monkeypatch.setattr(base, "READ_BUDGET", 1)  # one token a piece, each recomputed in the backward
    for a, b in zip(run(), whole):
        torch.testing.assert_close(a, b)
