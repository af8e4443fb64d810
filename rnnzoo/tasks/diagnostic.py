"""Diagnostic sequence tasks: small synthetic problems, each isolating one ability of a sequence model.

Every task is a frozen dataclass of its sizes with one interface:

    inputs, targets = task.sample(batch_size, generator, length=None)
    metric = task.score(outputs, targets)

``inputs`` are token ids (B, T) long in [0, vocab_size), or values (B, T, n_inputs) float for the real-valued
tasks (adding, sequential digits). ``targets`` are (B, T), a class id in [0, n_classes) (a float value for the
adding problem) where the task asks for an answer and IGNORE elsewhere, so a model reads the whole sequence and
is judged at the answer steps only. ``outputs`` are per-step logits (B, T, >= n_classes), or predictions (B, T)
or (B, T, 1) for the adding problem. ``length``, when given, is T; each task says which part it stretches. The
same ``generator`` seed gives the same batch.

The tasks and their sources:

    copying                      Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016 (Sec. 4.1)
    selective_copying            Gu & Dao 2023, "Mamba" (Sec. 3.1, App. E.1)
    adding                       Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015 (Sec. 4.1)
    sequential_digits / permuted_digits   Le et al. 2015's pixel-by-pixel MNIST, on scikit-learn's 8x8 digits
    parity, modular_arithmetic, modular_arithmetic_brackets
                                 Deletang et al. 2023, "Neural networks and the Chomsky hierarchy"; the length
                                 generalisation setup (train 3-40, test 40-256, scaled accuracy) of Grazzi et al.
                                 2024, "Unlocking state-tracking in linear RNNs through negative eigenvalues"
    s3, s5, s5_swaps             Merrill, Petty & Sabharwal 2024, "The illusion of state in state-space models";
                                 Grazzi et al. 2024; Siems et al. 2025, "DeltaProduct" (S5 with swaps only)
    mqar_64, mqar_128, mqar_256  Arora et al. 2023, "Zoology" (a preset of RecallTask)

The length generalisation tasks report the scaled accuracy (acc - 1/K) / (1 - 1/K), K = n_classes, averaged over
the test lengths: 0 is chance, 1 is perfect (``score_scaled``, ``scaled_accuracy``).
"""
from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass, fields
from typing import Callable

import torch

from rnnzoo.errors import ConfigError, ShapeError, UnknownNameError
from rnnzoo.tasks.recall import IGNORE, RecallTask, recall_accuracy


def _check_int(owner: str, name: str, value, minimum: int = 1, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{owner}: {name} must be an int {bound}, got {value!r}")


def _check_bool(owner: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {name} must be True or False, got {value!r}")


def _check_span(owner: str, name: str, value, minimum: int) -> None:
    """A (shortest, longest) pair of lengths."""
    if (not isinstance(value, tuple) or len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                                for v in value) or not minimum <= value[0] <= value[1]):
        raise ConfigError(f"{owner}: {name} must be a (shortest, longest) tuple of ints with {minimum} <= shortest "
                          f"<= longest, got {value!r}")


def _check_batch_size(owner: str, batch_size) -> None:
    _check_int(f"{owner}.sample", "batch_size", batch_size)


def _length(owner: str, length, default: int, minimum: int) -> int:
    """The sequence length a sample call asks for: ``length``, or the task's own when None."""
    if length is None:
        return default
    _check_int(f"{owner}.sample", "length", length, minimum)
    return length


def _train_length(span: tuple[int, int], generator) -> int:
    """One length uniform in the training span, drawn from ``generator`` (a batch shares its length)."""
    return int(torch.randint(span[0], span[1] + 1, (), generator=generator))


def _scored_mask(owner: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ShapeError(f"{owner}.score: outputs and targets must be tensors, got {type(outputs).__name__} and "
                         f"{type(targets).__name__}")
    scored = targets != IGNORE
    if not bool(scored.any()):
        raise ShapeError(f"{owner}.score: targets have no scored position (all IGNORE); pass the targets that "
                         "sample returned")
    return scored


def _check_logits(owner: str, logits: torch.Tensor, targets: torch.Tensor, n_classes: int) -> None:
    _scored_mask(owner, logits, targets)
    if logits.dim() != targets.dim() + 1 or logits.shape[:-1] != targets.shape or logits.shape[-1] < n_classes:
        raise ShapeError(f"{owner}.score: logits must be (B, T, K >= {n_classes}) over targets (B, T) = "
                         f"{tuple(targets.shape)}, got {tuple(logits.shape)}")


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of the scored positions (targets != IGNORE) whose argmax is the target."""
    _check_logits("token_accuracy", logits, targets, 1)
    return recall_accuracy(logits, targets)


def _classification_score(owner: str, n_classes: int, logits: torch.Tensor, targets: torch.Tensor) -> float:
    _check_logits(owner, logits, targets, n_classes)
    return recall_accuracy(logits, targets)


def score_scaled(acc: float, n_classes: int) -> float:
    """The scaled accuracy (acc - 1/K) / (1 - 1/K) of Grazzi et al. 2024 (after Beck et al. 2024, "xLSTM"):
    0 for chance level on K balanced classes, 1 for perfect, negative below chance."""
    _check_int("score_scaled", "n_classes", n_classes, 2)
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
        raise ConfigError(f"score_scaled: acc must be a number in [0, 1], got {acc!r}")
    chance = 1.0 / n_classes
    return (acc - chance) / (1.0 - chance)


def accuracy_by_length(task, predict: Callable[[torch.Tensor], torch.Tensor], lengths, batch_size: int = 64,
                       generator: torch.Generator | None = None) -> dict[int, float]:
    """task.score of ``predict(inputs)`` on one fresh batch of each length (predict runs without gradients).
    For state tracking this is the sequence accuracy by length."""
    lengths = list(lengths)
    if not lengths:
        raise ConfigError("accuracy_by_length: lengths is empty; pass the sequence lengths to evaluate")
    results = {}
    with torch.no_grad():
        for length in lengths:
            inputs, targets = task.sample(batch_size, generator, length=length)
            results[length] = task.score(predict(inputs), targets)
    return results


def scaled_accuracy(task, predict: Callable[[torch.Tensor], torch.Tensor], lengths=None, batch_size: int = 64,
                    generator: torch.Generator | None = None) -> float:
    """Mean over ``lengths`` (default: every length in task.test_lengths) of score_scaled(accuracy), the length
    generalisation score of Deletang et al. 2023 / Grazzi et al. 2024."""
    if lengths is None:
        if not hasattr(task, "test_lengths"):
            raise ConfigError(f"scaled_accuracy: {type(task).__name__} has no test_lengths; pass lengths")
        lengths = range(task.test_lengths[0], task.test_lengths[1] + 1)
    by_length = accuracy_by_length(task, predict, lengths, batch_size, generator)
    return sum(score_scaled(acc, task.n_classes) for acc in by_length.values()) / len(by_length)


@dataclass(frozen=True)
class CopyingTask:
    """Copy memory (after Hochreiter & Schmidhuber 1997; in the form of Arjovsky, Shah & Bengio 2016, Sec. 4.1).

    Tokens: 0 blank, 1..n_symbols data, n_symbols + 1 delimiter. With S = n_copy and T = delay, one sequence of
    T + 2S steps:

        inputs   s_1 ... s_S   0 ... 0 (T - 1 blanks)   delim   0 ... 0 (S blanks)
        targets  -   ...                                        s_1 ... s_S

    with each s_i uniform over the symbols. The model must emit s_1..s_S on the S steps after the delimiter.
    Arjovsky et al. also train on a blank target at every other step (``target_blanks=True``); the score is in
    either case the token accuracy on the S answer steps (a memoryless model gets 1 / n_symbols). Defaults are
    Arjovsky et al.'s (8 symbols, copy 10) with T = 100. ``length`` in sample stretches T = length - 2S.
    Targets are ids in [0, n_classes), n_classes = n_symbols + 1, aligned with the input ids.
    """

    n_symbols: int = 8
    n_copy: int = 10
    delay: int = 100
    target_blanks: bool = False

    def __post_init__(self):
        for name in ("n_symbols", "n_copy", "delay"):
            _check_int("CopyingTask", name, getattr(self, name))
        _check_bool("CopyingTask", "target_blanks", self.target_blanks)

    @property
    def vocab_size(self) -> int:
        return self.n_symbols + 2

    @property
    def n_classes(self) -> int:
        return self.n_symbols + 1

    @property
    def delimiter(self) -> int:
        return self.n_symbols + 1

    @property
    def length(self) -> int:
        return self.delay + 2 * self.n_copy

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch_size("CopyingTask", batch_size)
        S = self.n_copy
        T = _length("CopyingTask", length, self.length, 2 * S + 1) - 2 * S
        symbols = torch.randint(1, self.n_symbols + 1, (batch_size, S), generator=generator)  # (B, S)
        inputs = torch.zeros(batch_size, T + 2 * S, dtype=torch.long)  # (B, T + 2S), blanks
        inputs[:, :S] = symbols
        inputs[:, S + T - 1] = self.delimiter
        targets = torch.full_like(inputs, 0 if self.target_blanks else IGNORE)
        targets[:, T + S:] = symbols
        return inputs, targets

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Token accuracy on the answer steps (blank targets, if any, are not counted)."""
        _check_logits("CopyingTask", logits, targets, self.n_classes)
        answers = (targets != IGNORE) & (targets != 0)
        return float((logits.argmax(-1)[answers] == targets[answers]).float().mean())


@dataclass(frozen=True)
class SelectiveCopyingTask:
    """Selective copying (Gu & Dao 2023, "Mamba", Sec. 3.1 and App. E.1): the S = n_data data tokens sit at
    random positions among noise tokens, and the model must output them in order after the input.

    Tokens: 0 noise, 1..n_symbols data, n_symbols + 1 marker. With length L, the first L - S steps hold the S
    data tokens (uniform symbols) at S distinct sorted positions drawn uniformly, noise everywhere else; the last
    S steps are markers, and the targets at the markers are the data tokens in their order of appearance. As in
    the Mamba reference generator, the noise is a single token. Defaults are the paper's: vocabulary of 16
    (14 symbols, noise, marker), 16 data tokens, length 4096. Score: token accuracy on the S answer steps.
    """

    n_symbols: int = 14
    n_data: int = 16
    length: int = 4096

    def __post_init__(self):
        for name in ("n_symbols", "n_data"):
            _check_int("SelectiveCopyingTask", name, getattr(self, name))
        _check_int("SelectiveCopyingTask", "length", self.length, 2 * self.n_data)

    @property
    def vocab_size(self) -> int:
        return self.n_symbols + 2

    @property
    def n_classes(self) -> int:
        return self.n_symbols + 1

    @property
    def marker(self) -> int:
        return self.n_symbols + 1

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch_size("SelectiveCopyingTask", batch_size)
        S = self.n_data
        L = _length("SelectiveCopyingTask", length, self.length, 2 * S)
        data = torch.randint(1, self.n_symbols + 1, (batch_size, S), generator=generator)  # (B, S)
        where = torch.rand(batch_size, L - S, generator=generator).argsort(dim=1)[:, :S].sort(dim=1).values  # (B, S)
        inputs = torch.zeros(batch_size, L, dtype=torch.long)  # (B, L), noise
        inputs.scatter_(1, where, data)
        inputs[:, L - S:] = self.marker
        targets = torch.full_like(inputs, IGNORE)
        targets[:, L - S:] = data
        return inputs, targets

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Token accuracy on the S answer steps."""
        return _classification_score("SelectiveCopyingTask", self.n_classes, logits, targets)


@dataclass(frozen=True)
class AddingTask:
    """The adding problem (Hochreiter & Schmidhuber 1997, Sec. 5.4; in the form of Le, Jaitly & Hinton 2015,
    Sec. 4.1, also Arjovsky et al. 2016).

    Input x_t = (u_t, m_t): u_t ~ U[0, 1] and a marker m_t that is 1 at exactly two steps, one uniform in the
    first half [0, floor(T/2)) and one in the second half [floor(T/2), T), else 0. Target at the last step:
    sum_t u_t m_t, a regression. Score: mean squared error; always predicting 1 scores the variance of a sum of
    two U[0, 1], 2/12 = 0.167, the baseline the papers plot. Targets are float with IGNORE at the other steps.
    """

    length: int = 200
    n_inputs = 2  # (value, marker)
    n_outputs = 1

    def __post_init__(self):
        _check_int("AddingTask", "length", self.length, 2)

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch_size("AddingTask", batch_size)
        T = _length("AddingTask", length, self.length, 2)
        half = T // 2
        values = torch.rand(batch_size, T, generator=generator)  # (B, T)
        first = torch.randint(0, half, (batch_size,), generator=generator)  # (B,)
        second = torch.randint(half, T, (batch_size,), generator=generator)  # (B,)
        markers = torch.zeros(batch_size, T)  # (B, T)
        rows = torch.arange(batch_size)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        inputs = torch.stack([values, markers], dim=2)  # (B, T, 2)
        targets = torch.full((batch_size, T), float(IGNORE))
        targets[:, -1] = (values * markers).sum(dim=1)
        return inputs, targets

    def score(self, predictions: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean squared error over the scored steps; predictions (B, T) or (B, T, 1)."""
        scored = _scored_mask("AddingTask", predictions, targets)
        if predictions.dim() == targets.dim() + 1 and predictions.shape[-1] == 1:
            predictions = predictions.squeeze(-1)
        if predictions.shape != targets.shape:
            raise ShapeError(f"AddingTask.score: predictions must be (B, T) or (B, T, 1) over targets (B, T) = "
                             f"{tuple(targets.shape)}, got {tuple(predictions.shape)}")
        return float(((predictions[scored] - targets[scored]) ** 2).mean())


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits, pixels scaled from counts 0..16 to [0, 1]: images (1797, 64), labels (1797,)."""
    from sklearn.datasets import load_digits  # only this task needs scikit-learn

    data = load_digits()
    return torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target, dtype=torch.long)


@dataclass(frozen=True)
class SequentialDigitsTask:
    """Digits read one pixel at a time (the sequential / permuted MNIST of Le, Jaitly & Hinton 2015, Sec. 4.2,
    on the 8x8 digits shipped with scikit-learn: 1797 images of the UCI "optical recognition of handwritten
    digits" set, pixel counts 0..16 scaled to [0, 1]).

    Sequence: 64 steps of one value, pixel t = row t // 8, column t % 8 (row by row). With ``permuted`` the
    step t reads pixel perm[t] instead, perm = torch.randperm(64) from a generator seeded with
    ``permutation_seed``, the same for every image. Target: the digit (10 classes) at the last step; score:
    accuracy. Split: torch.randperm(1797) from a generator seeded with ``split_seed``; its first
    round(test_fraction * 1797) images (359 by default) are the test set, the rest the training set. ``sample``
    draws training images uniformly with replacement; ``dataset(split)`` returns a whole split in order.
    """

    permuted: bool = False
    permutation_seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.2
    n_inputs = 1
    n_classes = 10
    length = 64

    def __post_init__(self):
        _check_bool("SequentialDigitsTask", "permuted", self.permuted)
        _check_int("SequentialDigitsTask", "permutation_seed", self.permutation_seed, 0)
        _check_int("SequentialDigitsTask", "split_seed", self.split_seed, 0)
        if isinstance(self.test_fraction, bool) or not isinstance(self.test_fraction, (int, float)) or not (
                0.0 < self.test_fraction < 1.0):
            raise ConfigError(f"SequentialDigitsTask: test_fraction must be a number in (0, 1), got "
                              f"{self.test_fraction!r}")

    @property
    def permutation(self) -> torch.Tensor:
        """(64,) pixel read at each step: the identity, or the fixed seeded permutation."""
        if not self.permuted:
            return torch.arange(self.length)
        return torch.randperm(self.length, generator=torch.Generator().manual_seed(self.permutation_seed))

    def _split(self, split: str) -> torch.Tensor:
        """Image indices of one split."""
        n = _digits()[0].shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_test = round(self.test_fraction * n)
        if split == "test":
            return order[:n_test]
        if split == "train":
            return order[n_test:]
        raise ConfigError(f"SequentialDigitsTask: split must be 'train' or 'test', got {split!r}")

    def _encode(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = _digits()
        inputs = images[index][:, self.permutation].unsqueeze(-1)  # (B, 64, 1)
        targets = torch.full((len(index), self.length), IGNORE, dtype=torch.long)
        targets[:, -1] = labels[index]
        return inputs, targets

    def dataset(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """Every image of ``split`` ('train' or 'test'): inputs (N, 64, 1), targets (N, 64)."""
        return self._encode(self._split(split))

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch_size("SequentialDigitsTask", batch_size)
        if length is not None and length != self.length:
            raise ConfigError(f"SequentialDigitsTask.sample: an 8x8 image is {self.length} steps; length must be "
                              f"None or {self.length}, got {length!r}")
        train = self._split("train")
        return self._encode(train[torch.randint(0, len(train), (batch_size,), generator=generator)])

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Classification accuracy at the last step."""
        return _classification_score("SequentialDigitsTask", self.n_classes, logits, targets)


@dataclass(frozen=True)
class ParityTask:
    """Parity check (Deletang et al. 2023, App. A; Grazzi et al. 2024, Table 3): a uniform random bit string
    x_1..x_T (tokens 0, 1), target (sum_t x_t) mod 2 at the last step, or at every step t the parity of the
    prefix x_1..x_t with ``every_prefix``. Score: accuracy at the scored steps.

    Training batches have one length drawn uniformly from ``train_lengths`` (3 to 40); length generalisation is
    measured on every length of ``test_lengths`` (40 to 256) with ``scaled_accuracy``.
    """

    train_lengths: tuple[int, int] = (3, 40)
    test_lengths: tuple[int, int] = (40, 256)
    every_prefix: bool = False
    vocab_size = 2
    n_classes = 2

    def __post_init__(self):
        _check_span("ParityTask", "train_lengths", self.train_lengths, 1)
        _check_span("ParityTask", "test_lengths", self.test_lengths, 1)
        _check_bool("ParityTask", "every_prefix", self.every_prefix)

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of strings of ``length`` bits (default: a length uniform in train_lengths)."""
        _check_batch_size("ParityTask", batch_size)
        T = _train_length(self.train_lengths, generator) if length is None else _length("ParityTask", length, 0, 1)
        bits = torch.randint(0, 2, (batch_size, T), generator=generator)  # (B, T)
        prefix = bits.cumsum(dim=1) % 2  # (B, T)
        if self.every_prefix:
            return bits, prefix
        targets = torch.full_like(bits, IGNORE)
        targets[:, -1] = prefix[:, -1]
        return bits, targets

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Accuracy at the scored steps."""
        return _classification_score("ParityTask", self.n_classes, logits, targets)


def _bracketed_expression(rng: random.Random, length: int, modulus: int, n_ops: int,
                          tokens: dict[str, int]) -> tuple[list[int], int]:
    """One random bracketed expression of exactly ``length`` tokens and its value mod ``modulus``, from the
    grammar of Deletang et al. 2023 (App. A): length 1: d, 2: -d, 3: (d), 4: (-d), 5 and more: (E op F) with
    |E| uniform in [1, length - 4], |F| = length - 3 - |E|, op uniform over the first ``n_ops`` of +, -, *."""
    if length <= 4:
        digit = rng.randrange(modulus)
        negate = length % 2 == 0
        body = [tokens["-"], digit] if negate else [digit]
        value = -digit % modulus if negate else digit
        return (body if length <= 2 else [tokens["("], *body, tokens[")"]]), value
    left_length = rng.randint(1, length - 4)
    left, a = _bracketed_expression(rng, left_length, modulus, n_ops, tokens)
    right, b = _bracketed_expression(rng, length - 3 - left_length, modulus, n_ops, tokens)
    op = "+-*"[rng.randrange(n_ops)]
    value = {"+": a + b, "-": a - b, "*": a * b}[op] % modulus
    return [tokens["("], *left, tokens[op], *right, tokens[")"]], value


@dataclass(frozen=True)
class ModularArithmeticTask:
    """Modular arithmetic (Deletang et al. 2023, App. A; Grazzi et al. 2024, Table 3). Target at the last step:
    the value of the expression mod m (m = ``modulus`` = 5, so 5 classes); score: accuracy.

    Without brackets ("simple", a regular language): digits d_0..d_n uniform in {0..m-1} alternating with
    operators uniform in {+, -, *} (only {+, -} when ``multiplication`` is False), e.g. 1 + 2 * 3 -> 2.
    The value follows the usual precedence (* before + and -, as in Deletang et al.'s reference code and its
    examples), i.e. Python's evaluation of the string, mod m. The expression has an odd number of tokens; an
    even length L gives L - 1 tokens, as in the reference code.

    With ``brackets`` (context free): fully bracketed expressions with unary minus, generated to an exact
    length by the grammar in ``_bracketed_expression``, e.g. ((-2)*(3-4)) -> 2. Deletang et al.'s text uses
    {+, -, *}; their reference class defaults to {+, -} (``multiplication=False`` here).

    Tokens: digits 0..m-1, then +, -, *, and (, ) with brackets. Training batches have one length uniform in
    ``train_lengths`` (3 to 40); ``scaled_accuracy`` averages over ``test_lengths`` (40 to 256).
    """

    brackets: bool = False
    modulus: int = 5
    multiplication: bool = True
    train_lengths: tuple[int, int] = (3, 40)
    test_lengths: tuple[int, int] = (40, 256)

    def __post_init__(self):
        owner = "ModularArithmeticTask"
        _check_bool(owner, "brackets", self.brackets)
        _check_bool(owner, "multiplication", self.multiplication)
        _check_int(owner, "modulus", self.modulus, 2)
        _check_span(owner, "train_lengths", self.train_lengths, 1)
        _check_span(owner, "test_lengths", self.test_lengths, 1)

    @property
    def tokens(self) -> dict[str, int]:
        """Symbol -> token id: '0'.. for the digits, then the operators (and brackets)."""
        symbols = [str(d) for d in range(self.modulus)] + ["+", "-", "*"] + (["(", ")"] if self.brackets else [])
        return {s: i for i, s in enumerate(symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def n_classes(self) -> int:
        return self.modulus

    def decode(self, row: torch.Tensor) -> str:
        """The expression of one input row as text, e.g. '1+2*3'."""
        symbols = list(self.tokens)
        return "".join(symbols[int(t)] for t in row)

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of expressions of ``length`` tokens (default: uniform in train_lengths; see the class
        docstring for even lengths without brackets)."""
        _check_batch_size("ModularArithmeticTask", batch_size)
        T = (_train_length(self.train_lengths, generator) if length is None
             else _length("ModularArithmeticTask", length, 0, 1))
        inputs, results = (self._bracketed if self.brackets else self._simple)(batch_size, T, generator)
        targets = torch.full_like(inputs, IGNORE)
        targets[:, -1] = results
        return inputs, targets

    def _simple(self, B: int, T: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        m, n = self.modulus, (T - 1) // 2  # n operators between n + 1 digits
        plus, minus, times = m, m + 1, m + 2
        digits = torch.randint(0, m, (B, n + 1), generator=generator)  # (B, n + 1)
        ops = torch.randint(0, 3 if self.multiplication else 2, (B, n), generator=generator) + plus  # (B, n)
        inputs = torch.empty(B, 2 * n + 1, dtype=torch.long)
        inputs[:, 0::2], inputs[:, 1::2] = digits, ops
        # Left to right with precedence: `total` holds the finished additive terms, `term` the running product.
        total, term = torch.zeros(B, dtype=torch.long), digits[:, 0]
        for k in range(n):
            op, d = ops[:, k], digits[:, k + 1]
            total = torch.where(op == times, total, (total + term) % m)
            term = torch.where(op == times, term * d % m, torch.where(op == minus, -d % m, d))
        return inputs, (total + term) % m

    def _bracketed(self, B: int, T: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        # The recursive grammar runs in Python; its RNG is seeded from `generator` so a seed fixes the batch.
        rng = random.Random(int(torch.randint(0, 2 ** 62, (), generator=generator)))
        n_ops = 3 if self.multiplication else 2
        rows = [_bracketed_expression(rng, T, self.modulus, n_ops, self.tokens) for _ in range(B)]
        return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Accuracy at the last step."""
        return _classification_score("ModularArithmeticTask", self.n_classes, logits, targets)


@functools.lru_cache(maxsize=None)
def permutation_group(degree: int) -> tuple[tuple[tuple[int, ...], ...], torch.Tensor]:
    """The symmetric group S_degree: its elements and multiplication table.

    Elements are the permutations of (0..degree-1) in lexicographic order (index 0 is the identity); p[i] is
    the image of i. The product is function composition, table[a, b] = index of p_a o p_b with
    (p_a o p_b)[i] = p_a[p_b[i]]: p_b acts first.
    """
    elements = tuple(itertools.permutations(range(degree)))
    index = {p: i for i, p in enumerate(elements)}
    table = torch.tensor([[index[tuple(a[i] for i in b)] for b in elements] for a in elements])  # (G, G)
    return elements, table


@dataclass(frozen=True)
class StateTrackingTask:
    """The word problem of the symmetric group S_n (Merrill, Petty & Sabharwal 2024; Grazzi et al. 2024).

    Inputs g_1..g_T are group elements (token = index in ``permutation_group(degree)``), uniform over the group,
    or, with ``only_transpositions``, uniform over its n(n-1)/2 transpositions (the swaps-only S5 of Siems et
    al. 2025, DeltaProduct). The target at step t is the state s_t = g_t o ... o g_2 o g_1, the permutation
    obtained by applying g_1 first, then g_2, and so on (s_t = g_t o s_{t-1}), as a group-element token; every
    step is scored. S3 has 6 elements (the smallest non-abelian group), S5 has 120 (not solvable, so beyond
    the reach of constant-depth parallel models per Merrill et al.).

    ``score`` is the sequence accuracy: the share of sequences whose final state is predicted right (per length
    with ``accuracy_by_length``); ``token_accuracy`` gives the per-step accuracy.
    """

    degree: int = 5
    only_transpositions: bool = False
    length: int = 128

    def __post_init__(self):
        _check_int("StateTrackingTask", "degree", self.degree, 2, 6)
        _check_bool("StateTrackingTask", "only_transpositions", self.only_transpositions)
        _check_int("StateTrackingTask", "length", self.length)

    @property
    def elements(self) -> tuple[tuple[int, ...], ...]:
        return permutation_group(self.degree)[0]

    @property
    def vocab_size(self) -> int:
        return math.factorial(self.degree)

    @property
    def n_classes(self) -> int:
        return self.vocab_size

    @property
    def generators(self) -> torch.Tensor:
        """Token ids the inputs are drawn from: the whole group, or its transpositions."""
        if not self.only_transpositions:
            return torch.arange(self.vocab_size)
        identity = tuple(range(self.degree))
        return torch.tensor([i for i, p in enumerate(self.elements)
                             if sum(a != b for a, b in zip(p, identity)) == 2])

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch_size("StateTrackingTask", batch_size)
        T = _length("StateTrackingTask", length, self.length, 1)
        table = permutation_group(self.degree)[1]  # (G, G)
        allowed = self.generators
        inputs = allowed[torch.randint(0, len(allowed), (batch_size, T), generator=generator)]  # (B, T)
        targets = torch.empty_like(inputs)
        state = inputs[:, 0]  # (B,)
        targets[:, 0] = state
        for t in range(1, T):
            state = table[inputs[:, t], state]  # s_t = g_t o s_{t-1}
            targets[:, t] = state
        return inputs, targets

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Sequence accuracy: share of rows whose prediction at the last step is the final state."""
        _check_logits("StateTrackingTask", logits, targets, self.n_classes)
        return float((logits[:, -1].argmax(-1) == targets[:, -1]).float().mean())


MQAR_PRESETS = {64: 4, 128: 8, 256: 16}  # Zoology's sequence length -> key-value pairs


@dataclass(frozen=True)
class MQARTask:
    """Multi-query associative recall (Arora et al. 2023, "Zoology") as a preset of RecallTask.

    ``seq_len`` T and ``n_pairs`` P as in Zoology's (64, 4), (128, 8), (256, 16). A RecallTask sequence with
    P pairs has 4P tokens (pairs, then queries with their answers); the other T - 4P steps are RecallTask's
    filler, placed between the pairs and the queries, so every query is at least T - 4P steps from its pair
    (Zoology instead scatters the queries through the padding; here the gap is one block). Vocabulary: filler,
    keys, values as in RecallTask, 64 + 64 + 16 by default (Zoology uses a vocabulary of 8192; raise n_keys and
    n_values to match). Score: accuracy on the query steps.
    """

    seq_len: int = 64
    n_pairs: int = 4
    n_keys: int = 64
    n_values: int = 64
    n_filler: int = 16

    def __post_init__(self):
        RecallTask(self.n_pairs, self.n_keys, self.n_values, self.n_filler)  # its own checks
        _check_int("MQARTask", "seq_len", self.seq_len, 4 * self.n_pairs)

    @property
    def recall(self) -> RecallTask:
        return RecallTask(self.n_pairs, self.n_keys, self.n_values, self.n_filler)

    @property
    def vocab_size(self) -> int:
        return self.recall.vocab_size

    @property
    def n_classes(self) -> int:
        return self.vocab_size

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch_size("MQARTask", batch_size)
        T = _length("MQARTask", length, self.seq_len, 4 * self.n_pairs)
        return self.recall.batch(batch_size, T - 4 * self.n_pairs, generator)

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Accuracy on the query steps."""
        return _classification_score("MQARTask", self.n_classes, logits, targets)


DIAGNOSTIC_TASKS: dict[str, Callable] = {
    "copying": CopyingTask,
    "selective_copying": SelectiveCopyingTask,
    "adding": AddingTask,
    "sequential_digits": SequentialDigitsTask,
    "permuted_digits": functools.partial(SequentialDigitsTask, permuted=True),
    "parity": ParityTask,
    "modular_arithmetic": ModularArithmeticTask,
    "modular_arithmetic_brackets": functools.partial(ModularArithmeticTask, brackets=True),
    "s3": functools.partial(StateTrackingTask, degree=3),
    "s5": functools.partial(StateTrackingTask, degree=5),
    "s5_swaps": functools.partial(StateTrackingTask, degree=5, only_transpositions=True),
    **{f"mqar_{T}": functools.partial(MQARTask, seq_len=T, n_pairs=P) for T, P in MQAR_PRESETS.items()},
}


def build_task(name: str, **options):
    """The task registered as ``name`` with ``options`` overriding its preset fields."""
    if not isinstance(name, str) or name not in DIAGNOSTIC_TASKS:
        raise UnknownNameError(f"unknown diagnostic task {name!r}; available: {', '.join(sorted(DIAGNOSTIC_TASKS))}")
    factory = DIAGNOSTIC_TASKS[name]
    cls = factory.func if isinstance(factory, functools.partial) else factory
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"task {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                          f"{', '.join(allowed)}")
    return factory(**options)
