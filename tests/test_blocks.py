"""Stack, ResidualBlock, build_stack and Bidirectional against their definitions written out by hand."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnzoo.blocks import Bidirectional, BidirectionalState, ResidualBlock, RMSNorm, Stack, StackState, build_stack
from rnnzoo.errors import ConfigError, NotCausalError, UnknownNameError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.elman import Elman

D, B, T = 6, 2, 7
f64 = dict(dtype=torch.float64)


def x_(t=T, d=D):
    return torch.randn(B, t, d, **f64)


def three_layers():
    return [build_mixer("elman", D), build_mixer("jordan", D, hidden_size=4), build_mixer("indrnn", D)]


def test_stack_carries_each_layers_state():
    layers = three_layers()
    stack = Stack(layers).double()
    s0 = StackState(tuple(layer(x_())[1] for layer in layers))
    x = x_()
    y, s = stack(x, s0)
    h, expected_states = x, []
    for layer, s_l in zip(layers, s0.layers):
        h, s_l = layer(h, s_l)
        expected_states.append(s_l)
    torch.testing.assert_close(y, h)
    assert type(s) is StackState and len(s.layers) == 3
    for got, want in zip(s.layers, expected_states):
        assert type(got) is type(want)
        torch.testing.assert_close(got[0], want[0])
    y1, s1 = stack(x[:, :3], s0)
    y2, s2 = stack(x[:, 3:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    ys, s_step = [], s0
    for t in range(T):
        y_t, s_step = stack.step(x[:, t], s_step)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)


def test_stack_dropout_only_between_layers():
    single = Stack([build_mixer("elman", D)], dropout=0.5).double().train()
    x = x_()
    torch.testing.assert_close(single(x)[0], single.layers[0](x)[0])  # no dropout before or after a lone layer
    layers = three_layers()
    stack = Stack(layers, dropout=0.5).double()
    plain = Stack(layers).double()
    torch.testing.assert_close(stack.eval()(x)[0], plain(x)[0])
    stack.train()
    torch.manual_seed(1)
    y, _ = stack(x)
    torch.manual_seed(1)
    drop = nn.Dropout(0.5)
    h = layers[0](x)[0]
    h = layers[1](drop(h))[0]
    h = layers[2](drop(h))[0]
    torch.testing.assert_close(y, h)
    assert not torch.allclose(y, plain(x)[0])


def test_stack_checks_widths_and_options():
    narrow = Elman(D, hidden_size=4, project_output=False)
    assert Stack([narrow, build_mixer("jordan", 4)]).d_out == 4
    with pytest.raises(ConfigError, match="layer 1 reads width 6 but layer 0 writes 4"):
        Stack([narrow, build_mixer("elman", D)])
    with pytest.raises(ConfigError, match="at least one"):
        Stack([])
    for p in (1.0, -0.1):
        with pytest.raises(ConfigError, match="dropout"):
            Stack([build_mixer("elman", D)], dropout=p)


def test_stack_with_a_bidirectional_layer_is_not_causal():
    stack = Stack([build_mixer("elman", D), build_mixer("indrnn", D, bidirectional=True)])
    assert not stack.causal and Stack(three_layers()).causal
    with pytest.raises(NotCausalError):
        stack.step(torch.randn(B, D))
    assert stack(torch.randn(B, T, D))[0].shape == (B, T, D)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("mlp_ratio", [2.0, 0])
def test_residual_block_equals_its_formula(norm, mlp_ratio):
    mixer = build_mixer("jordan", D)
    block = ResidualBlock(mixer, mlp_ratio=mlp_ratio, norm=norm, dropout=0.3).double().eval()
    x, s0 = x_(), mixer.double()(x_())[1]
    y, s = block(x, s0)

    def norm_(module, v):
        if norm == "layernorm":
            return nn.functional.layer_norm(v, (D,), module.weight, module.bias, module.eps)
        return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + module.eps) * module.weight

    m, s_expected = mixer(norm_(block.norm1, x), s0)
    h = x + m
    if mlp_ratio:
        lin1, lin2 = block.mlp[0], block.mlp[2]
        assert lin1.out_features == int(mlp_ratio * D)
        h = h + lin2(nn.functional.gelu(lin1(norm_(block.norm2, h))))
    else:
        assert block.mlp is None
    torch.testing.assert_close(y, h)
    torch.testing.assert_close(s.y, s_expected.y)
    ys, st = [], s0
    for t in range(T):
        y_t, st = block.step(x[:, t], st)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)


def test_residual_block_checks():
    with pytest.raises(ConfigError, match="d_out == d_model"):
        ResidualBlock(Elman(D, hidden_size=4, project_output=False))
    with pytest.raises(ConfigError, match="mlp_ratio"):
        ResidualBlock(build_mixer("elman", D), mlp_ratio=-1)
    with pytest.raises(ConfigError, match="norm"):
        ResidualBlock(build_mixer("elman", D), norm="batchnorm")
    assert not ResidualBlock(build_mixer("elman", D, bidirectional=True)).causal


def test_rmsnorm():
    norm = RMSNorm(D).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
    x = x_()
    rms = x.pow(2).mean(-1, keepdim=True).add(norm.eps).sqrt()
    torch.testing.assert_close(norm(x), x / rms * norm.weight)


def test_build_stack():
    deep = build_stack("elman", D, n_layers=3, hidden_size=4, dropout=0.1)
    assert len(deep.layers) == 3 and all(isinstance(layer, ResidualBlock) for layer in deep.layers)
    assert deep.layers[0].mixer.hidden_size == 4 and deep.dropout.p == 0.0
    assert deep.layers[0].mixer.weight_hh is not deep.layers[1].mixer.weight_hh
    assert deep.layers[0].drop.p == 0.1
    plain = build_stack("indrnn", D, n_layers=2, residual=False, dropout=0.2)
    assert [type(layer).__name__ for layer in plain.layers] == ["IndRNN", "IndRNN"] and plain.dropout.p == 0.2
    assert plain(torch.randn(B, T, D))[0].shape == (B, T, D)
    bi = build_stack("jordan", D, n_layers=2, bidirectional=True)
    assert not bi.causal and isinstance(bi.layers[0].mixer, Bidirectional)
    with pytest.raises(UnknownNameError):
        build_stack("no-such-mixer", D)
    with pytest.raises(ConfigError, match="no_such_option"):
        build_stack("elman", D, no_such_option=1)


@pytest.mark.parametrize("merge", ["project", "concat", "sum"])
@pytest.mark.parametrize("name", ["elman", "jordan"])
def test_bidirectional_merges(merge, name):
    fwd, bwd = build_mixer(name, D), build_mixer(name, D)
    bi = Bidirectional(fwd, bwd, merge=merge).double()
    assert bi.d_out == {"project": D, "concat": 2 * D, "sum": D}[merge]
    x = x_()
    s0 = BidirectionalState(fwd(x_())[1], bwd(x_())[1])
    y, s = bi(x, s0)
    y_f, s_f = fwd(x, s0.forward)
    ys_b, s_b = [], s0.backward
    for t in reversed(range(T)):  # the backward reader, one step at a time from the end
        y_t, s_b = bwd.step(x[:, t], s_b)
        ys_b.insert(0, y_t)
    y_b = torch.stack(ys_b, 1)
    expected = {"project": lambda: bi.out_proj(torch.cat([y_f, y_b], -1)),
                "concat": lambda: torch.cat([y_f, y_b], -1),
                "sum": lambda: y_f + y_b}[merge]()
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(s.forward[0], s_f[0])
    torch.testing.assert_close(s.backward[0], s_b[0])


def test_bidirectional_checks():
    with pytest.raises(ConfigError, match="merge"):
        Bidirectional(build_mixer("elman", D), build_mixer("elman", D), merge="mean")
    with pytest.raises(ConfigError, match="same d_model"):
        Bidirectional(build_mixer("elman", D), build_mixer("elman", D + 1))
    with pytest.raises(ConfigError, match="bool"):
        build_mixer("elman", D, bidirectional="yes")
