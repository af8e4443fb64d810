"""Models: a mixer stack with an input layer and a task head."""
from rnnzoo.models.classifier import ClassifierConfig, ClassifierNet
from rnnzoo.models.forecast import ForecastNet
from rnnzoo.models.lm import LanguageModel, LMConfig
from rnnzoo.models.piano_roll import PianoRollModel

__all__ = ["ClassifierConfig", "ClassifierNet", "ForecastNet", "LMConfig", "LanguageModel", "PianoRollModel"]
