"""Modern Hopfield retrieval: the op against a written-out loop, retrieval of corrupted patterns, convergence to a
fixed point, the energy going down at every update; the hopfield mixer against its equations per token."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.mixers import build_mixer
from rnnzoo.ops.hopfield import hopfield_energy, hopfield_retrieve

TIGHT = dict(rtol=1e-10, atol=1e-10)
D = 8


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def update(X, xi, beta, visible=None):
    """One update xi <- X softmax(beta X^T xi), for one row: X (M, d), xi (Q, d), visible (Q, M) bool."""
    scores = beta * xi @ X.T  # (Q, M)
    if visible is not None:
        scores = scores.masked_fill(~visible, float("-inf"))
    return scores.softmax(-1) @ X


def test_retrieve_matches_a_written_out_loop():
    B, M, Q = 3, 6, 4
    X, xi = randn(B, M, D), randn(B, Q, D, seed=1)
    mask = torch.rand(B, Q, M, generator=torch.Generator().manual_seed(2)) < 0.5
    mask[:, :, 0] = True
    beta = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    got = hopfield_retrieve(X, xi, beta, n_iter=3, mask=mask)
    for b in range(B):
        want = xi[b]
        for _ in range(3):
            want = update(X[b], want, beta[b].item(), mask[b])
        torch.testing.assert_close(got[b], want, **TIGHT)
    once = hopfield_retrieve(X, xi, 0.7)
    for b in range(B):
        torch.testing.assert_close(once[b], update(X[b], xi[b], 0.7), **TIGHT)
    torch.testing.assert_close(hopfield_retrieve(X, xi, 0.7, n_iter=0), xi, rtol=0, atol=0)


def corrupt(X, how, seed=1):
    gen = torch.Generator().manual_seed(seed)
    if how == "mask half":
        keep = torch.rand(X.shape, generator=gen) < 0.5
        return X * keep
    return X + 0.5 * torch.randn(X.shape, generator=gen, dtype=X.dtype)


@pytest.mark.parametrize("how", ["mask half", "noise"])
def test_corrupted_patterns_are_retrieved_at_large_beta(how):
    """64-dim random patterns, 24 per row: each corrupted copy retrieves its own pattern (argmax of the overlap)
    and lands on it; a tiny beta instead returns about the mean of all patterns (one metastable state)."""
    B, M, d = 2, 24, 64
    X = randn(B, M, d)
    queries = corrupt(X, how)
    target = torch.arange(M).expand(B, M)
    got = hopfield_retrieve(X, queries, beta=1.0, n_iter=3)
    accuracy = ((got @ X.mT).argmax(-1) == target).double().mean().item()
    assert accuracy >= 0.95, f"only {accuracy:.0%} of the corrupted patterns were retrieved"
    assert (got - X).norm(dim=-1).median() < 1e-3 * X.norm(dim=-1).median()
    torch.testing.assert_close(hopfield_retrieve(X, got, beta=1.0), got, rtol=1e-8, atol=1e-8)
    blurred = hopfield_retrieve(X, queries, beta=1e-4, n_iter=3)
    mean = X.mean(1, keepdim=True)  # (B, 1, d)
    assert (blurred - mean).norm(dim=-1).max() < 0.05 * mean.norm(dim=-1).min()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beta=st.floats(0.02, 5.0), M=st.integers(1, 12))
def test_energy_goes_down_at_every_update(seed, beta, M):
    X, xi = randn(2, M, D, seed=seed), 3 * randn(2, 5, D, seed=seed + 1)
    energies = [hopfield_energy(X, xi, beta)]
    for _ in range(20):
        xi = hopfield_retrieve(X, xi, beta)
        energies.append(hopfield_energy(X, xi, beta))
    E = torch.stack(energies)  # (21, 2, 5)
    assert (E[1:] <= E[:-1] + 1e-9 * (1 + E[:-1].abs())).all(), "an update raised the energy"
    assert (E[-1] < E[0]).all(), "the updates should lower the energy of a random start"


def test_energy_formula_by_hand():
    """One pattern x and xi = 0: E = -0 + 0 + log(1) / beta + |x|^2 / 2 = |x|^2 / 2."""
    X = torch.tensor([[[3.0, 4.0]]], dtype=torch.float64)
    xi = torch.zeros(1, 1, 2, dtype=torch.float64)
    torch.testing.assert_close(hopfield_energy(X, xi, 2.0), torch.tensor([[12.5]], dtype=torch.float64))
    xi = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)  # -x.xi + |xi|^2 / 2 + |x|^2 / 2 = |x - xi|^2 / 2
    torch.testing.assert_close(hopfield_energy(X, xi, 0.5), torch.tensor([[10.0]], dtype=torch.float64))


def test_bad_inputs_raise_clear_errors():
    X, xi = randn(2, 5, D), randn(2, 3, D)
    for beta in (0.0, -1.0, True, torch.tensor([1.0, -1.0])):
        with pytest.raises(ConfigError, match="beta"):
            hopfield_retrieve(X, xi, beta)
    with pytest.raises(ShapeError, match="beta"):
        hopfield_retrieve(X, xi, torch.ones(3))
    with pytest.raises(ConfigError, match="n_iter"):
        hopfield_retrieve(X, xi, 1.0, n_iter=-1)
    with pytest.raises(ShapeError, match="patterns"):
        hopfield_retrieve(randn(2, 5, D + 1), xi, 1.0)
    with pytest.raises(ShapeError, match="no stored patterns"):
        hopfield_retrieve(randn(2, 0, D), xi, 1.0)
    with pytest.raises(ShapeError, match="mask"):
        hopfield_retrieve(X, xi, 1.0, mask=torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match="mask"):
        hopfield_retrieve(X, xi, 1.0, mask=torch.ones(2, 3, 5))
    with pytest.raises(ShapeError, match="queries"):
        hopfield_energy(X, xi[0], 1.0)


def make(name, **options):
    torch.manual_seed(0)
    return build_mixer(name, D, **options).double().eval()


@pytest.mark.parametrize("window", [None, 3])
def test_one_update_is_softmax_attention(window):
    hopfield = make("hopfield", n_heads=2, n_iter=1, window=window)
    transformer = make("transformer", n_heads=2, window=window)
    transformer.load_state_dict({k: v for k, v in hopfield.state_dict().items() if k != "log_beta"})
    with torch.no_grad():
        hopfield.log_beta.fill_(-0.5 * math.log(hopfield.head_dim))  # 1/sqrt(D) in float64, not float32's
    x = randn(2, 9, D)
    torch.testing.assert_close(hopfield(x)[0], transformer(x)[0], **TIGHT)


def written_out(mixer, x, window=None):
    """The hopfield mixer's equations token by token, with the projections (and rotary) of ``mixer._qkv``."""
    B, T, _ = x.shape
    q, k, v = mixer._qkv(x, torch.arange(T).expand(B, T))  # (B, H, T, D) each
    beta = mixer.log_beta.exp()
    o = torch.zeros_like(q)
    for b in range(B):
        for h in range(mixer.n_heads):
            for t in range(T):
                seen = slice(0 if window is None else max(0, t - window + 1), t + 1)
                K, V, xi = k[b, h, seen], v[b, h, seen], q[b, h, t:t + 1]  # (S, D), (S, D), (1, D)
                for _ in range(mixer.n_iter - 1):
                    xi = update(K, xi, beta[h])
                o[b, h, t] = (beta[h] * xi @ K.T).softmax(-1) @ V
    return mixer.o_proj(o.transpose(1, 2).flatten(2))


@pytest.mark.parametrize("options", [{"n_heads": 2, "n_iter": 3}, {"n_iter": 2, "window": 3, "rotary": False},
                                     {"n_heads": 2, "n_iter": 4, "window": 4}])
def test_mixer_matches_its_equations_in_forward_steps_and_pieces(options):
    mixer = make("hopfield", **options)
    with torch.no_grad():
        mixer.log_beta.copy_(torch.linspace(-1.0, 0.5, mixer.n_heads))
    x = randn(2, 10, D)
    want = written_out(mixer, x, options.get("window"))
    y, state = mixer(x)
    torch.testing.assert_close(y, want, **TIGHT)
    ys, s = [], None
    for a, b in [(0, 3), (3, 4), (4, 10)]:
        y_piece, s = mixer(x[:, a:b], s)
        ys.append(y_piece)
    torch.testing.assert_close(torch.cat(ys, dim=1), want, **TIGHT)
    y_t, _ = mixer.step(x[:, 9], mixer(x[:, :9])[1])
    torch.testing.assert_close(y_t, want[:, 9], **TIGHT)


def test_mixer_learns_its_temperature_and_checks_n_iter():
    mixer = make("hopfield", n_heads=2)
    y, _ = mixer(randn(2, 5, D))
    y.square().sum().backward()
    assert mixer.log_beta.grad is not None and mixer.log_beta.grad.abs().min() > 0
    with pytest.raises(ConfigError, match="n_iter"):
        build_mixer("hopfield", D, n_iter=0)
