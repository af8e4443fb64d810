"""The product-key memory layer (rnnzoo/blocks/memory_layer.py) against exhaustive search over all n_keys^2 keys,
and as the MLP of a residual block in a language model."""
import pytest
import torch
from helpers import repeated_text_losses
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.blocks import ProductKeyMemory, ResidualBlock, build_stack
from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer
from rnnzoo.models import LanguageModel, LMConfig

D = 8


def make(**options):
    torch.manual_seed(0)
    return ProductKeyMemory(D, **options).double()


def exhaustive(pkm, x):
    """Scores and slots of the top_k of all n_keys^2 full keys (sub-key a of set 1 joined to sub-key b of set 2,
    slot a * n_keys + b), per head: each (N, H, k)."""
    n = pkm.n_keys
    q = pkm.query(x)  # (N, H * K)
    out_s, out_i = [], []
    for h in range(pkm.n_heads):
        c1, c2 = pkm.sub_keys[h, 0], pkm.sub_keys[h, 1]  # (n, K/2)
        keys = torch.cat([c1.repeat_interleave(n, 0), c2.repeat(n, 1)], dim=1)  # (n^2, K): row a * n + b
        s, i = (q[:, h * pkm.k_dim:(h + 1) * pkm.k_dim] @ keys.T).topk(pkm.top_k, dim=-1)
        out_s.append(s)
        out_i.append(i)
    return torch.stack(out_s, 1), torch.stack(out_i, 1)


@settings(max_examples=15, deadline=None)
@given(n_keys=st.integers(1, 9), half=st.integers(1, 4), n_heads=st.integers(1, 3), data=st.data())
def test_product_keys_find_the_exhaustive_top_k(n_keys, half, n_heads, data):
    top_k = data.draw(st.integers(1, n_keys), label="top_k")
    pkm = make(n_keys=n_keys, k_dim=2 * half, top_k=top_k, n_heads=n_heads)
    x = torch.randn(11, D, dtype=torch.float64)
    scores, slots = pkm.lookup(x)
    want_scores, want_slots = exhaustive(pkm, x)
    torch.testing.assert_close(scores, want_scores, rtol=1e-12, atol=1e-12)
    assert torch.equal(slots, want_slots)


def test_forward_is_the_softmax_weighted_sum_of_values():
    pkm = make(n_keys=5, k_dim=4, top_k=3, n_heads=2)
    x = torch.randn(2, 3, D, dtype=torch.float64)
    scores, slots = exhaustive(pkm, x.reshape(-1, D))
    w = scores.softmax(-1)  # (N, H, k)
    want = (w.unsqueeze(-1) * pkm.values.weight[slots]).sum((1, 2))  # (N, D)
    torch.testing.assert_close(pkm(x), want.reshape(2, 3, D), rtol=1e-12, atol=1e-12)


def test_gradients_reach_keys_values_and_query():
    pkm = make(n_keys=6, k_dim=4, top_k=3, n_heads=2)
    x = torch.randn(4, D, dtype=torch.float64, requires_grad=True)
    (pkm(x) * torch.randn(4, D, dtype=torch.float64)).sum().backward()
    for name, p in pkm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    _, slots = pkm.lookup(x)
    read = torch.zeros(36, dtype=torch.bool)
    read[slots.flatten()] = True
    rows_with_grad = pkm.values.weight.grad.abs().sum(-1) > 0
    assert torch.equal(rows_with_grad, read), "exactly the slots read should get value gradients"
    assert x.grad.abs().sum() > 0


def test_bad_options():
    for bad in ({"k_dim": 5}, {"n_keys": 4, "top_k": 5}, {"n_heads": 0}):
        with pytest.raises(ConfigError):
            ProductKeyMemory(D, **bad)
    with pytest.raises(ConfigError, match="memory_layers"):
        build_stack("gru", D, 2, memory_layers=(2,))
    with pytest.raises(ConfigError, match="residual"):
        build_stack("gru", D, 2, residual=False, memory_layers=(0,))
    with pytest.raises(ConfigError, match="twice"):
        build_stack("gru", D, 2, memory_layers=(1, 1))
    with pytest.raises(ConfigError, match="'n_slot'"):
        build_stack("gru", D, 2, memory_layers=(1,), memory_options={"n_slot": 4})
    with pytest.raises(ConfigError, match="memory_options"):
        LMConfig(5, "gru", D, 2, residual=True, memory_layers=[0], memory_options=None)


def test_block_with_a_memory_layer_is_its_formula_and_steps():
    pkm = make(n_keys=4, k_dim=4, top_k=2, n_heads=2)
    mixer = build_mixer("gru", D).double()
    block = ResidualBlock(mixer, mlp=pkm).double().eval()
    assert block.mlp is pkm
    x = torch.randn(2, 5, D, dtype=torch.float64)
    y, s = block(x)
    m, s_want = mixer(block.norm1(x))
    h = x + m
    torch.testing.assert_close(y, h + pkm(block.norm2(h)))
    torch.testing.assert_close(s, s_want)
    state, ys = None, []
    for t in range(5):
        y_t, state = block.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y)


def test_language_model_with_a_memory_layer_learns_and_round_trips():
    options = {"n_keys": 8, "k_dim": 8, "top_k": 4, "n_heads": 2}
    models = []

    def build(vocab_size):
        models.append(LanguageModel(vocab_size, "mingru", 16, 2, residual=True, memory_layers=(1,),
                                    memory_options=options))
        return models[0]

    losses = repeated_text_losses(build)
    model = models[0]
    kinds = [type(block.mlp) for block in model.stack.layers]
    assert kinds[1] is ProductKeyMemory and kinds[0] is torch.nn.Sequential
    assert losses[-1] < 0.25 * losses[0], f"the loss went from {losses[0]:.3f} to only {losses[-1]:.3f}"
    config = model.config.to_dict()
    assert config["memory_layers"] == [1] and config["memory_options"] == options
    again = LanguageModel.from_config(config)
    again.load_state_dict(model.state_dict())
    tokens = torch.randint(0, config["vocab_size"], (2, 9))
    torch.testing.assert_close(again(tokens)[0], model(tokens)[0])
