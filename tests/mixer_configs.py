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
}

# Values of a ``mode`` option that the suite compares with each other wherever a mixer accepts them.
MODES = ("reference", "auto", "fused", "chunkwise", "parallel", "recurrent")


def config_id(name: str, options: dict) -> str:
    """'lstm', 'lstm-peepholes', 'elman-hidden_size=5-mode=reference'."""
    parts = [k if v is True else f"{k}={v}" for k, v in options.items()]
    return "-".join([name, *parts])


def mixer_cases() -> list:
    """pytest params (name, options) for every registered mixer and each of its option sets."""
    return [pytest.param(name, options, id=config_id(name, options))
            for name in available_mixers() for options in MIXER_CONFIGS.get(name, [{}])]
