"""rnnzoo: recurrent sequence models under one contract."""
from rnnzoo import convert
from rnnzoo.mixers import (available_mixers, build_mixer, describe_mixers, detach_state, reset_state,
                           select_state)
from rnnzoo.models import LanguageModel

__version__ = "0.1.0"
__all__ = ["LanguageModel", "available_mixers", "build_mixer", "describe_mixers", "detach_state", "reset_state",
           "select_state", "convert"]
