"""A one-layer (two for xLSTM) language model built on each sequence mixer learns a repeated text: 30 Adam steps
on one sequence of 143 characters must cut the training loss to a quarter, or to a half for the plain linear
recurrences (linear attention without decay, minGRU, minLSTM), which learn slowest."""
import pytest
from helpers import repeated_text_losses

from rnnzoo.models import LanguageModel

CASES = [
    ("deltanet", 1, {"n_heads": 2}, 0.25),
    ("gated_deltanet", 1, {"n_heads": 2}, 0.25),
    ("deltaproduct", 1, {"n_heads": 2}, 0.25),
    ("linear_attention", 1, {"n_heads": 2}, 0.5),
    ("retnet", 1, {"n_heads": 2}, 0.25),
    ("gla", 1, {"n_heads": 2}, 0.25),
    ("mingru", 1, {}, 0.5),
    ("minlstm", 1, {}, 0.5),
    ("rwkv6", 1, {"residual": True, "n_heads": 2, "chunk_size": 16}, 0.25),
    ("rwkv7", 1, {"residual": True, "n_heads": 2, "chunk_size": 16}, 0.25),
    ("mlstm", 2, {"residual": True, "n_heads": 2}, 0.25),
    ("slstm", 2, {"residual": True, "n_heads": 2}, 0.25),
    ("mamba", 1, {"d_state": 8}, 0.25),
    ("mamba2", 1, {"d_state": 8, "head_dim": 8}, 0.25),
    ("paragru", 1, {}, 0.5),
    ("paralstm", 1, {}, 0.5),
    ("lm2", 1, {"residual": True, "n_slots": 8}, 0.25),
    ("titans", 1, {"n_heads": 2}, 0.25),
    ("titans_mag", 1, {"residual": True, "n_heads": 2, "window": 16, "n_mem_layers": 1}, 0.25),
    ("titans_mal", 1, {"residual": True, "n_heads": 2, "window": 16, "n_mem_layers": 1}, 0.25),
    ("titans_mac", 1, {"residual": True, "n_heads": 2, "segment_len": 16, "n_mem_layers": 1}, 0.25),
    ("transformer", 1, {"residual": True, "n_heads": 2}, 0.25),
    ("hopfield", 1, {"residual": True, "n_heads": 2}, 0.25),
]


@pytest.mark.parametrize("name,n_layers,options,ratio", CASES, ids=[case[0] for case in CASES])
def test_language_model_learns_a_repeated_text(name, n_layers, options, ratio):
    losses = repeated_text_losses(lambda vocab_size: LanguageModel(vocab_size, name, 16, n_layers, **options))
    assert losses[-1] < ratio * losses[0], f"the loss went from {losses[0]:.3f} to only {losses[-1]:.3f}"
