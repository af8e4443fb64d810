"""A scikit-learn style sequence classifier that trains a ClassifierNet around any rnnzoo mixer.

    clf = SequenceClassifier("gru", d_model=64, epochs=50).fit(X_train, y_train)
    clf.predict(X_test); clf.predict_proba(X_test); clf.score(X_test, y_test); clf.classes_

X may be a numpy array (N, T) (univariate) or (N, T, C); a list of (T_i,) or (T_i, C) arrays of different
lengths (right-padded, the lengths passed to the model so padding is never read); or a list of integer token
sequences (``tokens=True``, or detected from an integer dtype), embedded with a vocabulary taken from the
training data (id 0 stands for a token never seen in training). Labels may be any hashable values.

Training: cross-entropy, AdamW, learning rate on a cosine from ``lr`` to 0 over all steps, gradient-norm
clipping. Real values are standardised per channel, z = (x - mean_c) / std_c, with mean and std over every
valid time step of the training set. With ``val_size`` > 0 a stratified part of the training set is held out,
and training stops after ``patience`` epochs without a lower validation loss, keeping the best weights.
Fitting is deterministic for a seed on CPU: it draws from its own seeded torch RNG, not the global one.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError, DataError, NotFittedError, ShapeError
from rnnzoo.models.classifier import ClassifierNet
from rnnzoo.train.optim import AdamW


@dataclass
class Batchable:
    """Sequences right-padded into one tensor: values (N, T, C) float32 or (N, T) int64 ids, lengths (N,)."""

    values: torch.Tensor
    lengths: torch.Tensor


class SequenceClassifier:
    """See the module docstring. Fitted attributes: ``classes_``, ``net_``, ``history_`` (one dict per epoch:
    train loss, and val loss / accuracy when ``val_size`` > 0), ``best_epoch_`` (whose weights are kept),
    ``n_channels_`` (None for tokens)."""

    def __init__(self, mixer: str = "lstm", d_model: int = 64, n_layers: int = 1, *, epochs: int = 50,
                 batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 1e-2, grad_clip: float | None = 1.0,
                 pooling: str = "last", bidirectional: bool = False, residual: bool = False, dropout: float = 0.0,
                 scale: bool = True, tokens: bool | None = None, val_size: float = 0.0, patience: int = 10,
                 seed: int = 0, device: str = "cpu", **mixer_options):
        self.mixer, self.d_model, self.n_layers = mixer, d_model, n_layers
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.grad_clip, self.pooling, self.bidirectional = grad_clip, pooling, bidirectional
        self.residual, self.dropout, self.scale, self.tokens = residual, dropout, scale, tokens
        self.val_size, self.patience, self.seed, self.device = val_size, patience, seed, device
        self.mixer_options = mixer_options

    # ---- public API -------------------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> SequenceClassifier:
        self.__dict__.pop("net_", None)  # a fit that fails leaves the classifier unfitted, not half-refitted
        self._check_params()
        seqs, tokens = read_sequences(X, self.tokens)
        labels = read_labels(y, len(seqs))
        self.classes_ = class_array(labels)
        if len(self.classes_) < 2:
            raise DataError(f"y holds a single class ({self.classes_[0]!r}); a classifier needs at least two")
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        targets = torch.tensor([index[c] for c in labels], dtype=torch.long)  # (N,)
        self.tokens_ = tokens
        if tokens:
            self.vocab_ = np.unique(np.concatenate(seqs))  # id = position + 1; 0 = unseen token
            self.n_channels_ = None
        else:
            self.n_channels_ = seqs[0].shape[1]
            stacked = np.concatenate(seqs)  # (sum T_i, C)
            self.mean_ = stacked.mean(0) if self.scale else np.zeros(self.n_channels_)
            std = stacked.std(0) if self.scale else np.ones(self.n_channels_)
            self.std_ = np.where(std > 0, std, 1.0)  # a constant channel is only shifted
        data = self._batchable(seqs)
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            train_idx, val_idx = stratified_split(targets, self.val_size, gen)
            self.net_ = ClassifierNet(len(self.classes_), n_inputs=self.n_channels_,
                                      vocab_size=None if not tokens else len(self.vocab_) + 1, mixer=self.mixer,
                                      d_model=self.d_model, n_layers=self.n_layers, residual=self.residual,
                                      dropout=self.dropout, bidirectional=self.bidirectional, pooling=self.pooling,
                                      **self.mixer_options).to(self.device)
            self._train(data, targets, train_idx, val_idx, gen)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, n_classes) class probabilities, columns in the order of ``classes_``."""
        if not hasattr(self, "net_"):
            raise NotFittedError("this SequenceClassifier is not fitted yet; call fit(X, y) before predicting")
        seqs, tokens = read_sequences(X, self.tokens_)  # token ids if and only if fitted on token ids
        if not tokens and seqs[0].shape[1] != self.n_channels_:
            raise ShapeError(f"X has {seqs[0].shape[1]} channels but the classifier was fitted on "
                             f"{self.n_channels_}")
        logits = self._logits(self._batchable(seqs), torch.arange(len(seqs)))  # (N, K)
        return logits.softmax(-1).double().numpy()

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # (N, K); first, so that an unfitted model raises NotFittedError
        return self.classes_[proba.argmax(1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy: the fraction of sequences whose predicted label equals y."""
        pred = self.predict(X)
        labels = read_labels(y, len(pred))
        return float(np.mean([p == t for p, t in zip(pred.tolist(), labels)]))

    # ---- internals --------------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        def fail(name, want):
            raise ConfigError(f"SequenceClassifier: {name} must be {want}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, "an int >= 1")
        for name, ok, want in (("lr", lambda v: v > 0, "a number > 0"),
                               ("weight_decay", lambda v: v >= 0, "a number >= 0"),
                               ("val_size", lambda v: 0 <= v < 1, "a fraction in [0, 1)")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                fail(name, want)
        clip = self.grad_clip
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
            fail("grad_clip", "None or a number > 0")
        for name in ("scale", "bidirectional", "residual"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "True or False")
        if self.tokens not in (None, True, False):
            fail("tokens", "None (detect from the dtype), True or False")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            fail("seed", "an int")

    def _batchable(self, seqs: list[np.ndarray]) -> Batchable:
        lengths = torch.tensor([len(s) for s in seqs])
        if self.tokens_:
            values = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)  # (N, T)
            for i, s in enumerate(seqs):
                pos = np.searchsorted(self.vocab_, s).clip(max=len(self.vocab_) - 1)
                values[i, :len(s)] = torch.from_numpy(np.where(self.vocab_[pos] == s, pos + 1, 0))
        else:
            values = torch.zeros(len(seqs), int(lengths.max()), self.n_channels_)  # (N, T, C)
            for i, s in enumerate(seqs):
                values[i, :len(s)] = torch.from_numpy((s - self.mean_) / self.std_)
        return Batchable(values, lengths)

    def _batch(self, data: Batchable, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows ``idx``, cut to their longest length, on the device."""
        lengths = data.lengths[idx]  # (b,)
        values = data.values[idx, :int(lengths.max())]  # (b, T_b[, C])
        return values.to(self.device), lengths.to(self.device)

    def _logits(self, data: Batchable, idx: torch.Tensor) -> torch.Tensor:
        """Logits (len(idx), K) in eval mode, on the CPU."""
        self.net_.eval()
        with torch.no_grad():
            return torch.cat([self.net_(*self._batch(data, chunk)).float().cpu()
                              for chunk in idx.split(max(self.batch_size, 256))])

    def _train(self, data: Batchable, targets: torch.Tensor, train_idx: torch.Tensor, val_idx: torch.Tensor,
               gen: torch.Generator) -> None:
        net = self.net_
        opt = AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total, step = self.epochs * math.ceil(len(train_idx) / self.batch_size), 0
        self.history_: list[dict] = []
        self.best_epoch_ = self.epochs - 1  # the last epoch, unless early stopping picks another
        best, best_state, waited = math.inf, None, 0
        for epoch in range(self.epochs):
            net.train()
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            loss_sum = 0.0
            for chunk in order.split(self.batch_size):
                opt.lr = self.lr * 0.5 * (1 + math.cos(math.pi * step / total))  # cosine to 0
                step += 1
                logits = net(*self._batch(data, chunk))  # (b, K)
                loss = F.cross_entropy(logits, targets[chunk].to(self.device))
                opt.zero_grad()
                loss.backward()
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
                opt.step()
                loss_sum += loss.item() * len(chunk)
            if not math.isfinite(loss_sum):
                raise DataError(f"training diverged (non-finite loss) at epoch {epoch}; lower lr or keep "
                                "scale=True")
            record = {"epoch": epoch, "loss": loss_sum / len(train_idx)}
            if len(val_idx):
                logits = self._logits(data, val_idx)  # (n_val, K)
                record["val_loss"] = F.cross_entropy(logits, targets[val_idx]).item()
                record["val_accuracy"] = (logits.argmax(1) == targets[val_idx]).float().mean().item()
                if record["val_loss"] < best:
                    best, best_state, waited = record["val_loss"], copy.deepcopy(net.state_dict()), 0
                    self.best_epoch_ = epoch
                else:
                    waited += 1
            self.history_.append(record)
            if len(val_idx) and waited >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()


def read_sequences(X: Any, tokens: bool | None) -> tuple[list[np.ndarray], bool]:
    """X as a list of per-sequence arrays, (T_i,) int64 for tokens or (T_i, C) float64 for values, and whether
    it holds tokens (``tokens`` None: when every sequence has an integer dtype)."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim not in (2, 3):
            raise ShapeError(f"X must be (N, T), (N, T, C) or a list of sequences, got an array of shape {X.shape}")
        items = list(X)
    elif isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object):
        items = list(X)
    elif isinstance(X, torch.Tensor):
        return read_sequences(X.detach().cpu().numpy(), tokens)
    else:
        raise ShapeError(f"X must be a numpy array (N, T) / (N, T, C) or a list of sequences, got "
                         f"{type(X).__name__}")
    if not items:
        raise ShapeError("X holds no sequences")
    arrays = []
    for i, s in enumerate(items):
        try:
            s = np.asarray(s)
        except ValueError as e:
            raise ShapeError(f"X[{i}] is not a rectangular array: {e}") from None
        if s.dtype == object or not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
            raise ShapeError(f"X[{i}] must hold numbers, got dtype {s.dtype}")
        if s.ndim not in (1, 2) or s.shape[0] == 0:
            raise ShapeError(f"X[{i}] must be a non-empty (T,) or (T, C) sequence, got shape {s.shape}")
        arrays.append(s)
    if tokens is None:
        tokens = all(np.issubdtype(s.dtype, np.integer) and s.ndim == 1 for s in arrays)
    if tokens:
        for i, s in enumerate(arrays):
            if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
                raise ShapeError(f"X[{i}] must be a 1-D sequence of integer token ids (tokens=True), got "
                                 f"{s.dtype} of shape {s.shape}")
        return [s.astype(np.int64) for s in arrays], True
    seqs = [(s[:, None] if s.ndim == 1 else s).astype(np.float64) for s in arrays]
    for i, s in enumerate(seqs):
        if not np.isfinite(s).all():
            raise DataError(f"X[{i}] holds NaN or inf; impute or drop missing values before fit / predict")
    widths = sorted({s.shape[1] for s in seqs})
    if len(widths) > 1:
        raise ShapeError(f"every sequence of X needs the same number of channels, got {widths}")
    return seqs, False


def read_labels(y: Any, n: int) -> list:
    """y as a list of n labels."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if isinstance(y, (str, bytes)) or not hasattr(y, "__len__"):
        raise ShapeError(f"y must be a sequence of labels, one per sequence of X, got {type(y).__name__}")
    if isinstance(y, np.ndarray) and y.ndim != 1:
        raise ShapeError(f"y must be 1-D (one label per sequence), got shape {y.shape}")
    labels = y.tolist() if isinstance(y, np.ndarray) else list(y)
    if len(labels) != n:
        raise ShapeError(f"X holds {n} sequences but y holds {len(labels)} labels")
    return labels


def class_array(labels: list) -> np.ndarray:
    """The distinct labels, sorted when they compare (else in order of first appearance), as a 1-D array."""
    distinct = list(dict.fromkeys(labels))
    try:
        distinct.sort()
    except TypeError:
        pass  # mixed types such as 1 and "a" have no order; first appearance is as good as any
    out = np.asarray(distinct)
    if out.ndim != 1 or out.tolist() != distinct:  # numpy would turn tuples into rows, 1 and "a" into "1", "a"
        out = np.empty(len(distinct), dtype=object)
        out[:] = distinct
    return out


def stratified_split(targets: torch.Tensor, val_size: float, gen: torch.Generator) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
    """(train, val) indices: round(val_size * n_c) of each class's n_c sequences held out, at most n_c - 1."""
    train, val = [], []
    for c in targets.unique():
        idx = (targets == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = min(round(val_size * len(idx)), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values
