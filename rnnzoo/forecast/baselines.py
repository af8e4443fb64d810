"""Classical forecasting baselines: statsforecast's AutoARIMA, AutoETS and SeasonalNaive, plus the M4 Naive2.

Frames are in Nixtla long format: unique_id, ds, y in; unique_id, ds, one column per model and interval columns
f"{model}-lo-{level}" / f"{model}-hi-{level}" out (cross-validation adds cutoff and y).

Naive2 (Makridakis, Spiliotis & Assimakopoulos 2020, "The M4 Competition: 100,000 time series and 61
forecasting methods", IJF 36(1); M4 competitors' guide) is the naive forecast of the seasonally adjusted series:

1. Seasonality test at lag m (90% two-sided; n = series length, r_k the lag-k sample autocorrelation):
       seasonal  <=>  m > 1,  n >= 3m  and  |r_m| > 1.645 * sqrt((1 + 2 * sum_{k=1}^{m-1} r_k^2) / n)
2. If seasonal, classical multiplicative decomposition: a centred moving average of order m (2 x m when m is
   even) estimates the trend-cycle; the ratios y_t / MA_t averaged per season phase and normalised to mean 1
   are the seasonal indices s_j. Otherwise s_j = 1. Multiplicative indices need a positive series, so a series
   with any y_t <= 0 is treated as non-seasonal.
3. a_t = y_t / s_{t mod m};  forecast  y_{n+k} = a_n * s_{(n+k) mod m}  (phases counted from the series start).

Naive2 prediction intervals (our choice; M4 scored Naive2 on points only): the adjusted series is taken as a
random walk, so with sigma = sqrt(mean_t (a_t - a_{t-1})^2) (the naive model's residual standard deviation,
as statsforecast's Naive) the level-l interval is  (a_n -/+ z_l * sigma * sqrt(k)) * s_{(n+k) mod m},
z_l the standard normal (1 + l/100)/2 quantile. On a non-seasonal series this is exactly statsforecast's Naive.
"""

import warnings
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from rnnzoo.errors import ConfigError, DataError, UnknownNameError
from rnnzoo.forecast.data import require_columns
from rnnzoo.forecast.metrics import level_name

STATSFORECAST_MODELS = ("AutoARIMA", "AutoETS", "SeasonalNaive")
MODELS = STATSFORECAST_MODELS + ("Naive2",)
DEFAULT_MODELS = ("AutoARIMA", "AutoETS", "SeasonalNaive", "Naive2")


def min_length(model: str, season_length: int) -> int:
    """Shortest training series a baseline fits with finite intervals (measured on statsforecast 2.1: AutoETS
    refuses fewer than 7 points, AutoARIMA gives infinite intervals below 4, SeasonalNaive needs one full season
    plus one residual; Naive2 needs one residual)."""
    return {"AutoARIMA": 4, "AutoETS": 7, "SeasonalNaive": season_length + 1, "Naive2": 2}[model]


# ---------------------------------------------------------------------------------------------------- Naive2

def acf(y, k: int) -> float:
    """Lag-k sample autocorrelation: sum_{t>k} (y_t - ybar)(y_{t-k} - ybar) / sum_t (y_t - ybar)^2."""
    y = np.asarray(y, dtype=np.float64)
    d = y - y.mean()
    den = float(np.dot(d, d))
    if den == 0:
        return 0.0  # a constant series has no autocorrelation to speak of
    return float(np.dot(d[k:], d[: d.size - k]) / den)


def seasonality_test(y, season_length: int) -> bool:
    """M4's 90% test for seasonality at lag m (see the module docstring); False when m <= 1 or n < 3m."""
    y = np.asarray(y, dtype=np.float64)
    m = season_length
    if m <= 1 or y.size < 3 * m:
        return False
    r = [acf(y, k) for k in range(1, m + 1)]
    limit = 1.645 * np.sqrt((1.0 + 2.0 * sum(rk**2 for rk in r[:-1])) / y.size)
    return abs(r[-1]) > limit


def centred_moving_average(y, m: int) -> np.ndarray:
    """Centred MA of order m (2 x m for even m), NaN where the window runs past either end."""
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(m) / m if m % 2 else np.r_[0.5, np.ones(m - 1), 0.5] / m  # symmetric, so convolve == correlate
    half = w.size // 2
    out = np.full(y.size, np.nan)
    out[half: y.size - half] = np.convolve(y, w, mode="valid")
    return out


def seasonal_indices(y, season_length: int) -> np.ndarray:
    """Multiplicative seasonal indices s_0..s_{m-1} (mean 1), phase j = position mod m from the series start.

    All ones when the series fails the seasonality test or is not strictly positive.
    """
    y = np.asarray(y, dtype=np.float64)
    m = season_length
    if not seasonality_test(y, m) or (y <= 0).any():
        return np.ones(max(m, 1))
    ratio = y / centred_moving_average(y, m)  # (n,), NaN at the ends
    pad = (-y.size) % m
    si = np.nanmean(np.r_[ratio, np.full(pad, np.nan)].reshape(-1, m), axis=0)  # (m,); n >= 3m fills every phase
    return si / si.mean()


def naive2(y, h: int, season_length: int, levels: Sequence[float] = ()) -> dict[str, np.ndarray]:
    """Naive2 forecast of one series: {"mean": (h,), "lo-{l}": (h,), "hi-{l}": (h,) for l in levels}."""
    y = np.asarray(y, dtype=np.float64)
    if y.size < 2:
        raise DataError(f"Naive2 needs at least 2 values (one naive residual for its intervals), got {y.size}")
    m = max(season_length, 1)
    si = seasonal_indices(y, m)  # (m,)
    adjusted = y / si[np.arange(y.size) % m]  # (n,)
    future_si = si[np.arange(y.size, y.size + h) % m]  # (h,)
    out = {"mean": np.full(h, adjusted[-1]) * future_si}
    sigma = np.sqrt(np.mean(np.diff(adjusted) ** 2))
    spread = sigma * np.sqrt(np.arange(1, h + 1))  # (h,) random-walk variance grows linearly in k
    for lv in levels:
        z = NormalDist().inv_cdf(0.5 + lv / 200.0)
        out[f"lo-{level_name(lv)}"] = (adjusted[-1] - z * spread) * future_si
        out[f"hi-{level_name(lv)}"] = (adjusted[-1] + z * spread) * future_si
    return out


# ------------------------------------------------------------------------------------------------ frames

def baseline_forecasts(train_df: pd.DataFrame, h: int, freq, season_length: int,
                       models: Sequence[str] = DEFAULT_MODELS, levels: Sequence[float] = (80, 95)) -> pd.DataFrame:
    """Fit each baseline on every series of train_df and forecast h steps past its end.

    freq: a pandas offset alias ("MS", "ME", "YS", "QS", ...) for datetime ds, or an int step for integer ds.
    Returns unique_id, ds, then per model its point column and interval columns (lo levels high to low, then hi
    levels low to high, as statsforecast orders them), sorted by unique_id and ds.
    """
    models, levels = _check_options(h, season_length, models, levels)
    df = _check_frame(train_df, freq)
    _check_lengths(df, {m: min_length(m, season_length) for m in models}, "training series")

    rows = []
    for uid, g in df.groupby("unique_id", sort=False):
        ds = _future(g["ds"].iloc[-1], h, freq)
        block = {"unique_id": np.repeat(uid, h), "ds": ds}
        if "Naive2" in models:
            block |= {_col("Naive2", k): v for k, v in naive2(g["y"].to_numpy(), h, season_length, levels).items()}
        rows.append(pd.DataFrame(block))
    out = pd.concat(rows, ignore_index=True)

    stats = [m for m in models if m in STATSFORECAST_MODELS]
    if stats:
        sf = _statsforecast(stats, freq, season_length)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # statsforecast's harmless overflow/0-division notes
            fc = sf.forecast(df=df, h=h, level=levels or None)
        out = _join(out, fc, ["unique_id", "ds"], stats)
    return out[["unique_id", "ds"] + _model_columns(models, levels)]


def baseline_cross_validation(df: pd.DataFrame, h: int, n_windows: int, step_size: int, freq, season_length: int,
                              models: Sequence[str] = DEFAULT_MODELS,
                              levels: Sequence[float] = (80, 95)) -> pd.DataFrame:
    """Rolling-origin evaluation of the baselines, refitting each model on each window's training part.

    Windows as statsforecast's cross_validation: for a series of length n, window w = 0..n_windows-1 trains on
    the first n - h - (n_windows - 1 - w) * step_size values and forecasts the next h, so the last window ends at
    the series end and consecutive cutoffs are step_size apart. cutoff is the last training ds.
    Returns unique_id, ds, cutoff, y and the model/interval columns, sorted by unique_id, cutoff, ds.
    """
    models, levels = _check_options(h, season_length, models, levels)
    for name, v in (("n_windows", n_windows), ("step_size", step_size)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
    df = _check_frame(df, freq)
    span = h + (n_windows - 1) * step_size  # values never in the first window's training part
    _check_lengths(df, {m: min_length(m, season_length) + span for m in models},
                   f"series (h={h}, n_windows={n_windows}, step_size={step_size} hold out {span} values)")

    rows = []
    for uid, g in df.groupby("unique_id", sort=False):
        y, ds = g["y"].to_numpy(), g["ds"].to_numpy()
        for w in range(n_windows):
            end = y.size - h - (n_windows - 1 - w) * step_size  # training part is y[:end]
            block = {"unique_id": np.repeat(uid, h), "ds": ds[end: end + h], "cutoff": np.repeat(ds[end - 1], h),
                     "y": y[end: end + h]}
            if "Naive2" in models:
                block |= {_col("Naive2", k): v for k, v in naive2(y[:end], h, season_length, levels).items()}
            rows.append(pd.DataFrame(block))
    out = pd.concat(rows, ignore_index=True)

    stats = [m for m in models if m in STATSFORECAST_MODELS]
    if stats:
        sf = _statsforecast(stats, freq, season_length)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cv = sf.cross_validation(df=df, h=h, n_windows=n_windows, step_size=step_size, level=levels or None,
                                     refit=True)
        out = _join(out, cv.drop(columns="y"), ["unique_id", "ds", "cutoff"], stats)
    out = out.sort_values(["unique_id", "cutoff", "ds"], kind="stable", ignore_index=True)
    return out[["unique_id", "ds", "cutoff", "y"] + _model_columns(models, levels)]


# ------------------------------------------------------------------------------------------------ helpers

def _col(model: str, key: str) -> str:
    return model if key == "mean" else f"{model}-{key}"


def _model_columns(models: Sequence[str], levels: Sequence[float]) -> list[str]:
    cols = []
    for m in models:
        cols.append(m)
        cols += [f"{m}-lo-{level_name(lv)}" for lv in sorted(levels, reverse=True)]
        cols += [f"{m}-hi-{level_name(lv)}" for lv in sorted(levels)]
    return cols


def _future(last, h: int, freq) -> np.ndarray:
    """The h times after `last` on the freq grid."""
    if isinstance(freq, int | np.integer):
        return last + freq * np.arange(1, h + 1)
    return pd.date_range(last, periods=h + 1, freq=freq)[1:].to_numpy()


def _statsforecast(models: Sequence[str], freq, season_length: int):
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive

    make = {"AutoARIMA": AutoARIMA, "AutoETS": AutoETS, "SeasonalNaive": SeasonalNaive}
    return StatsForecast(models=[make[m](season_length=season_length) for m in models], freq=freq, n_jobs=1)


def _join(ours: pd.DataFrame, theirs: pd.DataFrame, on: list[str], models: Sequence[str]) -> pd.DataFrame:
    """Attach statsforecast's columns to our rows; a miss means its time grid differs from ours."""
    merged = ours.merge(theirs, on=on, how="left", validate="one_to_one")
    if merged[list(models)].isna().any().any():
        raise DataError(f"statsforecast's forecast times do not line up with the series' ds at this freq for "
                        f"{list(models)}; check that freq matches the ds spacing and anchoring (e.g. 'MS' for "
                        "month starts, 'ME' for month ends)")
    return merged


def _check_options(h, season_length, models, levels) -> tuple[list[str], list[float]]:
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or h <= 0:
        raise DataError(f"horizon h must be a positive int, got {h!r}")
    if isinstance(season_length, bool) or not isinstance(season_length, int | np.integer) or season_length < 1:
        raise ConfigError(f"season_length must be an int >= 1 (1 for no seasonality), got {season_length!r}")
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ConfigError(f"models is empty; choose from {list(MODELS)}")
    for m in models:
        if m not in MODELS:
            raise UnknownNameError(f"unknown baseline {m!r}; choose from {list(MODELS)}")
    if len(set(models)) != len(models):
        raise ConfigError(f"models lists a baseline twice: {models}")
    levels = list(levels)
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, int | float | np.integer | np.floating) or not 0 < lv < 100:
            raise ConfigError(f"interval levels are percentages in (0, 100), got {lv!r}")
    return models, levels


def _check_frame(df: pd.DataFrame, freq) -> pd.DataFrame:
    """Validate a long frame and return its unique_id, ds, y columns sorted by unique_id and ds."""
    require_columns(df, ["unique_id", "ds", "y"], "df", "rename them to the long format unique_id, ds, y")
    df = df[["unique_id", "ds", "y"]]
    dup = df.duplicated(["unique_id", "ds"])
    if dup.any():
        first = df[dup].iloc[0]
        raise DataError(f"{int(dup.sum())} duplicate (unique_id, ds) rows, e.g. ({first.unique_id!r}, {first.ds}); "
                        "aggregate or drop them so each series has one value per time")
    if not pd.api.types.is_numeric_dtype(df["y"]) or df["y"].isna().any() or not np.isfinite(df["y"]).all():
        raise DataError("column y must be numeric with no missing or infinite values; fill or drop the gaps first")
    df = df.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    integer_ds = pd.api.types.is_integer_dtype(df["ds"])
    if integer_ds != isinstance(freq, int | np.integer) or not (integer_ds or pd.api.types.is_datetime64_any_dtype(
            df["ds"])):
        raise DataError(f"ds has dtype {df['ds'].dtype} but freq is {freq!r}: use integer ds with an int freq, or "
                        "datetime ds with a pandas offset alias such as 'MS'")
    for uid, g in df.groupby("unique_id", sort=False):
        ds = g["ds"].to_numpy()
        if integer_ds:
            regular = bool((np.diff(ds) == freq).all())
        else:
            try:
                grid = pd.date_range(ds[0], periods=ds.size, freq=freq)
            except ValueError as e:
                raise DataError(f"freq {freq!r} is not a pandas offset alias ({e}); use e.g. 'MS', 'YS', 'QS'") \
                    from None
            regular = bool((grid.to_numpy() == ds).all())
        if not regular:
            raise DataError(f"series {uid!r} is not regular at freq {freq!r} (a gap, or ds not anchored like the "
                            "freq); fill the missing times or pass the matching freq")
    return df


def _check_lengths(df: pd.DataFrame, need: dict[str, int], what: str) -> None:
    sizes = df.groupby("unique_id", sort=False).size()
    model, n = max(need.items(), key=lambda kv: kv[1])
    short = sizes[sizes < n]
    if len(short):
        raise DataError(f"{len(short)} {what} too short for {model}, which needs {n} values: e.g. "
                        f"{short.index[0]!r} has {short.iloc[0]}; drop short series, lower h/n_windows or the models")
