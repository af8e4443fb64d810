"""One nn.Module per architecture, all under the contract in ``rnnzoo.mixers.base``.

Importing this package registers every mixer.
"""
from rnnzoo.mixers import elman  # noqa: F401  (registers)
from rnnzoo.mixers import gru, lstm  # noqa: F401  (registers)
from rnnzoo.mixers import indrnn, jordan  # noqa: F401  (registers)
from rnnzoo.mixers import deltanet  # noqa: F401  (registers)
from rnnzoo.mixers import rwkv  # noqa: F401  (registers)
from rnnzoo.mixers import gla, linear_attention, mingru, retnet  # noqa: F401  (registers)
from rnnzoo.mixers import xlstm  # noqa: F401  (registers)
from rnnzoo.mixers import esn  # noqa: F401  (registers)
from rnnzoo.mixers import lmu  # noqa: F401  (registers)
from rnnzoo.mixers import s4d  # noqa: F401  (registers)
from rnnzoo.mixers import pararnn  # noqa: F401  (registers)
from rnnzoo.mixers import mamba  # noqa: F401  (registers)
from rnnzoo.mixers import transformer  # noqa: F401  (registers)
from rnnzoo.mixers import hopfield  # noqa: F401  (registers)
from rnnzoo.mixers import lm2  # noqa: F401  (registers)
from rnnzoo.mixers import memory_cache  # noqa: F401  (registers)
from rnnzoo.mixers import titans  # noqa: F401  (registers)
from rnnzoo.mixers import titans_hybrid  # noqa: F401  (registers)
from rnnzoo.mixers.base import Mixer
from rnnzoo.mixers.registry import available_mixers, build_mixer, describe_mixers, mixer_options, register_mixer
from rnnzoo.mixers.state import detach_state, flatten_state, map_state, reset_state, select_state, unflatten_state

__all__ = ["Mixer", "available_mixers", "build_mixer", "describe_mixers", "mixer_options", "register_mixer",
           "detach_state", "flatten_state", "map_state", "reset_state", "select_state",
           "unflatten_state"]
