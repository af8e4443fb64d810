"""Data for the tasks rnnzoo trains on."""
from rnnzoo.tasks.diagnostic import DIAGNOSTIC_TASKS, build_task, scaled_accuracy, score_scaled
from rnnzoo.tasks.music import PianoRollModel, load_chorales, piano_roll
from rnnzoo.tasks.recall import RecallTask, recall_accuracy
from rnnzoo.tasks.synthetic import mackey_glass
from rnnzoo.tasks.text import CharVocab, StreamBatches, default_corpus, read_text, split_ids

__all__ = ["CharVocab", "DIAGNOSTIC_TASKS", "PianoRollModel", "RecallTask", "StreamBatches", "build_task",
           "default_corpus", "load_chorales", "mackey_glass", "piano_roll", "read_text", "recall_accuracy",
           "scaled_accuracy", "score_scaled", "split_ids"]
