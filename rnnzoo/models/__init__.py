"""Whole models built from mixer stacks."""
from rnnzoo.models.lm import LanguageModel, LMConfig

__all__ = ["LanguageModel", "LMConfig"]
