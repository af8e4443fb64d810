"""Sequence classification with any rnnzoo mixer, the UCR/UEA data sets shipped with sktime, and 1-NN baselines."""
from rnnzoo.classify.classifier import NotFittedError, SequenceClassifier
from rnnzoo.classify.nn_baselines import dtw_distances, euclidean_distances, one_nn_error, one_nn_predict
from rnnzoo.classify.ucr import UCR_DATASETS, load_ucr

__all__ = ["NotFittedError", "SequenceClassifier", "UCR_DATASETS", "dtw_distances", "euclidean_distances",
           "load_ucr", "one_nn_error", "one_nn_predict"]
