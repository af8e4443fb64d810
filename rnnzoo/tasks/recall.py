"""Associative recall at a distance: key-value pairs, a stretch of filler, then queries for the keys.

One sequence, with P pairs and D filler tokens:

    k_1 v_1 k_2 v_2 ... k_P v_P   f_1 ... f_D   q_1 a_1 q_2 a_2 ... q_P a_P

The keys are distinct, the queries are the keys in a random order and each answer a_i is the value stored with
q_i. A model reads the sequence left to right and is scored on its prediction at every query position (the
next token must be the answer); the answers are in the input, as in teacher forcing, so a later query sees
the earlier answers but never its own. The filler tokens are drawn from their own vocabulary, so a model
cannot find the pairs by counting. With D = 0 and P pairs this is multi-query associative recall (MQAR,
Arora et al. 2023, "Zoology"); the distance D measures how long the memory has to hold the pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnzoo.errors import ConfigError

IGNORE = -100  # the target at positions that are not scored (torch's cross_entropy ignore_index)


@dataclass(frozen=True)
class RecallTask:
    """The vocabulary is [filler | keys | values]: ``n_filler`` + ``n_keys`` + ``n_values`` token ids."""

    n_pairs: int = 8
    n_keys: int = 64
    n_values: int = 64
    n_filler: int = 16

    def __post_init__(self):
        for name in ("n_pairs", "n_keys", "n_values", "n_filler"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RecallTask: {name} must be an int >= 1, got {value!r}")
        if self.n_pairs > self.n_keys:
            raise ConfigError(f"RecallTask: n_pairs={self.n_pairs} distinct keys do not fit in n_keys="
                              f"{self.n_keys}; raise n_keys or lower n_pairs")

    @property
    def vocab_size(self) -> int:
        return self.n_filler + self.n_keys + self.n_values

    def length(self, distance: int) -> int:
        """Tokens in one sequence with ``distance`` filler tokens."""
        return 4 * self.n_pairs + distance

    def batch(self, batch_size: int, distance: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, targets), both (batch_size, length(distance)) long; targets are IGNORE except at the
        query positions, where they hold the answer."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"RecallTask.batch: batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(distance, bool) or not isinstance(distance, int) or distance < 0:
            raise ConfigError(f"RecallTask.batch: distance must be an int >= 0, got {distance!r}")
        B, P = batch_size, self.n_pairs
        first_key, first_value = self.n_filler, self.n_filler + self.n_keys
        keys = torch.rand(B, self.n_keys, generator=generator).argsort(dim=1)[:, :P] + first_key  # (B, P) distinct
        values = torch.randint(first_value, first_value + self.n_values, (B, P), generator=generator)  # (B, P)
        order = torch.rand(B, P, generator=generator).argsort(dim=1)  # (B, P): which pair each query asks for
        queries, answers = keys.gather(1, order), values.gather(1, order)  # (B, P)
        filler = torch.randint(0, self.n_filler, (B, distance), generator=generator)  # (B, D)
        pairs = torch.stack([keys, values], dim=2).flatten(1)  # (B, 2P): k_1 v_1 k_2 v_2 ...
        asked = torch.stack([queries, answers], dim=2).flatten(1)  # (B, 2P): q_1 a_1 q_2 a_2 ...
        tokens = torch.cat([pairs, filler, asked], dim=1)  # (B, 4P + D)
        targets = torch.full_like(tokens, IGNORE)
        query_pos = 2 * P + distance + 2 * torch.arange(P)  # (P,)
        targets[:, query_pos] = answers
        return tokens, targets


def recall_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of the scored positions (targets != IGNORE) whose argmax is the answer."""
    scored = targets != IGNORE
    return float((logits.argmax(-1)[scored] == targets[scored]).float().mean())
