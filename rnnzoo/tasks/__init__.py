"""Data for the tasks rnnzoo trains on."""
from rnnzoo.tasks.recall import RecallTask, recall_accuracy
from rnnzoo.tasks.synthetic import mackey_glass
from rnnzoo.tasks.text import CharVocab, StreamBatches, default_corpus, read_text, split_ids

__all__ = ["CharVocab", "RecallTask", "StreamBatches", "default_corpus", "mackey_glass", "read_text", "recall_accuracy",
           "split_ids"]
