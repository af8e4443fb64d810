"""Data for the tasks rnnzoo trains on."""
from rnnzoo.tasks.synthetic import mackey_glass
from rnnzoo.tasks.text import CharVocab, StreamBatches, default_corpus, read_text, split_ids

__all__ = ["CharVocab", "StreamBatches", "default_corpus", "mackey_glass", "read_text", "split_ids"]
