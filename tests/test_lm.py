import pytest
import torch

import rnnzoo
from rnnzoo.errors import ConfigError, ShapeError
from rnnzoo.models import LanguageModel, LMConfig

V = 13


def tiny(mixer="elman", **kw):
    torch.manual_seed(0)
    return LanguageModel(V, mixer, 8, 2, **kw).double()


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("mixer", rnnzoo.available_mixers())
def test_step_loop_matches_forward(mixer, residual):
    model = tiny(mixer, residual=residual, tie_weights=True)
    tokens = torch.randint(0, V, (3, 7))
    logits, state = model(tokens)
    assert logits.shape == (3, 7, V)
    s = None
    for t in range(7):
        step_logits, s = model.step(tokens[:, t], s)
        torch.testing.assert_close(step_logits, logits[:, t])
    for a, b in zip(rnnzoo.mixers.flatten_state(s), rnnzoo.mixers.flatten_state(state)):
        torch.testing.assert_close(a, b)
    head, s = model(tokens[:, :3])
    tail, _ = model(tokens[:, 3:], s)
    torch.testing.assert_close(torch.cat([head, tail], 1), logits)


def test_generate_is_deterministic_with_a_generator():
    model = tiny()
    prompt = torch.randint(0, V, (2, 4))

    def run(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return torch.stack(list(model.generate(prompt, 20, generator=g, **kw)), 1)

    a = run(1)
    assert a.shape == (2, 20) and a.dtype == torch.long and a.min() >= 0 and a.max() < V
    assert torch.equal(a, run(1))
    assert torch.equal(run(1, temperature=0.7, top_k=5), run(1, temperature=0.7, top_k=5))


def full_forward_argmax(model, text):
    """Next token by re-running the whole text: the independent route generate() must agree with."""
    logits, _ = model(text)
    return logits[:, -1].argmax(-1)


@pytest.mark.parametrize("residual", [False, True])
def test_greedy_generation_matches_full_reruns(residual):
    model = tiny(residual=residual)
    text = torch.randint(0, V, (3, 5))
    for token in model.generate(text, 12, temperature=0):
        assert torch.equal(token, full_forward_argmax(model, text))
        text = torch.cat([text, token[:, None]], 1)


def test_top_k_one_is_greedy_and_top_k_bounds_samples():
    model = tiny()
    prompt = torch.randint(0, V, (4, 3))
    g = torch.Generator().manual_seed(0)
    greedy = list(model.generate(prompt, 8, temperature=0))
    assert all(torch.equal(a, b) for a, b in zip(model.generate(prompt, 8, top_k=1, generator=g), greedy))
    text = prompt
    for token in model.generate(prompt, 10, temperature=2.0, top_k=3, generator=g):
        top3 = model(text)[0][:, -1].topk(3).indices  # (B, 3)
        assert (top3 == token[:, None]).any(1).all()
        text = torch.cat([text, token[:, None]], 1)


def test_generate_one_dim_prompt_and_no_grad():
    model = tiny()
    out = list(model.generate(torch.tensor([1, 2, 3]), 5, temperature=0))
    assert len(out) == 5 and all(t.shape == () and not t.requires_grad for t in out)
    batched = list(model.generate(torch.tensor([[1, 2, 3]]), 5, temperature=0))
    assert [t.item() for t in out] == [t.item() for t in batched]
    assert list(model.generate(torch.tensor([1]), 0)) == []


def test_generate_streams_with_one_step_per_token(monkeypatch):
    model = tiny()
    calls = {"forward": 0, "step": 0}
    forward, step = model.forward, model.step

    def count(name, fn):
        def wrapped(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(model, "forward", count("forward", forward))
    monkeypatch.setattr(model, "step", count("step", step))
    assert len(list(model.generate(torch.tensor([1, 2, 3]), 6))) == 6
    assert calls == {"forward": 1, "step": 5}


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": -1}, {"temperature": -0.5}, {"top_k": 0}, {"top_k": 2.0}, {"max_new_tokens": 1.5},
])
def test_generate_bad_options(kwargs):
    args = {"max_new_tokens": 3} | kwargs
    with pytest.raises(ConfigError):
        tiny().generate(torch.tensor([1, 2]), **args)


def test_generate_empty_prompt():
    with pytest.raises(ConfigError, match="empty"):
        tiny().generate(torch.zeros(0, dtype=torch.long), 3)
    with pytest.raises(ShapeError):
        tiny().generate(torch.tensor([V]), 3)


@pytest.mark.parametrize("tokens", [
    torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), torch.zeros(3, dtype=torch.long),
    torch.zeros(1, 2, 3, dtype=torch.long), torch.tensor([[0, V]]), torch.tensor([[-1, 0]]), [[0, 1]],
])
def test_bad_tokens(tokens):
    with pytest.raises(ShapeError):
        tiny()(tokens)


def test_bad_step_token():
    model = tiny()
    for token in (torch.zeros(2, 1, dtype=torch.long), torch.tensor([V]), torch.zeros(2)):
        with pytest.raises(ShapeError):
            model.step(token)


def test_config_round_trip_and_strictness():
    model = tiny(residual=True, dropout=0.1, tie_weights=True, nonlinearity="relu")
    d = model.config.to_dict()
    assert d["mixer_options"] == {"nonlinearity": "relu"}
    again = LanguageModel.from_config(d)
    assert again.config == model.config == LMConfig.from_dict(d)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="'n_layer'"):
        LMConfig.from_dict(d | {"n_layer": 3})
    with pytest.raises(ConfigError, match="vocab_size"):
        LMConfig.from_dict({"mixer": "elman"})
    for key, bad in (("d_model", "8"), ("n_layers", 0), ("residual", 1), ("dropout", 1.0), ("mlp_ratio", -1),
                     ("mixer_options", {"residual": True}), ("vocab_size", True)):
        with pytest.raises(ConfigError, match=key):
            LMConfig.from_dict(d | {key: bad})


def test_tied_weights_and_parameter_count():
    tied, untied = tiny(tie_weights=True), tiny()
    assert tied.head.weight is tied.embed.weight
    assert untied.num_parameters() - tied.num_parameters() == V * 8
    assert untied.num_parameters() == sum(p.numel() for p in untied.state_dict().values())


def test_model_needs_a_causal_mixer():
    with pytest.raises(ConfigError, match="causal"):
        LanguageModel(V, "elman", 8, 1, bidirectional=True)
