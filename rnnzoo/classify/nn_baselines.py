"""One-nearest-neighbour baselines for time-series classification: Euclidean distance and DTW.

Each query takes the label of its nearest training series (the first one on a tie). Both distances are
*squared* sums over time of the squared pointwise Euclidean distance between the C-channel vectors:

    ED(a, b)  = sum_t ||a_t - b_t||^2                                   (equal lengths only)
    DTW(a, b) = min over warping paths W of sum_{(i, j) in W} ||a_i - b_j||^2

A warping path runs from (0, 0) to (n-1, m-1) in unit steps (i+1, j), (i, j+1), (i+1, j+1) (Sakoe & Chiba
1978), computed by the recursion D[i, j] = ||a_i - b_j||^2 + min(D[i-1, j-1], D[i-1, j], D[i, j-1]). The
Sakoe-Chiba band keeps |i - j| <= w with w = floor(window * max(n, m)), widened to |n - m| so that unequal
lengths can still meet at the end. Squaring does not change which neighbour is nearest, and it makes DTW with
window 0 equal ED exactly. These are the conventions of the UCR archive's 1-NN baselines (Dau et al., "The UCR
Time Series Archive", 2019), whose published test errors our ED numbers reproduce.

The DTW recursion is vectorised over anti-diagonals: every cell on diagonal i + j = k depends only on
diagonals k-1 and k-2, so one numpy step fills diagonal k for every (query, training series) pair at once;
2 T - 1 steps in all instead of T^2 Python iterations.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rnnzoo.errors import ConfigError, DataError, ShapeError

PAIR_BUDGET = 2 ** 22  # (query, train, diagonal cell) triples one DTW chunk holds at once (32 MiB in float64)


def as_series_list(X: Any, name: str = "X") -> list[np.ndarray]:
    """X as a list of float64 arrays (T_i, C): from an array (N, T) or (N, T, C), or a list of (T_i,) or
    (T_i, C) arrays. Raises ShapeError on a bad layout and DataError on NaN or inf."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim not in (2, 3):
            raise ShapeError(f"{name} must be (N, T) or (N, T, C), got shape {X.shape}")
        items = list(X)
    elif isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object):
        items = list(X)
    else:
        raise ShapeError(f"{name} must be a numpy array (N, T) / (N, T, C) or a list of per-series arrays, "
                         f"got {type(X).__name__}")
    if not items:
        raise ShapeError(f"{name} holds no series")
    series = []
    for i, s in enumerate(items):
        try:
            s = np.asarray(s, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ShapeError(f"{name}[{i}] is not numeric: {e}") from None
        if s.ndim == 1:
            s = s[:, None]
        if s.ndim != 2 or s.shape[0] == 0:
            raise ShapeError(f"{name}[{i}] must be a non-empty (T,) or (T, C) array, got shape {s.shape}")
        if not np.isfinite(s).all():
            raise DataError(f"{name}[{i}] holds NaN or inf; impute or drop the missing values first")
        series.append(s)
    widths = {s.shape[1] for s in series}
    if len(widths) > 1:
        raise ShapeError(f"{name}: every series needs the same number of channels, got {sorted(widths)}")
    return series


def pad(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad with zeros: (N, T_max, C) values and (N,) lengths."""
    lengths = np.array([len(s) for s in series])
    out = np.zeros((len(series), lengths.max(), series[0].shape[1]))
    for i, s in enumerate(series):
        out[i, :len(s)] = s
    return out, lengths


def euclidean_distances(A: Any, B: Any) -> np.ndarray:
    """Squared Euclidean distances (N_a, N_b) between equal-length series."""
    a, b = as_series_list(A, "A"), as_series_list(B, "B")
    lengths = {s.shape for s in a} | {s.shape for s in b}
    if len(lengths) > 1:
        raise ShapeError(f"Euclidean distance needs series of one length and width, got shapes "
                         f"{sorted(lengths)}; use metric='dtw' for unequal lengths")
    fa = np.stack(a).reshape(len(a), -1)  # (N_a, T C)
    fb = np.stack(b).reshape(len(b), -1)  # (N_b, T C)
    # ||a - b||^2 summed directly (not via a.a + b.b - 2 a.b) so that near-identical series stay exact.
    return np.stack([((fb - row) ** 2).sum(-1) for row in fa])  # (N_a, N_b)


def dtw_distances(A: Any, B: Any, window: float | None = None) -> np.ndarray:
    """DTW distances (N_a, N_b) with squared pointwise costs (module docstring); ``window`` None for full DTW,
    else the Sakoe-Chiba half-width as a fraction of the longer series' length, in [0, 1]."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float))
                               or not 0 <= window <= 1):
        raise ConfigError(f"window must be None (full DTW) or a fraction of the length in [0, 1], got {window!r}")
    a, la = pad(as_series_list(A, "A"))  # (N_a, Ta, C), (N_a,)
    b, lb = pad(as_series_list(B, "B"))  # (N_b, Tb, C), (N_b,)
    if a.shape[2] != b.shape[2]:
        raise ShapeError(f"A has {a.shape[2]} channels but B has {b.shape[2]}")
    rows = max(1, PAIR_BUDGET // (len(b) * a.shape[1]))
    return np.concatenate([_dtw_block(a[i:i + rows], la[i:i + rows], b, lb, window)
                           for i in range(0, len(a), rows)])


def _dtw_block(a: np.ndarray, la: np.ndarray, b: np.ndarray, lb: np.ndarray, window: float | None) -> np.ndarray:
    """DTW for every pair of a (P, n, C) x b (Q, m, C), anti-diagonal by anti-diagonal. Diagonal k is stored
    in a row of n + 1 slots, slot i + 1 holding cell (i, k - i) and slot 0 a border of inf, so that the three
    predecessors of the cells i_lo..i_hi-1 are plain slices: D[i-1, j-1] = prev2[i], D[i-1, j] = prev1[i],
    D[i, j-1] = prev1[i + 1]. Cells off the grid or outside the band hold inf."""
    P, n, _ = a.shape
    Q, m, _ = b.shape
    b_rev = b[:, ::-1]  # cell (i, k - i) reads b_rev[m - 1 - k + i], increasing in i
    if window is None:
        band = None
    else:
        longest = np.maximum(la[:, None], lb[None, :])  # (P, Q)
        band = np.maximum(np.floor(window * longest).astype(int), np.abs(la[:, None] - lb[None, :]))
    end_k = la[:, None] + lb[None, :] - 2  # (P, Q): diagonal of each pair's last cell (n_p - 1, m_q - 1)
    end_slot = np.broadcast_to(la[:, None], (P, Q))
    out = np.empty((P, Q))
    prev2, prev1, cur = (np.full((P, Q, n + 1), np.inf) for _ in range(3))
    for k in range(n + m - 1):
        lo, hi = max(0, k - m + 1), min(n, k + 1)  # rows of the cells on diagonal k
        cost = ((a[:, None, lo:hi] - b_rev[None, :, m - 1 - k + lo:m - 1 - k + hi]) ** 2).sum(-1)  # (P, Q, L)
        if k == 0:
            total = cost
        else:
            total = cost + np.minimum(np.minimum(prev2[:, :, lo:hi], prev1[:, :, lo:hi]), prev1[:, :, lo + 1:hi + 1])
        if band is not None:
            i = np.arange(lo, hi)
            total = np.where(np.abs(2 * i - k) <= band[:, :, None], total, np.inf)
        cur.fill(np.inf)
        cur[:, :, lo + 1:hi + 1] = total
        done = end_k == k
        if done.any():
            out[done] = cur[done, end_slot[done]]
        prev2, prev1, cur = prev1, cur, prev2
    return out


def one_nn_predict(X_train: Any, y_train: Any, X_test: Any, metric: str = "euclidean",
                   window: float | None = None) -> np.ndarray:
    """The label of each test series' nearest training series (the first on a tie)."""
    y_train = np.asarray(y_train)
    n_train = len(as_series_list(X_train, "X_train"))
    if y_train.ndim != 1 or len(y_train) != n_train:
        raise ShapeError(f"y_train must be 1-D with one label per training series ({n_train}), "
                         f"got shape {y_train.shape}")
    if metric == "euclidean":
        if window is not None:
            raise ConfigError("window applies to metric='dtw' only; Euclidean distance has no warping")
        dist = euclidean_distances(X_test, X_train)  # (N_test, N_train)
    elif metric == "dtw":
        dist = dtw_distances(X_test, X_train, window)  # (N_test, N_train)
    else:
        raise ConfigError(f"metric must be 'euclidean' or 'dtw', got {metric!r}")
    return y_train[dist.argmin(axis=1)]


def one_nn_error(X_train: Any, y_train: Any, X_test: Any, y_test: Any, metric: str = "euclidean",
                 window: float | None = None) -> float:
    """Test error rate (fraction misclassified) of 1-NN with the given metric."""
    y_test = np.asarray(y_test)
    pred = one_nn_predict(X_train, y_train, X_test, metric, window)
    if y_test.shape != pred.shape:
        raise ShapeError(f"y_test must hold one label per test series ({len(pred)}), got shape {y_test.shape}")
    return float((pred != y_test).mean())
