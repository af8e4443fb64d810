"""Point and probabilistic forecast accuracy: pointwise functions on 1-D arrays and a frame-level `evaluate`.

Definitions (h = horizon length, y = actuals, f = point forecast, m = season length):

    MAE   = 1/h sum_t |y_t - f_t|
    RMSE  = sqrt(1/h sum_t (y_t - f_t)^2)
    sMAPE = 200/h sum_t |y_t - f_t| / (|y_t| + |f_t|)          (M4 guide; a 0/0 term counts as 0; range 0..200)
    MASE  = MAE / (1/(n-m) sum_{t=m+1}^{n} |y_t - y_{t-m}|)      (Hyndman & Koehler 2006; scale on the n training
                                                                  values, as in the M4 guide)
    OWA   = 0.5 * (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2)   (M4 overall weighted average)
    pinball_q(y, f) = 1/h sum_t max(q (y_t - f_t), (q - 1)(y_t - f_t))
    scaled CRPS = 2 * (1/Q) sum_q sum_t pinball_q,t / sum_t |y_t|   (CRPS approximated by the quantile losses
                  at Q levels, scaled by the actuals; Rangapuram et al. 2021, "End-to-end learning of coherent
                  probabilistic forecasts for hierarchical time series", as implemented by neuralforecast /
                  utilsforecast `scaled_crps`)
    coverage = fraction of y_t inside [lo_t, hi_t]

Only numpy and pandas are used here, so the metrics work on any forecast frame, torch or not.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rnnzoo.errors import DataError, ShapeError
from rnnzoo.forecast.data import require_columns

LONG = "use the long format unique_id, ds, y plus one column per model"


def _pair(y, f, what: str = "forecast") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if y.ndim != 1 or y.shape != f.shape:
        raise ShapeError(f"actuals and {what} must be 1-D arrays of the same length, got shapes {y.shape} and "
                         f"{f.shape}; pass one series (one horizon) at a time")
    if y.size == 0:
        raise ShapeError(f"actuals and {what} are empty; pass at least one time step")
    return y, f


def mae(y, f) -> float:
    """Mean absolute error."""
    y, f = _pair(y, f)
    return float(np.mean(np.abs(y - f)))


def rmse(y, f) -> float:
    """Root mean squared error."""
    y, f = _pair(y, f)
    return float(np.sqrt(np.mean((y - f) ** 2)))


def smape(y, f) -> float:
    """Symmetric MAPE as in the M4 competition guide, on a 0..200 scale; a 0/0 term (y_t = f_t = 0) counts as 0."""
    y, f = _pair(y, f)
    num = np.abs(y - f)
    den = np.abs(y) + np.abs(f)
    # den == 0 implies num == 0: a perfect forecast of a zero, which costs nothing
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(200.0 * np.mean(ratio))


def mase_scale(y_train, season_length: int) -> float:
    """In-sample MAE of the seasonal naive forecast: mean |y_t - y_{t-m}| over the training series.

    Falls back to m = 1 when the seasonal scale is 0 or undefined (fewer than m + 1 training values); raises a
    DataError when even the lag-1 scale is 0 (a constant training series) or the series has fewer than 2 values.
    """
    y_train = np.asarray(y_train, dtype=np.float64)
    if y_train.ndim != 1:
        raise ShapeError(f"y_train must be a 1-D array, got shape {y_train.shape}")
    if season_length < 1:
        raise DataError(f"season_length must be >= 1, got {season_length}")
    for m in dict.fromkeys((season_length, 1)):  # seasonal lag first, then lag 1
        if y_train.size > m:
            scale = float(np.mean(np.abs(y_train[m:] - y_train[:-m])))
            if scale > 0:
                return scale
    if y_train.size < 2:
        raise DataError(f"MASE needs a training series of at least 2 values, got {y_train.size}; "
                        "evaluate on a longer training part")
    raise DataError("MASE is undefined: the training series is constant (every lag-1 and seasonal difference is 0), "
                    "so the naive scale is 0; drop that series or report MAE instead")


def mase(y, f, y_train, season_length: int) -> float:
    """Mean absolute scaled error: MAE over the in-sample seasonal naive MAE (see `mase_scale`)."""
    return mae(y, f) / mase_scale(y_train, season_length)


def coverage(y, lo, hi) -> float:
    """Fraction (0..1) of actuals inside the closed interval [lo, hi]."""
    y, lo = _pair(y, lo, "lower bound")
    _, hi = _pair(y, hi, "upper bound")
    return float(np.mean((y >= lo) & (y <= hi)))


def pinball_loss(y, f, q: float) -> float:
    """Quantile (pinball) loss of forecast f for quantile level q in (0, 1), averaged over the horizon."""
    if not 0.0 < q < 1.0:
        raise DataError(f"quantile level must be in (0, 1), got {q}")
    y, f = _pair(y, f, "quantile forecast")
    d = y - f
    return float(np.mean(np.maximum(q * d, (q - 1.0) * d)))


def scaled_crps(y, quantile_forecasts, quantile_levels) -> float:
    """Scaled CRPS: 2 * mean over levels of the horizon-summed pinball loss, divided by sum |y|.

    quantile_forecasts has shape (h, Q): column j is the forecast of quantile quantile_levels[j].
    """
    y = np.asarray(y, dtype=np.float64)
    qf = np.asarray(quantile_forecasts, dtype=np.float64)  # (h, Q)
    levels = np.asarray(quantile_levels, dtype=np.float64)  # (Q,)
    if y.ndim != 1 or qf.shape != (y.size, levels.size) or levels.ndim != 1:
        raise ShapeError(f"scaled_crps needs y (h,), quantile_forecasts (h, Q) and quantile_levels (Q,), got "
                         f"{y.shape}, {qf.shape}, {levels.shape}")
    norm = np.sum(np.abs(y))
    if norm == 0:
        raise DataError("scaled CRPS is undefined when every actual is 0 (it divides by sum |y|); "
                        "use the pinball loss instead")
    total = sum(pinball_loss(y, qf[:, j], q) for j, q in enumerate(levels)) * y.size  # sum over t, summed over q
    return float(2.0 * total / levels.size / norm)


def owa(smape: float, mase: float, smape_naive2: float, mase_naive2: float) -> float:
    """M4 overall weighted average: the mean of sMAPE and MASE, each relative to Naive2 (Naive2 scores 1)."""
    if smape_naive2 <= 0 or mase_naive2 <= 0:
        raise DataError(f"OWA divides by Naive2's sMAPE ({smape_naive2}) and MASE ({mase_naive2}); both must be > 0")
    return 0.5 * (smape / smape_naive2 + mase / mase_naive2)


def level_quantiles(levels: Sequence[float]) -> list[tuple[float, str, float]]:
    """(quantile, "lo"/"hi", level) for each interval level: lo-l is quantile (1-l/100)/2, hi-l is 1-(1-l/100)/2."""
    out = []
    for lv in levels:
        if not 0 < lv < 100:
            raise DataError(f"interval levels are percentages in (0, 100), got {lv}")
        a = (1.0 - lv / 100.0) / 2.0
        out += [(a, "lo", lv), (1.0 - a, "hi", lv)]
    return sorted(out)


def level_name(lv: float) -> str:
    """Column suffix for a level: 80 -> "80", 97.5 -> "97.5" (the form statsforecast writes)."""
    return str(int(lv)) if float(lv).is_integer() else str(lv)


def _window_metrics(y, fc: pd.DataFrame, model: str, y_train, m: int, levels) -> dict[str, float]:
    f = fc[model].to_numpy(np.float64)
    row = {"MAE": mae(y, f), "RMSE": rmse(y, f), "MASE": mase(y, f, y_train, m), "sMAPE": smape(y, f)}
    if not levels:
        return row
    cols = {(side, lv): f"{model}-{side}-{level_name(lv)}" for _, side, lv in level_quantiles(levels)}
    if not all(c in fc.columns for c in cols.values()):
        return row  # this model has no intervals: its interval metrics stay NaN
    for lv in levels:
        row[f"coverage-{level_name(lv)}"] = coverage(y, fc[cols["lo", lv]], fc[cols["hi", lv]])
    quants = level_quantiles(levels)
    qs = [q for q, _, _ in quants] + [0.5]  # the point forecast stands in for the median
    qf = np.column_stack([fc[cols[side, lv]].to_numpy(np.float64) for _, side, lv in quants] + [f])  # (h, Q)
    row["scaled_CRPS"] = scaled_crps(y, qf, qs)
    return row


def evaluate(forecasts: pd.DataFrame, train_df: pd.DataFrame, models: Sequence[str],
             season_length: int | Mapping[object, int], levels: Sequence[float] = (),
             test_df: pd.DataFrame | None = None, id_col: str = "unique_id", time_col: str = "ds",
             target_col: str = "y", cutoff_col: str = "cutoff") -> pd.DataFrame:
    """Accuracy of each model over a forecast (or cross-validation) frame, one row per model.

    forecasts: long frame with id_col, time_col, target_col (the actuals; or pass test_df with them), one column
        per model and, for `levels`, the interval columns f"{model}-lo-{level}" / f"{model}-hi-{level}".
    train_df: the history (id_col, time_col, target_col) that MASE is scaled on. Without a cutoff column it must
        end before each series' first forecast time; with one, each window uses the rows with time <= cutoff.
    season_length: the MASE lag m, one int for all series or a mapping {unique_id: m}.

    Averaging: every metric is computed per window (one series, one cutoff), then averaged over the cutoffs of
    each series, then over series, so every series weighs the same whatever its number of windows. OWA (when
    "Naive2" is among the models) follows M4 and relates the averaged sMAPE and MASE to Naive2's averages.
    Interval metrics (coverage-{level} as a 0..1 fraction, scaled_CRPS with quantiles from the levels plus the
    point forecast as the median) are NaN for a model that has no interval columns.

    Returns columns: model, MAE, RMSE, MASE, sMAPE, [coverage-{level}..., scaled_CRPS], [OWA].
    """
    models = list(models)
    levels = list(levels)
    if not models:
        raise DataError("evaluate needs at least one model column name")
    if test_df is not None:
        require_columns(test_df, [id_col, time_col, target_col], "test_df", LONG)
        forecasts = forecasts.drop(columns=[target_col], errors="ignore").merge(
            test_df[[id_col, time_col, target_col]], on=[id_col, time_col], how="left")
    require_columns(forecasts, [id_col, time_col, target_col] + models, "forecasts", LONG)
    require_columns(train_df, [id_col, time_col, target_col], "train_df", LONG)
    level_quantiles(levels)  # validates the levels
    used = [target_col] + [c for c in forecasts.columns if c in models or any(c.startswith(f"{m}-") for m in models)]
    bad = forecasts[used].isna().any()
    if bad.any():
        raise DataError(f"forecasts has missing values in {list(bad[bad].index)}; the actuals must cover every "
                        "forecast time (check the test_df / horizon) and every model must forecast every step")

    has_cutoff = cutoff_col in forecasts.columns
    train = {k: g.sort_values(time_col) for k, g in train_df.groupby(id_col, sort=False)}
    keys = [id_col, cutoff_col] if has_cutoff else [id_col]
    rows = []
    for key, win in forecasts.groupby(keys, sort=True):
        uid = key[0]
        win = win.sort_values(time_col)
        if uid not in train:
            raise DataError(f"series {uid!r} is in the forecasts but not in train_df; MASE needs its history")
        hist = train[uid]
        if has_cutoff:
            hist = hist[hist[time_col] <= key[1]]
        elif (hist[time_col] >= win[time_col].iloc[0]).any():
            raise DataError(f"train_df for series {uid!r} reaches into the forecast horizon; pass only the training "
                            f"part, or add a {cutoff_col!r} column so each window is scaled on its own past")
        m = season_length[uid] if isinstance(season_length, Mapping) else season_length
        y = win[target_col].to_numpy(np.float64)
        y_train = hist[target_col].to_numpy(np.float64)
        try:
            for model in models:
                rows.append({"model": model, id_col: uid,
                             **_window_metrics(y, win, model, y_train, int(m), levels)})
        except DataError as e:
            raise DataError(f"series {uid!r}: {e}") from None

    per_window = pd.DataFrame(rows)
    metric_cols = ["MAE", "RMSE", "MASE", "sMAPE"]
    if levels:
        metric_cols += [f"coverage-{level_name(lv)}" for lv in levels] + ["scaled_CRPS"]
    per_window = per_window.reindex(columns=["model", id_col] + metric_cols)
    per_series = per_window.groupby(["model", id_col], sort=False)[metric_cols].mean()
    out = per_series.groupby(level="model", sort=False).mean().reindex(models)
    if "Naive2" in models:
        ref = out.loc["Naive2"]
        out["OWA"] = [owa(r.sMAPE, r.MASE, ref.sMAPE, ref.MASE) for r in out.itertuples()]
    return out.reset_index().rename(columns={"index": "model"})
