"""The option sets the contract suite (tests/test_contract.py) runs for each registered mixer.

A registered mixer missing from MIXER_CONFIGS is tested with its defaults only, so registering a mixer is
enough to put it under the contract; add entries here for options that change the computation. Names not
registered (yet) generate no tests. Every entry runs the whole suite, so keep the lists short.
"""
from __future__ import annotations

import pytest

from rnnzoo.mixers import available_mixers

MIXER_CONFIGS: dict[str, list[dict]] = {
    "elman": [
        {},
        {"nonlinearity": "relu", "hidden_size": 5, "mode": "reference"},
        {"bias": False, "orthogonal_init": True},
    ],
    "jordan": [
        {},
        {"nonlinearity": "relu", "output_activation": "identity", "hidden_size": 5},
        {"output_activation": "sigmoid", "bias": False, "orthogonal_init": True},
    ],
    "indrnn": [
        {},
        {"nonlinearity": "tanh", "hidden_size": 5, "bias": False},
        {"recurrent_max": 0.5, "hidden_size": 11},
    ],
    "lstm": [
        {},
        {"peepholes": True},
        {"layer_norm": True},
        {"hidden_size": 10, "proj_size": 5},
        {"mode": "reference", "bias": False, "orthogonal_init": True, "forget_bias": 1.0},
    ],
    "gru": [
        {},
        {"mode": "reference", "hidden_size": 5},
        {"bias": False, "orthogonal_init": True},
    ],
    "rwkv6": [
        {"n_heads": 2},
        {"n_heads": 2, "expand_k": 1, "chunk_size": 3},
        {"mode": "recurrent"},
    ],
    "rwkv7": [
        {"n_heads": 2},
        {"n_heads": 2, "allow_neg_eigval": True, "chunk_size": 3},
        {"mode": "recurrent"},
    ],
    "deltanet": [
        {"n_heads": 2},
        {"n_heads": 2, "allow_neg_eigval": True, "use_output_gate": True, "chunk_size": 3},
        {"use_short_conv": False, "expand_v": 2, "mode": "recurrent"},
    ],
    "gated_deltanet": [
        {"n_heads": 2},
        {"n_heads": 2, "allow_neg_eigval": True, "chunk_size": 3},
        {"use_output_gate": False, "use_short_conv": False, "mode": "recurrent"},
    ],
    "deltaproduct": [
        {"n_heads": 2},
        {"n_householder": 3, "use_forget_gate": False, "allow_neg_eigval": False, "chunk_size": 4},
        {"n_householder": 1, "use_output_gate": False, "use_short_conv": False, "mode": "recurrent"},
    ],
    "mingru": [
        {},
        {"expand": 2, "chunk_size": 3, "mode": "parallel_log"},
        {"expand": 0.5, "mode": "sequential"},
    ],
    "minlstm": [
        {},
        {"expand": 2, "chunk_size": 3, "mode": "parallel_log"},
        {"expand": 0.5, "mode": "sequential"},
    ],
    "linear_attention": [
        {"n_heads": 2},
        {"n_heads": 2, "normalization": "denominator", "chunk_size": 3},
        {"feature_map": "relu", "normalization": "denominator", "mode": "recurrent"},
        {"n_heads": 2, "feature_map": "identity", "chunk_size": 3},
    ],
    "retnet": [
        {"n_heads": 2},
        {"n_heads": 2, "expand_v": 1, "chunk_size": 3},
        {"mode": "recurrent"},
    ],
    "gla": [
        {"n_heads": 2},
        {"n_heads": 2, "expand_k": 1, "chunk_size": 3},
        {"mode": "recurrent"},
    ],
    "mlstm": [
        {"n_heads": 2},
        {"n_heads": 2, "qkv_block_size": 2, "forget": "exp", "chunk_size": 3},
        {"n_heads": 1, "conv_size": 2, "mode": "recurrent"},
    ],
    "slstm": [
        {"n_heads": 2},
        {"n_heads": 2, "block": "none", "forget": "exp"},
        {"n_heads": 1, "conv_size": 0},
    ],
    "esn": [
        {},
        {"n_reservoir": 5, "leak": 0.3, "density": 1.0, "include_input": False, "seed": 3},
        {"spectral_radius": 1.2, "bias_scaling": 0.0, "input_scaling": 0.5, "seed": 1},
    ],
    "lmu": [
        {},
        {"memory_size": 3, "theta": 4.0, "n_channels": 3, "hidden_size": 5, "act": "identity"},
        {"memory_size": 4, "theta": 7.5, "act": "gelu", "mode": "recurrent"},
    ],
    "s4d": [
        {"d_state": 4},
        {"d_state": 6, "init": "inv", "discretization": "bilinear"},
        {"d_state": 4, "mode": "recurrent"},
    ],
    "memory_cache": [
        {"inner_options": {"n_heads": 2}, "segment_len": 3, "max_segments": 2},
        {"inner": "gru", "segment_len": 2, "max_segments": 3, "aggregation": "sparse", "top_k": 1, "d_r": 4},
        {"inner": "deltanet", "inner_options": {"n_heads": 2, "mode": "recurrent"}, "segment_len": 5, "max_segments": 2},
    ],
    "rmt": [
        {"backbone_layers": 1, "n_heads": 2, "n_mem": 2, "segment_len": 3},
        {"backbone_layers": 2, "n_mem": 1, "segment_len": 2},
    ],
    "armt": [
        {"backbone_layers": 1, "n_heads": 2, "n_mem": 2, "segment_len": 3, "d_key": 4, "nu": 3},
        {"backbone_layers": 2, "n_mem": 1, "segment_len": 2, "d_key": 3, "nu": 2},
    ],
    "mamba": [
        {"d_state": 4},
        {"d_state": 3, "expand": 1, "dt_rank": 2, "d_conv": 2, "allow_neg_eigval": True, "chunk_size": 3},
        {"d_state": 4, "mode": "recurrent"},
    ],
    "mamba2": [
        {"d_state": 4, "head_dim": 4},
        {"d_state": 3, "head_dim": 2, "n_groups": 2, "expand": 1, "chunk_size": 3},
        {"d_state": 4, "head_dim": 4, "mode": "recurrent"},
        {"d_state": 3, "head_dim": 4, "allow_neg_eigval": True, "chunk_size": 3},
    ],
    "paragru": [
        {},
        {"hidden_size": 5, "max_iters": 3, "tol": 1e-12},
        {"mode": "sequential"},
    ],
    "paralstm": [
        {},
        {"hidden_size": 5, "max_iters": 3, "tol": 1e-12},
        {"mode": "sequential"},
    ],
    "transformer": [
        {"n_heads": 2, "max_len": 17, "block_size": 5},
        {"n_heads": 2, "window": 11, "block_size": 6, "n_persistent": 2},
        {"max_len": 16, "rotary": False, "n_persistent": 3},
    ],
    "hopfield": [
        {"n_heads": 2, "max_len": 16},
        {"n_heads": 2, "n_iter": 3, "window": 4},
        {"n_iter": 1, "max_len": 16, "rotary": False},
    ],
    "lm2": [
        {"n_slots": 4},
        {"n_slots": 7, "d_mem": 5, "top_k": 3, "learn_memory": False},
        {"n_slots": 3, "top_k": 3, "mode": "reference"},
        {"n_slots": 4, "window": 3, "n_heads": 2},
    ],
    "titans": [
        {"n_heads": 2, "d_mem": 2},
        {"n_heads": 2, "n_mem_layers": 3, "d_mem": 2, "chunk_size": 3},
        {"n_heads": 2, "n_mem_layers": 1, "use_short_conv": False, "chunk_size": 1, "mode": "recurrent"},
    ],
    "titans_mag": [
        {"n_heads": 2, "window": 4, "n_mem_layers": 1, "chunk_size": 2, "conv_size": 2},
        {"n_heads": 2, "window": 3, "n_persistent": 2, "d_mem": 2, "use_short_conv": False, "mode": "recurrent"},
    ],
    "titans_mal": [
        {"n_heads": 2, "window": 4, "n_mem_layers": 1, "chunk_size": 2, "conv_size": 2},
        {"n_heads": 2, "window": 3, "n_persistent": 2, "d_mem": 2, "use_short_conv": False, "mode": "recurrent"},
    ],
    "titans_mac": [
        {"n_heads": 2, "segment_len": 4, "n_mem_layers": 1, "chunk_size": 3, "conv_size": 2},
        {"n_heads": 2, "segment_len": 2, "n_persistent": 2, "d_mem": 2, "use_short_conv": False, "rotary": False,
         "mode": "recurrent"},
    ],
}

# Values of a ``mode`` option that the suite compares with each other wherever a mixer accepts them.
MODES = ("reference", "auto", "fused", "chunk", "chunkwise", "parallel", "sequential", "recurrent", "conv",
         "newton")


def config_id(name: str, options: dict) -> str:
    """'lstm', 'lstm-peepholes', 'elman-hidden_size=5-mode=reference'."""
    parts = [k if v is True else f"{k}={v}" for k, v in options.items()]
    return "-".join([name, *parts])


def mixer_cases() -> list:
    """pytest params (name, options) for every registered mixer and each of its option sets."""
    return [pytest.param(name, options, id=config_id(name, options))
            for name in available_mixers() for options in MIXER_CONFIGS.get(name, [{}])]
