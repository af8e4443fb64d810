"""Validation loss of a language model, and the context-free baseline it should beat."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError
from rnnzoo.tasks.text import StreamBatches


@torch.no_grad()
def evaluate(model: torch.nn.Module, ids: torch.Tensor, batch_size: int, seq_len: int,
             max_batches: int | None = None, carry_state: bool = True) -> float:
    """Mean cross-entropy in nats/char of ``model`` on ``ids``.

    The ids are read as ``batch_size`` contiguous streams, ``seq_len`` tokens at a time, with the state carried
    from batch to batch, so each character is predicted from everything before it in its stream, exactly as
    one forward over the whole stream would (by the mixer contract); with ``carry_state=False`` every batch
    starts from a fresh state, so a character sees only the earlier ones of its chunk. ``max_batches`` scores
    only the first batches. Dropout is off while scoring; the model's train/eval mode is restored afterwards.
    """
    if max_batches is not None and (not isinstance(max_batches, int) or isinstance(max_batches, bool)
                                    or max_batches < 1):
        raise ConfigError(f"evaluate: max_batches must be None (all) or an int >= 1, got {max_batches!r}")
    batches = StreamBatches(ids, batch_size, seq_len)
    n = len(batches) if max_batches is None else min(len(batches), max_batches)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        for i in range(n):
            x, y, _ = batches.get(i)  # (B, T), (B, T)
            logits, state = model(x.to(device), state if carry_state else None)  # (B, T, V)
            total += F.cross_entropy(logits.flatten(0, 1).float(), y.to(device).flatten(), reduction="sum").item()
            count += y.numel()
    finally:
        model.train(was_training)
    return total / count


def bits_per_char(nats: float) -> float:
    return nats / math.log(2)


def unigram_entropy(ids: torch.Tensor, vocab_size: int) -> float:
    """H(p) in bits/char of the character frequencies in ``ids``: the loss of the best model that ignores
    context, so a model that learned anything sits well below it."""
    p = torch.bincount(ids, minlength=vocab_size).double() / len(ids)  # (V,)
    p = p[p > 0]
    return float(-(p * p.log2()).sum())
