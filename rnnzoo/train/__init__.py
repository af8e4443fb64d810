"""Training, evaluation and checkpoints for language models."""
from rnnzoo.train.config import TrainConfig
from rnnzoo.train.evaluate import bits_per_char, evaluate, unigram_entropy
from rnnzoo.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "bits_per_char", "evaluate", "train", "unigram_entropy"]
