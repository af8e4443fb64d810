"""The echo state network: the reservoir op against a numpy loop and finite differences, the reservoir's
construction, and the closed-form readout against torch.linalg.lstsq and against what the mixer then predicts."""
import math

import numpy as np
import pytest
import torch
from helpers import assert_rel_close

from rnnzoo.errors import ConfigError, DataError, ShapeError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.esn import ESN, ESNState
from rnnzoo.models import LanguageModel
from rnnzoo.ops.reservoir import esn
from rnnzoo.tasks.synthetic import mackey_glass


def numpy_esn(u, W, leak, h0):
    """h_t = (1 - a) h_{t-1} + a tanh(u_t + W h_{t-1}), one step at a time in numpy float64."""
    u, W, h = u.detach().double().numpy(), W.detach().double().numpy(), h0.detach().double().numpy()
    hs = []
    for t in range(u.shape[1]):
        h = (1 - leak) * h + leak * np.tanh(u[:, t] + h @ W.T)
        hs.append(h)
    return torch.from_numpy(np.stack(hs, axis=1)), torch.from_numpy(h)


def reservoir_inputs(B, T, N, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(B, T, N, generator=gen, dtype=dtype)
    W = 0.9 * torch.randn(N, N, generator=gen, dtype=dtype) / math.sqrt(N)
    h0 = torch.randn(B, N, generator=gen, dtype=dtype).tanh()
    return u, W, h0


def sines(T, phase=0.0):
    t = torch.arange(T, dtype=torch.float64) + phase
    return torch.sin(0.21 * t) + 0.5 * torch.sin(0.047 * t + 1.0)


def nrmse(y_hat, y):
    return ((y_hat - y).pow(2).sum() / (y - y.mean()).pow(2).sum()).sqrt().item()


@pytest.mark.parametrize("T", [1, 63, 300])
@pytest.mark.parametrize("leak", [1.0, 0.3])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero", "h0"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "autograd"])
def test_loop_equals_step_by_step_numpy(T, leak, with_state, grad):
    u, W, h0 = reservoir_inputs(2, T, 7)
    if grad:
        u.requires_grad_()
    h, h_T = esn(u, W, leak, h0 if with_state else None)
    want, want_T = numpy_esn(u, W, leak, h0 if with_state else torch.zeros(2, 7, dtype=torch.float64))
    assert h.requires_grad == grad
    assert_rel_close([h, h_T], [want, want_T], 1e-12)


def test_gradients_match_finite_differences():
    u, W, h0 = (t.requires_grad_() for t in reservoir_inputs(2, 5, 4))
    assert torch.autograd.gradcheck(lambda u, W, h0: esn(u, W, 0.6, h0), (u, W, h0))


def test_float32_close_to_float64():
    u, W, h0 = reservoir_inputs(2, 200, 16)
    want = esn(u, W, 0.5, h0)
    got = esn(u.float(), W.float(), 0.5, h0.float())
    assert_rel_close(got, want, 1e-4)


def test_op_rejects_bad_inputs():
    u, W, h0 = reservoir_inputs(2, 5, 4)
    with pytest.raises(ShapeError, match="u must have shape"):
        esn(u[0], W)
    with pytest.raises(ShapeError, match="W must have shape"):
        esn(u, W[:3])
    with pytest.raises(ShapeError, match="initial_state"):
        esn(u, W, 1.0, h0[:1])
    with pytest.raises(ShapeError, match="dtype"):
        esn(u, W.float())
    for leak in (0, 1.5, True, float("nan")):
        with pytest.raises(ConfigError, match="leak"):
            esn(u, W, leak)
    h, h_T = esn(u[:, :0], W, 1.0, h0)
    assert h.shape == (2, 0, 4) and torch.equal(h_T, h0)


@pytest.mark.parametrize("radius", [0.5, 0.9, 1.3])
def test_spectral_radius_and_density_are_the_options(radius):
    mixer = build_mixer("esn", 3, n_reservoir=60, spectral_radius=radius, density=0.2, seed=1)
    W = mixer.W.double()
    assert abs(torch.linalg.eigvals(W).abs().max().item() - radius) < 1e-5 * radius
    assert 0.15 < (W != 0).double().mean().item() < 0.25
    assert mixer.W_in.abs().max() <= 1.0 and mixer.b.abs().max() <= 0.1


def test_seed_makes_the_reservoir_reproducible():
    def buffers(**options):
        return [t.clone() for t in build_mixer("esn", 2, n_reservoir=20, **options).buffers()]

    torch.manual_seed(5)
    a = buffers(seed=7)
    torch.manual_seed(6)
    assert all(torch.equal(x, y) for x, y in zip(a, buffers(seed=7))), "the same seed must give one reservoir"
    assert not torch.equal(a[2], buffers(seed=8)[2])
    torch.manual_seed(5)
    c = buffers()
    torch.manual_seed(5)
    assert all(torch.equal(x, y) for x, y in zip(c, buffers())), "seed=None follows torch.manual_seed"


def test_only_the_readout_is_trained():
    mixer = build_mixer("esn", 4, n_reservoir=12, density=0.5)
    assert sorted(n for n, _ in mixer.named_parameters()) == ["readout.bias", "readout.weight"]
    assert {"W_in", "b", "W"} <= set(mixer.state_dict())
    assert not any(t.requires_grad for t in mixer.buffers())

    model = LanguageModel(vocab_size=6, mixer="esn", d_model=4, n_layers=1, n_reservoir=12, density=0.5)
    reservoir = [t.clone() for t in model.buffers()]
    layer = next(m for m in model.modules() if isinstance(m, ESN))
    readout = layer.readout.weight.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tokens = torch.randint(0, 6, (2, 9))
    logits, _ = model(tokens[:, :-1])
    torch.nn.functional.cross_entropy(logits.reshape(-1, 6), tokens[:, 1:].reshape(-1)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(reservoir, model.buffers())), "the reservoir must stay fixed"
    assert not torch.equal(readout, layer.readout.weight)


@pytest.mark.parametrize("include_input", [True, False])
def test_mixer_equals_its_equations(include_input):
    mixer = build_mixer("esn", 3, n_reservoir=9, leak=0.4, density=0.5, include_input=include_input).double()
    x = torch.randn(2, 11, 3, dtype=torch.float64)
    h0 = torch.randn(2, 9, dtype=torch.float64)
    y, state = mixer(x, ESNState(h0))
    h, h_T = numpy_esn(x @ mixer.W_in.T + mixer.b, mixer.W, 0.4, h0)
    features = torch.cat([h, x], dim=-1) if include_input else h
    want = features @ mixer.readout.weight.T + mixer.readout.bias
    assert_rel_close([y, state.h], [want, h_T], 1e-12)


def test_fit_readout_predicts_sines_one_step_ahead():
    torch.manual_seed(0)
    mixer = build_mixer("esn", 1, n_reservoir=100, spectral_radius=0.9, seed=0).double()
    s = sines(1601)
    x, y = s[:-1].reshape(1, -1, 1), s[1:].reshape(1, -1, 1)
    with torch.no_grad():
        untrained = nrmse(mixer(x)[0][:, 100:], y[:, 100:])
    fitted = mixer.fit_readout(x, y, ridge=1e-8, washout=100)
    assert untrained > 0.3 and fitted < 1e-2, (untrained, fitted)
    with torch.no_grad():
        y_hat = mixer(x)[0]
    assert abs(nrmse(y_hat[:, 100:], y[:, 100:]) - fitted) < 1e-6 * fitted, "the returned NRMSE is the mixer's"

    s_test = sines(801, phase=5000.0)  # unseen stretch of the same signal, from a fresh zero state
    with torch.no_grad():
        y_test = mixer(s_test[:-1].reshape(1, -1, 1))[0]
    assert nrmse(y_test[:, 100:], s_test[1:].reshape(1, -1, 1)[:, 100:]) < 2e-2


def test_fit_readout_predicts_mackey_glass():
    s = mackey_glass(1300)
    s = (s - s.mean()) / s.std()
    x, y = s[:-1].reshape(1, -1, 1), s[1:].reshape(1, -1, 1)
    mixer = build_mixer("esn", 1, n_reservoir=150, spectral_radius=0.95, input_scaling=0.5, seed=0)
    fitted = mixer.fit_readout(x[:, :1000].float(), y[:, :1000].float(), ridge=1e-7, washout=100)
    with torch.no_grad():
        y_hat = mixer(x.float())[0].double()
    held_out = nrmse(y_hat[:, 1000:], y[:, 1000:])
    persistence = nrmse(x[:, 1000:], y[:, 1000:])  # predict "no change": the baseline to beat
    assert fitted < 0.01 and held_out < 0.01 and held_out < persistence / 10, (fitted, held_out, persistence)


def test_ridge_solution_equals_lstsq():
    torch.manual_seed(0)
    mixer = build_mixer("esn", 2, n_reservoir=6, density=0.7, leak=0.5).double()
    B, T, ridge, washout = 2, 30, 0.1, 3
    lengths = torch.tensor([30, 20])
    x = torch.randn(B, T, 2, dtype=torch.float64)
    y = torch.randn(B, T, 2, dtype=torch.float64)
    mixer.fit_readout(x, y, ridge=ridge, washout=washout, lengths=lengths)

    h, _ = numpy_esn(x @ mixer.W_in.T + mixer.b, mixer.W, 0.5, torch.zeros(B, 6, dtype=torch.float64))
    rows = [(b, t) for b in range(B) for t in range(washout, int(lengths[b]))]
    H = torch.stack([torch.cat([h[b, t], x[b, t], torch.ones(1, dtype=torch.float64)]) for b, t in rows])  # (M, F+1)
    Y = torch.stack([y[b, t] for b, t in rows])  # (M, 2)
    F = H.shape[1]
    penalty = math.sqrt(ridge) * torch.eye(F, dtype=torch.float64)[:-1]  # no penalty row for the bias
    W = torch.linalg.lstsq(torch.cat([H, penalty]), torch.cat([Y, torch.zeros(F - 1, 2, dtype=torch.float64)])).solution
    assert_rel_close([mixer.readout.weight, mixer.readout.bias], [W[:-1].T, W[-1]], 1e-9)


def test_fit_readout_rejects_bad_arguments():
    mixer = build_mixer("esn", 2, n_reservoir=8, density=0.5)
    x, y = torch.randn(2, 10, 2), torch.randn(2, 10, 2)
    with pytest.raises(ShapeError, match="width"):
        mixer.fit_readout(torch.randn(2, 10, 3), y)
    with pytest.raises(ShapeError, match="x's shape"):
        mixer.fit_readout(x, y[:, :5])
    with pytest.raises(ShapeError, match="cast x"):
        mixer.fit_readout(x.double(), y.double())
    with pytest.raises(ShapeError, match="lengths"):
        mixer.fit_readout(x, y, lengths=torch.tensor([3]))
    for ridge in (-1.0, float("inf"), "1e-3"):
        with pytest.raises(ConfigError, match="ridge"):
            mixer.fit_readout(x, y, ridge=ridge)
    for washout in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="washout"):
            mixer.fit_readout(x, y, washout=washout)
    with pytest.raises(DataError, match="no steps left"):
        mixer.fit_readout(x, y, washout=10)
    with pytest.raises(DataError, match="ridge > 0"):
        mixer.fit_readout(x[:, :3], y[:, :3], ridge=0.0)
    with pytest.raises(DataError, match="NaN"):
        mixer.fit_readout(x, y.clone().index_fill_(1, torch.tensor([4]), float("nan")))
    with pytest.raises(DataError, match="constant"):
        mixer.fit_readout(x, torch.ones_like(y))


def test_bad_options_raise_config_errors():
    for options, match in [({"n_reservoir": 0}, "n_reservoir"), ({"spectral_radius": -0.1}, "spectral_radius"),
                           ({"leak": 0.0}, "leak"), ({"density": 1.5}, "density"), ({"seed": -1}, "seed"),
                           ({"input_scaling": float("nan")}, "input_scaling"), ({"bias_scaling": "0"}, "bias_scaling")]:
        with pytest.raises(ConfigError, match=match):
            build_mixer("esn", 2, **options)
    with pytest.raises(ConfigError, match="raise density"):
        build_mixer("esn", 2, n_reservoir=3, density=0.01, seed=0)
