"""rnnzoo.classify: SequenceClassifier, ClassifierNet, the sktime UCR loaders and the 1-NN baselines."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.classify import (NotFittedError, SequenceClassifier, UCR_DATASETS, dtw_distances, euclidean_distances,
                             load_ucr, one_nn_error)
from rnnzoo.classify.classifier import class_array, stratified_split
from rnnzoo.errors import ConfigError, DataError, ShapeError, UnknownNameError
from rnnzoo.mixers.bidirectional import Bidirectional
from rnnzoo.models.classifier import ClassifierNet

FAST = dict(d_model=16, batch_size=16, lr=1e-2)


def waves(n: int, seed: int, lengths: tuple[int, int] = (24, 24), channels: int = 1) -> tuple[list, np.ndarray]:
    """Sine (label "sine") or square (label "square") waves of random frequency, phase, amplitude and length."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        T = int(rng.integers(lengths[0], lengths[1] + 1))
        t = np.arange(T)[:, None] * rng.uniform(0.2, 0.6) + rng.uniform(0, 2 * np.pi, channels)  # (T, C)
        s = np.sin(t) if i % 2 else np.sign(np.sin(t))
        X.append(rng.uniform(0.5, 2.0) * s + 0.1 * rng.standard_normal(s.shape))
        y.append("sine" if i % 2 else "square")
    return X, np.array(y)


# ---- SequenceClassifier ----------------------------------------------------------------------------------------

def test_learns_sine_vs_square():
    X, y = waves(64, seed=0)
    X_test, y_test = waves(64, seed=1)
    clf = SequenceClassifier("gru", epochs=30, **FAST).fit(np.stack(X)[:, :, 0], y)  # (N, T) univariate array
    assert clf.classes_.tolist() == ["sine", "square"]
    assert clf.score(X_test, y_test) >= 0.95
    proba = clf.predict_proba(X_test)
    assert proba.shape == (64, 2) and np.allclose(proba.sum(1), 1)
    assert (clf.predict(X_test) == clf.classes_[proba.argmax(1)]).all()


def test_variable_length_multivariate_batch_equals_one_at_a_time():
    X, y = waves(32, seed=2, lengths=(5, 30), channels=2)
    clf = SequenceClassifier("lstm", epochs=2, pooling="mean", **FAST).fit(X, y)
    together = clf.predict_proba(X)
    alone = np.concatenate([clf.predict_proba([x]) for x in X])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("mixer,options", [("lstm", {}), ("mingru", {"pooling": "mean"}),
                                           ("gru", {"bidirectional": True}),
                                           ("mamba2", {"residual": True, "n_layers": 2, "pooling": "mean"}),
                                           ("gru", {"vocab_size": 9, "bidirectional": True})])
def test_padding_never_reaches_the_logits(mixer, options):
    """Logits of a right-padded batch equal each row run alone, whatever garbage fills the padding."""
    options = dict(options)
    tokens = "vocab_size" in options
    net = ClassifierNet(3, mixer=mixer, d_model=8, **({} if tokens else {"n_inputs": 2}), **options).eval()
    lengths = torch.tensor([7, 1, 4, 7, 2])
    if tokens:
        x = torch.randint(0, 9, (5, 7))  # (B, T)
    else:
        x = torch.randn(5, 7, 2)  # (B, T, C)
    junk = x.clone()
    for b, n in enumerate(lengths.tolist()):
        junk[b, n:] = torch.randint(0, 9, junk[b, n:].shape) if tokens else 1e3 * torch.randn(junk[b, n:].shape)
    with torch.no_grad():
        batch = net(junk, lengths)  # (B, K)
        rows = torch.cat([net(x[b:b + 1, :n]) for b, n in enumerate(lengths.tolist())])  # (B, K)
    torch.testing.assert_close(batch, rows, atol=1e-5, rtol=1e-5)


def test_bidirectional_reads_the_future():
    net = ClassifierNet(2, n_inputs=1, mixer="gru", d_model=8, bidirectional=True, pooling="mean").eval()
    assert isinstance(net.stack.layers[0], Bidirectional) and not net.stack.causal
    x = torch.randn(1, 6, 1)
    y = x.clone()
    y[:, -1] += 1.0
    with torch.no_grad():  # changing only the last input moves the first output: the backward reader carries it
        h_x, _ = net.stack(net.embed(x))
        h_y, _ = net.stack(net.embed(y))
    assert not torch.allclose(h_x[:, 0], h_y[:, 0])
    X, labels = waves(48, seed=3)
    clf = SequenceClassifier("gru", epochs=30, bidirectional=True, pooling="mean", **FAST).fit(X, labels)
    assert clf.score(*waves(48, seed=4)) >= 0.9


def test_token_input_with_vocabulary_from_the_data():
    """Class = which of two disjoint token sets a sequence draws from; ids are large and sparse."""
    rng = np.random.default_rng(0)

    def data(n):
        X = [rng.choice([100, 205, 3000] if i % 2 else [7, 58, 999], size=rng.integers(3, 12)) for i in range(n)]
        return X, np.array([i % 2 for i in range(n)])

    X, y = data(48)
    clf = SequenceClassifier("gru", epochs=10, pooling="mean", **FAST).fit(X, y)
    assert clf.tokens_ and clf.vocab_.tolist() == [7, 58, 100, 205, 999, 3000]
    assert clf.net_.config.vocab_size == 7  # six tokens + the unseen-token id 0
    assert clf.score(*data(48)) >= 0.95
    assert clf.predict([np.array([123456, 7, 7])]).shape == (1,)  # an unseen token is read as id 0
    with pytest.raises(ShapeError, match="token ids"):
        clf.predict(np.ones((2, 5)))


def test_same_seed_same_model_and_global_rng_untouched():
    X, y = waves(24, seed=5)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    kwargs = dict(epochs=3, dropout=0.2, **FAST)
    a = SequenceClassifier("lstm", seed=1, **kwargs).fit(X, y).predict_proba(X)
    assert torch.equal(torch.rand(3), expected_next)  # fit drew from its own generator
    b = SequenceClassifier("lstm", seed=1, **kwargs).fit(X, y).predict_proba(X)
    c = SequenceClassifier("lstm", seed=2, **kwargs).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_standardisation_makes_the_fit_invariant_to_channel_affine_maps():
    X, y = waves(24, seed=6, channels=2)
    X = np.stack(X)  # (N, T, C)
    shifted = X * np.array([1000.0, 0.01]) + np.array([-5.0, 40.0])
    kwargs = dict(epochs=3, **FAST)
    p = SequenceClassifier("gru", **kwargs).fit(X, y).predict_proba(X)
    q = SequenceClassifier("gru", **kwargs).fit(shifted, y).predict_proba(shifted)
    np.testing.assert_allclose(p, q, atol=1e-4)


def test_early_stopping_keeps_the_best_epoch():
    """Random labels: the model can only memorise, so the validation loss soon rises and training stops."""
    X, _ = waves(40, seed=7)
    y = np.random.default_rng(0).integers(0, 2, 40)
    clf = SequenceClassifier("gru", epochs=60, val_size=0.25, patience=3, lr=3e-2, d_model=16).fit(X, y)
    losses = [r["val_loss"] for r in clf.history_]
    assert clf.best_epoch_ == int(np.argmin(losses))
    assert len(losses) == clf.best_epoch_ + 3 + 1 < 60
    # the kept weights are the best epoch's: recompute its validation loss on the same held-out split
    _, val = stratified_split(torch.as_tensor(y), 0.25, torch.Generator().manual_seed(0))
    proba = clf.predict_proba([X[i] for i in val.tolist()])
    loss = -np.log(proba[np.arange(len(val)), y[val.numpy()]]).mean()
    assert loss == pytest.approx(losses[clf.best_epoch_], rel=1e-4)


def test_stratified_split_is_a_partition_keeping_every_class_in_training():
    targets = torch.tensor([0] * 10 + [1] * 3 + [2] * 1)
    train, val = stratified_split(targets, 0.3, torch.Generator().manual_seed(0))
    assert sorted(torch.cat([train, val]).tolist()) == list(range(14))
    assert [int((targets[val] == c).sum()) for c in range(3)] == [3, 1, 0]
    assert set(targets[train].tolist()) == {0, 1, 2}


def test_labels_of_any_hashable_kind():
    assert class_array(["b", "a", "b"]).tolist() == ["a", "b"]
    mixed = class_array([1, "a", 1])
    assert mixed.tolist() == [1, "a"] and mixed.dtype == object
    assert class_array([(1, 2), (0, 1)]).tolist() == [(0, 1), (1, 2)]
    X, _ = waves(8, seed=8)
    clf = SequenceClassifier("gru", epochs=1, **FAST).fit(X, [(1, 2), (0, 1)] * 4)
    assert clf.predict(X[:2]).tolist()[0] in [(0, 1), (1, 2)]


def test_every_error_path_names_the_problem():
    X, y = waves(8, seed=9)
    with pytest.raises(NotFittedError, match="fit"):
        SequenceClassifier().predict(X)
    with pytest.raises(UnknownNameError, match="available"):
        SequenceClassifier("no_such_mixer").fit(X, y)
    with pytest.raises(ShapeError, match="7 labels"):
        SequenceClassifier(epochs=1).fit(X, y[:7])
    with pytest.raises(DataError, match="single class"):
        SequenceClassifier(epochs=1).fit(X, ["a"] * 8)
    with pytest.raises(ShapeError, match="shape"):
        SequenceClassifier(epochs=1).fit(np.zeros(8), y)
    with pytest.raises(ShapeError, match="shape"):
        SequenceClassifier(epochs=1).fit(np.zeros((8, 3, 2, 1)), y)
    with pytest.raises(ShapeError, match="non-empty"):
        SequenceClassifier(epochs=1).fit([np.zeros(0)] + X[1:], y)
    with pytest.raises(ShapeError, match="channels"):
        SequenceClassifier(epochs=1).fit([np.zeros((4, 2))] + X[1:], y)
    bad = [x.copy() for x in X]
    bad[3][2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        SequenceClassifier(epochs=1).fit(bad, y)
    with pytest.raises(ConfigError, match="epochs"):
        SequenceClassifier(epochs=0).fit(X, y)
    clf = SequenceClassifier(epochs=1, **FAST).fit(X, y)
    with pytest.raises(ShapeError, match="fitted on 1"):
        clf.predict([np.zeros((5, 3))])
    with pytest.raises(DataError, match="NaN"):
        clf.predict(bad)
    with pytest.raises(ConfigError, match="exactly one"):
        ClassifierNet(2, n_inputs=1, vocab_size=4)
    with pytest.raises(ConfigError, match="pooling"):
        ClassifierNet(2, n_inputs=1, pooling="max")
    with pytest.raises(ShapeError, match="at least one step"):
        clf.net_(torch.zeros(2, 3, 1), torch.tensor([3, 0]))
    with pytest.raises(DataError, match="single class"):
        clf.fit(X, ["a"] * 8)
    with pytest.raises(NotFittedError):  # the failed refit did not leave the old network beside new classes
        clf.predict(X)


# ---- UCR loaders -----------------------------------------------------------------------------------------------

# (N train, T or None for unequal lengths, C) from the UCR / UEA archive pages
UCR_SHAPES = {"ItalyPowerDemand": (67, 24, 1), "GunPoint": (50, 150, 1), "ArrowHead": (36, 251, 1),
              "OSULeaf": (200, 427, 1), "ACSF1": (100, 1460, 1), "PLAID": (537, None, 1),
              "BasicMotions": (40, 100, 6), "JapaneseVowels": (270, None, 12)}


@pytest.mark.parametrize("name", UCR_DATASETS)
def test_ucr_train_split_has_the_archive_shape(name):
    n, T, C = UCR_SHAPES[name]
    X, y = load_ucr(name, "train")
    assert y.shape == (n,) and y.dtype.kind == "U" and len(set(y)) >= 2
    if T is None:
        assert isinstance(X, list) and len(X) == n and len({len(x) for x in X}) > 1
        assert all(x.shape[1:] == (() if C == 1 else (C,)) for x in X)
    else:
        assert X.shape == ((n, T) if C == 1 else (n, T, C)) and X.dtype == np.float64
        assert np.isfinite(X).all()


def test_ucr_unknown_name_and_split():
    with pytest.raises(UnknownNameError, match="GunPoint"):
        load_ucr("Gunpoint")
    with pytest.raises(ConfigError, match="split"):
        load_ucr("GunPoint", "TRAIN")


# ---- 1-NN baselines --------------------------------------------------------------------------------------------

def dtw_loop(a: np.ndarray, b: np.ndarray, window: float | None) -> float:
    """Textbook DTW, one cell at a time; a (n, C), b (m, C); squared pointwise costs."""
    n, m = len(a), len(b)
    w = n + m if window is None else max(math.floor(window * max(n, m)), abs(n - m))
    D = [[math.inf] * (m + 1) for _ in range(n + 1)]
    D[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if abs(i - j) <= w:
                cost = float(((a[i - 1] - b[j - 1]) ** 2).sum())
                D[i][j] = cost + min(D[i - 1][j - 1], D[i - 1][j], D[i][j - 1])
    return D[n][m]


series = st.integers(1, 7).flatmap(lambda T: st.lists(st.floats(-5, 5), min_size=T, max_size=T))


@settings(max_examples=25, deadline=None)
@given(st.lists(series, min_size=1, max_size=3), st.lists(series, min_size=1, max_size=3),
       st.one_of(st.none(), st.floats(0, 1)), st.integers(1, 2))
def test_dtw_matches_the_double_loop(A, B, window, channels):
    A = [np.repeat(np.array(a)[:, None], channels, 1) * np.arange(1, channels + 1) for a in A]  # (T, C) each
    B = [np.repeat(np.array(b)[:, None], channels, 1) for b in B]
    got = dtw_distances(A, B, window)
    want = np.array([[dtw_loop(a, b, window) for b in B] for a in A])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9).flatmap(lambda T: st.tuples(*[st.lists(st.floats(-5, 5), min_size=T, max_size=T)] * 4)))
def test_dtw_with_window_zero_is_squared_euclidean(rows):
    X = np.array(rows)  # (4, T)
    ed = euclidean_distances(X[:2], X[2:])
    np.testing.assert_allclose(dtw_distances(X[:2], X[2:], window=0), ed, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ed, ((X[:2, None] - X[None, 2:]) ** 2).sum(-1), rtol=1e-12, atol=1e-12)
    assert (dtw_distances(X[:2], X[2:]) <= ed + 1e-9).all()  # the diagonal is one of the warping paths


@pytest.mark.parametrize("name,ed,dtw", [("ItalyPowerDemand", 0.045, 0.050), ("GunPoint", 0.087, 0.093)])
def test_one_nn_errors_match_the_ucr_archive(name, ed, dtw):
    """Published test errors (Dau et al. 2019, UCR archive page): 1-NN ED and DTW with a full window."""
    X_train, y_train = load_ucr(name, "train")
    X_test, y_test = load_ucr(name, "test")
    assert round(one_nn_error(X_train, y_train, X_test, y_test), 3) == ed
    assert round(one_nn_error(X_train, y_train, X_test, y_test, "dtw"), 3) == dtw


def test_one_nn_errors():
    X = np.zeros((2, 4))
    with pytest.raises(ConfigError, match="metric"):
        one_nn_error(X, [0, 1], X, [0, 1], metric="cosine")
    with pytest.raises(ConfigError, match="window"):
        one_nn_error(X, [0, 1], X, [0, 1], metric="dtw", window=1.5)
    with pytest.raises(ShapeError, match="dtw"):
        one_nn_error([np.zeros(3), np.zeros(4)], [0, 1], X, [0, 1])
    with pytest.raises(ShapeError, match="y_train"):
        one_nn_error(X, [0], X, [0, 1])
    assert one_nn_error([np.zeros(3), np.ones(5)], [0, 1], [np.full(4, 0.9)], [1], metric="dtw") == 0.0
