"""rnnzoo.convert: a torch.nn.RNN / LSTM / GRU and its rnnzoo conversion compute the same thing."""
import itertools

import pytest
import torch
from torch import nn

from rnnzoo.blocks import Bidirectional, ResidualBlock, Stack, build_stack
from rnnzoo.convert import from_torch, state_from_torch, state_to_torch, to_torch
from rnnzoo.errors import ConfigError, StateError
from rnnzoo.mixers.elman import Elman
from rnnzoo.mixers.gru import GRU
from rnnzoo.mixers.lstm import LSTM

CELLS = {"rnn_tanh": (nn.RNN, dict(nonlinearity="tanh")), "rnn_relu": (nn.RNN, dict(nonlinearity="relu")),
         "lstm": (nn.LSTM, {}), "lstm_proj": (nn.LSTM, dict(proj_size=2)), "gru": (nn.GRU, {})}
GRID = list(itertools.product(CELLS, [1, 2, 3], [False, True], [False, True], [True, False]))
D, H, B, T = 3, 4, 2, 5


def build_torch(cell, num_layers, bidirectional, batch_first, bias, dtype):
    cls, extra = CELLS[cell]
    module = cls(D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias,
                 dropout=0.25 if num_layers > 1 else 0.0, **extra).to(dtype)
    return module.eval()


def run_both(module, model, x, given_state):
    """(torch's output, torch's final state, rnnzoo's output, rnnzoo's final state in torch's layout)."""
    rows = module.num_layers * (2 if module.bidirectional else 1)
    g = torch.Generator().manual_seed(1)
    h0 = torch.randn(rows, B, module.proj_size or H, generator=g, dtype=x.dtype) if given_state else None
    c0 = torch.randn(rows, B, H, generator=g, dtype=x.dtype) if given_state else None
    is_lstm = isinstance(module, nn.LSTM)
    hx = ((h0, c0) if is_lstm else h0) if given_state else None
    x_torch = x if module.batch_first else x.transpose(0, 1)
    y_ref, s_ref = module(x_torch, hx)
    if not module.batch_first:
        y_ref = y_ref.transpose(0, 1)
    state = state_from_torch(model, h0, c0 if is_lstm else None) if given_state else None
    y, s = model(x, state)
    return y_ref, s_ref, y, state_to_torch(model, s)


@pytest.mark.parametrize("cell,num_layers,bidirectional,batch_first,bias", GRID)
def test_from_torch_matches_and_round_trips(cell, num_layers, bidirectional, batch_first, bias):
    torch.manual_seed(0)
    for dtype, atol in ((torch.float32, 1e-6), (torch.float64, 1e-13)):
        module = build_torch(cell, num_layers, bidirectional, batch_first, bias, dtype)
        model = from_torch(module)
        assert isinstance(model, Stack) and len(model.layers) == num_layers and not model.training
        assert model.dropout.p == module.dropout
        assert all(p.dtype == dtype for p in model.parameters())
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in module.parameters())
        x = torch.randn(B, T, D, dtype=dtype)
        for given_state in (False, True):
            y_ref, s_ref, y, s = run_both(module, model, x, given_state)
            torch.testing.assert_close(y, y_ref, atol=atol, rtol=0)
            if not isinstance(s, tuple):
                s, s_ref = (s,), (s_ref,)
            for ours, theirs in zip(s, s_ref, strict=True):
                torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)

        back = to_torch(model)
        assert type(back) is type(module) and back.batch_first and not back.training
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size", "dropout"):
            assert getattr(back, attr) == getattr(module, attr), attr
        if isinstance(module, nn.RNN):
            assert back.nonlinearity == module.nonlinearity
        ours, theirs = dict(back.named_parameters()), dict(module.named_parameters())
        assert ours.keys() == theirs.keys()
        for name in theirs:
            assert ours[name].dtype == dtype and torch.equal(ours[name], theirs[name]), name


def test_converted_model_trains_like_torch():
    torch.manual_seed(1)
    module = nn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=3, batch_first=True).double()
    model = from_torch(module)
    assert model.training
    x = torch.randn(B, T, D, dtype=torch.float64)
    g = torch.randn(B, T, 6, dtype=torch.float64)
    (module(x)[0] * g).sum().backward()
    (model(x)[0] * g).sum().backward()
    for layer, block in enumerate(model.layers):
        for suffix, mixer in (("", block.fwd), ("_reverse", block.bwd)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
                theirs = getattr(module, f"{name}_l{layer}{suffix}")
                torch.testing.assert_close(getattr(mixer, name).grad, theirs.grad, atol=1e-12, rtol=0)


def test_to_torch_of_rnnzoo_built_models():
    torch.manual_seed(2)
    x = torch.randn(B, T, D)
    for mixer in (GRU(D, hidden_size=H, project_output=False), Elman(D, hidden_size=H, nonlinearity="relu",
                                                                     project_output=False)):
        module = to_torch(mixer)
        assert module.num_layers == 1 and module.batch_first
        torch.testing.assert_close(module(x)[0], mixer(x)[0], atol=1e-6, rtol=0)
    stack = build_stack("lstm", D, n_layers=2, residual=False, hidden_size=H, proj_size=2)
    with pytest.raises(ConfigError, match="output projection"):
        to_torch(stack)
    stack = Stack([LSTM(D, hidden_size=H, proj_size=2, project_output=False),
                   LSTM(2, hidden_size=H, proj_size=2, project_output=False)], dropout=0.1).eval()
    module = to_torch(stack)
    assert module.proj_size == 2 and module.input_size == D and module.num_layers == 2 and module.dropout == 0.1
    h_n, c_n = state_to_torch(stack, stack(x)[1])
    y_ref, (h_ref, c_ref) = module(x)
    torch.testing.assert_close(stack(x)[0], y_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n, h_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(c_n, c_ref, atol=1e-6, rtol=0)


def elman(d_in, h=H, **kw):
    return Elman(d_in, hidden_size=h, project_output=False, **kw)


@pytest.mark.parametrize("model,words", [
    (LSTM(D, hidden_size=H, peepholes=True, project_output=False), "peepholes"),
    (LSTM(D, hidden_size=H, layer_norm=True, project_output=False), "layer norm"),
    (LSTM(D, hidden_size=H), "output projection"),
    (Stack([elman(D), elman(H, h=5)]), "hidden_size"),
    (Stack([elman(D, nonlinearity="tanh"), elman(H, nonlinearity="relu")]), "nonlinearity"),
    (Stack([elman(D), GRU(H, hidden_size=H, project_output=False)]), "mix"),
    (Stack([LSTM(D, hidden_size=H, project_output=False), LSTM(H, hidden_size=H, bias=False)]), "bias"),
    (Bidirectional(elman(D), elman(D)), "merge"),
    (Stack([Bidirectional(elman(D), elman(D), merge="concat"), elman(2 * H)]), "bidirectional"),
    (Stack([ResidualBlock(GRU(D))]), "ResidualBlock"),
])
def test_to_torch_names_what_is_not_representable(model, words):
    with pytest.raises(ConfigError, match=words):
        to_torch(model)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="torch.nn.RNN, LSTM or GRU"):
        from_torch(nn.Linear(3, 4))
    lstm_model = from_torch(nn.LSTM(D, H, num_layers=2))
    with pytest.raises(StateError, match="c_n"):
        state_from_torch(lstm_model, torch.zeros(2, B, H))
    with pytest.raises(StateError, match=r"\(2, B, 4\)"):
        state_from_torch(lstm_model, torch.zeros(1, B, H), torch.zeros(1, B, H))
    gru_model = from_torch(nn.GRU(D, H))
    with pytest.raises(StateError, match="c_n"):
        state_from_torch(gru_model, torch.zeros(1, B, H), torch.zeros(1, B, H))
    with pytest.raises(StateError):
        state_to_torch(gru_model, lstm_model.init_state(B))
