"""The associative-recall task: its sequences checked by decoding them independently, and its scoring."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError
from rnnzoo.tasks.recall import IGNORE, RecallTask, recall_accuracy


def decode(task, row, distance):
    """The pairs, filler and (query, answer) list of one sequence, read back token by token."""
    P = task.n_pairs
    pairs = [(int(row[2 * i]), int(row[2 * i + 1])) for i in range(P)]
    filler = row[2 * P:2 * P + distance]
    start = 2 * P + distance
    asked = [(int(row[start + 2 * i]), int(row[start + 2 * i + 1])) for i in range(P)]
    return pairs, filler, asked


@settings(max_examples=20, deadline=None)
@given(n_pairs=st.integers(1, 6), distance=st.integers(0, 40), seed=st.integers(0, 1000))
def test_every_query_asks_a_stored_key_once_and_its_target_is_the_stored_value(n_pairs, distance, seed):
    task = RecallTask(n_pairs=n_pairs, n_keys=8, n_values=5, n_filler=3)
    tokens, targets = task.batch(4, distance, torch.Generator().manual_seed(seed))
    assert tokens.shape == targets.shape == (4, task.length(distance))
    for row, target in zip(tokens, targets):
        pairs, filler, asked = decode(task, row, distance)
        memory = dict(pairs)
        assert len(memory) == n_pairs, "keys repeat"
        assert all(3 <= k < 11 and 11 <= v < 16 for k, v in pairs)
        assert bool((filler < 3).all())
        assert sorted(q for q, _ in asked) == sorted(memory)
        assert all(memory[q] == a for q, a in asked)
        scored = (target != IGNORE).nonzero().flatten().tolist()
        assert scored == [2 * n_pairs + distance + 2 * i for i in range(n_pairs)]
        assert [int(target[p]) for p in scored] == [memory[int(row[p])] for p in scored]


def test_a_seed_fixes_the_batch():
    task = RecallTask()
    a = task.batch(3, 10, torch.Generator().manual_seed(5))
    b = task.batch(3, 10, torch.Generator().manual_seed(5))
    c = task.batch(3, 10, torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_accuracy_of_a_lookup_oracle_is_one_and_of_a_constant_guess_is_low():
    task = RecallTask(n_pairs=4, n_keys=16, n_values=16)
    tokens, targets = task.batch(8, 7, torch.Generator().manual_seed(0))
    oracle = torch.zeros(*tokens.shape, task.vocab_size)
    for b, row in enumerate(tokens):
        memory = dict(decode(task, row, 7)[0])
        for t, token in enumerate(row.tolist()):
            oracle[b, t, memory.get(token, 0)] = 1.0
    assert recall_accuracy(oracle, targets) == 1.0
    guess = torch.zeros_like(oracle)
    guess[..., task.n_filler + task.n_keys] = 1.0  # always the first value
    assert recall_accuracy(guess, targets) < 0.5


@pytest.mark.parametrize("options, match", [({"n_pairs": 0}, "n_pairs"), ({"n_keys": 2.0}, "n_keys"),
                                            ({"n_pairs": 9, "n_keys": 8}, "distinct keys")])
def test_bad_options_raise(options, match):
    with pytest.raises(ConfigError, match=match):
        RecallTask(**options)


def test_bad_batch_arguments_raise():
    with pytest.raises(ConfigError, match="distance"):
        RecallTask().batch(2, -1)
    with pytest.raises(ConfigError, match="batch_size"):
        RecallTask().batch(0, 3)
