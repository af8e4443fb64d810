"""Jordan and IndRNN against independent computations: torch.nn.RNN's fused kernel and closed forms.

The shared contract (step == forward, chunking, gradients, errors) is in test_contract.py.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.indrnn import IndRNN, IndRNNState
from rnnzoo.mixers.jordan import JordanState
from rnnzoo.ops.classic.indrnn import indrnn
from rnnzoo.ops.classic.jordan import jordan

D, B, T = 6, 3, 9
f64 = dict(dtype=torch.float64)


def torch_rnn(weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity):
    """A torch.nn.RNN (fused kernel) holding the given weights."""
    H, d = weight_ih.shape
    rnn = nn.RNN(d, H, nonlinearity=nonlinearity, bias=bias_ih is not None, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(weight_ih)
        rnn.weight_hh_l0.copy_(weight_hh)
        if bias_ih is not None:
            rnn.bias_ih_l0.copy_(bias_ih)
            rnn.bias_hh_l0.copy_(bias_hh)
    return rnn


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hidden_size", [4, 6, 9])
def test_jordan_identity_output_is_an_elman_network(nonlinearity, bias, hidden_size):
    """With y = W_hy h + b_y, the feedback W_yh y_{t-1} = (W_yh W_hy) h_{t-1} + W_yh b_y is an Elman recurrence."""
    mixer = build_mixer("jordan", D, hidden_size=hidden_size, nonlinearity=nonlinearity,
                        output_activation="identity", bias=bias).double()
    W_yh, W_hy = mixer.weight_yh.detach(), mixer.weight_hy.detach()
    b_y = mixer.bias_y.detach() if bias else torch.zeros(D, **f64)
    b_h = mixer.bias_h.detach() if bias else None
    rnn = torch_rnn(mixer.weight_ih.detach(), W_yh @ W_hy, b_h, W_yh @ b_y, nonlinearity)
    x, h0 = torch.randn(B, T, D, **f64), torch.randn(B, hidden_size, **f64)
    y0 = h0 @ W_hy.T + b_y  # (B, D), the output h0 would have produced
    y, state = mixer(x, JordanState(y0))
    h, _ = rnn(x, h0.unsqueeze(0))  # (B, T, H)
    torch.testing.assert_close(y, h @ W_hy.T + b_y)
    torch.testing.assert_close(state.y, y[:, -1])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("output_activation", ["tanh", "sigmoid", "identity"])
def test_jordan_follows_its_equations(nonlinearity, output_activation):
    H = 5
    W_ih, W_yh, W_hy = torch.randn(H, D, **f64), torch.randn(H, D, **f64), torch.randn(D, H, **f64)
    b_h, b_y = torch.randn(H, **f64), torch.randn(D, **f64)
    x, y0 = torch.randn(B, T, D, **f64), torch.randn(B, D, **f64)
    act = {"tanh": torch.tanh, "relu": torch.relu}[nonlinearity]
    out_act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda v: v}[output_activation]
    expected, y_prev = [], y0
    for t in range(T):
        h_t = act(torch.einsum("hd,bd->bh", W_ih, x[:, t]) + torch.einsum("hd,bd->bh", W_yh, y_prev) + b_h)
        y_prev = out_act(torch.einsum("dh,bh->bd", W_hy, h_t) + b_y)
        expected.append(y_prev)
    y, y_T = jordan(x, W_ih, W_yh, W_hy, b_h, b_y, nonlinearity=nonlinearity,
                    output_activation=output_activation, initial_state=y0)
    torch.testing.assert_close(y, torch.stack(expected, dim=1))
    torch.testing.assert_close(y_T, y_prev)


def test_jordan_options():
    mixer = build_mixer("jordan", D, hidden_size=4, output_activation="sigmoid")
    y, _ = mixer(10 * torch.randn(B, T, D))
    assert y.shape == (B, T, D) and mixer.d_out == D
    assert ((y > 0) & (y < 1)).all()
    wide = build_mixer("jordan", D, hidden_size=9, orthogonal_init=True).weight_yh.detach()  # (9, 6)
    torch.testing.assert_close(wide.T @ wide, torch.eye(D))
    narrow = build_mixer("jordan", D, hidden_size=4, orthogonal_init=True).weight_yh.detach()  # (4, 6)
    torch.testing.assert_close(narrow @ narrow.T, torch.eye(4))
    assert build_mixer("jordan", D, bias=False).bias_h is None
    for bad in [{"mode": "fused"}, {"output_activation": "relu6"}, {"nonlinearity": "gelu"},
                {"hidden_size": 0}, {"project_output": False}]:
        with pytest.raises(ConfigError):
            build_mixer("jordan", D, **bad)


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
@pytest.mark.parametrize("hidden_size", [4, 6])
def test_indrnn_is_an_elman_network_with_diagonal_recurrence(nonlinearity, hidden_size):
    mixer = IndRNN(D, hidden_size=hidden_size, nonlinearity=nonlinearity,
           project_output=False).double()
    with torch.no_grad():
        mixer.weight_hh.uniform_(-1.2, 1.2)  # both signs, some |u| > 1
    rnn = torch_rnn(mixer.weight_ih.detach(), torch.diag(mixer.weight_hh.detach()), mixer.bias.detach(),
                    torch.zeros(hidden_size, **f64), nonlinearity)
    x, h0 = torch.randn(B, T, D, **f64), torch.randn(B, hidden_size, **f64)
    y, state = mixer(x, IndRNNState(h0))
    h, h_T = rnn(x, h0.unsqueeze(0))
    torch.testing.assert_close(y, h)
    torch.testing.assert_close(state.h, h_T[0])


def test_indrnn_recurrent_max_clamps_in_forward():
    cap = 2 ** (1 / T)
    mixer = build_mixer("indrnn", D, recurrent_max=cap).double()
    with torch.no_grad():
        mixer.weight_hh.copy_(torch.tensor([-3.0, -0.5, 0.2, 0.9, 1.5, 4.0]))
        mixer.bias.fill_(3.0)  # keeps every relu unit active, so every unclamped u gets a gradient
    u_before = mixer.weight_hh.detach().clone()
    x, h0 = torch.randn(B, T, D, **f64), torch.rand(B, D, **f64)
    y, _ = mixer(x, IndRNNState(h0))
    rnn = torch_rnn(mixer.weight_ih.detach(), torch.diag(u_before.clamp(-cap, cap)), mixer.bias.detach(),
                    torch.zeros(D, **f64), "relu")
    torch.testing.assert_close(y, rnn(x, h0.unsqueeze(0))[0])
    torch.testing.assert_close(mixer.weight_hh.detach(), u_before, rtol=0, atol=0)  # the parameter is not edited
    y.sum().backward()
    grad = mixer.weight_hh.grad
    assert torch.isfinite(grad).all()
    clamped = u_before.abs() > cap
    assert (grad[clamped] == 0).all() and (grad[~clamped] != 0).all()


def test_indrnn_free_run_decays_geometrically():
    """With no input, relu and h_0 >= 0: h_T = u^T * h_0 per unit, the memory the paper's u controls."""
    mixer = build_mixer("indrnn", D).double()
    with torch.no_grad():
        mixer.weight_ih.zero_()
        mixer.bias.zero_()
    u, h0 = mixer.weight_hh.detach(), torch.rand(B, D, **f64)
    y, state = mixer(torch.randn(B, T, D, **f64), IndRNNState(h0))
    steps = torch.arange(1, T + 1, **f64)[None, :, None]
    torch.testing.assert_close(y, u ** steps * h0[:, None, :])
    torch.testing.assert_close(state.h, u ** T * h0)


def test_indrnn_options():
    assert ((lambda u: (u >= 0) & (u <= 1))(build_mixer("indrnn", 64).weight_hh)).all()
    u = build_mixer("indrnn", 64, recurrent_max=0.5).weight_hh
    assert ((u >= 0) & (u <= 0.5)).all()
    wide = build_mixer("indrnn", D, hidden_size=10)
    assert wide.d_out == D and wide(torch.randn(B, T, D))[0].shape == (B, T, D)
    bare = IndRNN(D, hidden_size=10, project_output=False)
    assert bare.d_out == 10 and bare.out_proj is None
    y, state = bare(torch.randn(B, T, D))
    assert y.shape == (B, T, 10)
    torch.testing.assert_close(y[:, -1], state.h)
    for bad in [{"orthogonal_init": True}, {"mode": "fused"}, {"recurrent_max": 0}, {"recurrent_max": -1.0},
                {"recurrent_max": True}, {"recurrent_max": "2"}, {"nonlinearity": "sigmoid"}]:
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_mixer("indrnn", D, **bad)


def test_ops_reject_unknown_modes():
    x = torch.randn(B, T, D)
    w = torch.randn(D, D)
    with pytest.raises(ValueError, match="mode"):
        jordan(x, w, w, w, mode="fused")
    with pytest.raises(ValueError, match="mode"):
        indrnn(x, w, torch.rand(D), mode="fused")
    with pytest.raises(ValueError, match="output_activation"):
        jordan(x, w, w, w, output_activation="softmax")
