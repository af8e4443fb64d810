"""Long-format series: checks, frequency, calendar features, scaling, and the padded panel the model reads.

The format is the one Nixtla's libraries use: one row per (series, timestamp), columns ``unique_id``, ``ds``
(datetime with a pandas frequency, or integers) and ``y``, plus covariate columns. Every check raises a
DataError that names the series and the problem.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rnnzoo.errors import ConfigError, DataError


@dataclass(frozen=True)
class Columns:
    id: str = "unique_id"
    time: str = "ds"
    target: str = "y"


def require_columns(df, need: list[str], what: str, hint: str = "") -> None:
    """A DataError unless ``df`` is a DataFrame with rows and every column in ``need``; ``hint`` ends the
    message of a missing column."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame in long format ({', '.join(need)}), got "
                        f"{type(df).__name__}")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(f"{what} lacks the column(s) {', '.join(map(repr, missing))}; it has "
                        f"{', '.join(map(repr, df.columns))}{f' ({hint})' if hint else ''}")
    if df.empty:
        raise DataError(f"{what} has no rows")


def check_long(df, cols: Columns, exog: list[str] = (), what: str = "df") -> pd.DataFrame:
    """A sorted copy of ``df`` with only the needed columns, after every check on its shape and values."""
    need = [cols.id, cols.time, cols.target, *exog]
    require_columns(df, need, what, "column names are set with id_col/time_col/target_col")
    out = df[need].copy()
    ds = out[cols.time]
    if not (pd.api.types.is_datetime64_any_dtype(ds) or pd.api.types.is_integer_dtype(ds)):
        try:
            with warnings.catch_warnings():  # pandas warns before it fails on unparseable strings
                warnings.simplefilter("ignore", UserWarning)
                out[cols.time] = pd.to_datetime(ds)
        except (ValueError, TypeError) as e:
            raise DataError(f"{what}[{cols.time!r}] must hold datetimes or integers, got {ds.dtype}: {e}") from None
    for c in [cols.target, *exog]:
        if not pd.api.types.is_numeric_dtype(out[c]) or pd.api.types.is_bool_dtype(out[c]):
            raise DataError(f"{what}[{c!r}] must be numeric, got {out[c].dtype}")
    dup = out.duplicated([cols.id, cols.time])
    if dup.any():
        first = out.loc[dup, [cols.id, cols.time]].iloc[0].tolist()
        raise DataError(f"{what} has {int(dup.sum())} duplicate ({cols.id}, {cols.time}) rows, e.g. {first}; "
                        "aggregate them first")
    out = out.sort_values([cols.id, cols.time], kind="stable").reset_index(drop=True)
    empty = out.groupby(cols.id, sort=False)[cols.target].apply(lambda s: s.notna().sum() == 0)
    if empty.any():
        raise DataError(f"series {', '.join(map(str, empty[empty].index[:5]))} have no observed {cols.target} "
                        "(all NaN); drop them")
    for c in exog:
        if out[c].isna().any():
            bad = out.loc[out[c].isna(), cols.id].iloc[0]
            raise DataError(f"covariate {c!r} has missing values (series {bad!r}); fill them first")
    return out


def infer_freq(df: pd.DataFrame, cols: Columns, freq=None):
    """The common step between timestamps: a pandas offset for datetimes, an int for integer ``ds``.

    A given ``freq`` is checked against every series; without it the step is inferred. Gaps or uneven steps
    are an error (resample first): the models read one value per step.
    """
    datetime = pd.api.types.is_datetime64_any_dtype(df[cols.time])
    if freq is not None:
        if datetime:
            try:
                freq = pd.tseries.frequencies.to_offset(freq)
            except ValueError:
                raise ConfigError(f"freq={freq!r} is not a pandas frequency (e.g. 'MS', 'D', 'h')") from None
        elif not isinstance(freq, (int, np.integer)) or isinstance(freq, bool) or freq < 1:
            raise ConfigError(f"{cols.time} holds integers, so freq must be a positive int step, got {freq!r}")
    for uid, ds in df.groupby(cols.id, sort=False)[cols.time]:
        values = ds.to_numpy()
        if len(values) < 2:
            continue
        if datetime:
            if freq is None:
                if len(values) < 3:
                    continue
                guess = pd.infer_freq(pd.DatetimeIndex(values))
                if guess is None:
                    raise DataError(f"series {uid!r} has irregular timestamps in {cols.time} (no pandas frequency "
                                    "fits); resample it to a regular grid or pass freq=")
                freq = pd.tseries.frequencies.to_offset(guess)
            expected = pd.date_range(values[0], periods=len(values), freq=freq)
            if not np.array_equal(expected.to_numpy(), values):
                raise DataError(f"series {uid!r} is not on a regular {freq.freqstr} grid in {cols.time} (gaps or "
                                "uneven steps); resample it first")
        else:
            steps = np.diff(values)
            if freq is None:
                freq = int(steps[0])
            if freq < 1 or (steps != freq).any():
                raise DataError(f"series {uid!r} has uneven integer steps in {cols.time} ({sorted(set(steps))[:5]}); "
                                "fill the gaps first")
    if freq is None:
        if datetime:
            raise DataError("every series is too short to infer its frequency; pass freq=")
        freq = 1
    return freq


def future_times(last, h: int, freq) -> np.ndarray:
    """The h timestamps after ``last``."""
    if isinstance(freq, (int, np.integer)):
        return last + freq * np.arange(1, h + 1)
    return pd.date_range(last, periods=h + 1, freq=freq)[1:].to_numpy()


# calendar attributes -> number of distinct values; each is mapped to [-0.5, 0.5] (Informer/GluonTS style)
_CALENDAR = {
    "minute": ("minute", 60), "hour": ("hour", 24), "dayofweek": ("dayofweek", 7), "day": ("day", 31),
    "dayofyear": ("dayofyear", 366), "week": ("week", 53), "month": ("month", 12),
}
_BY_UNIT = {  # finest unit of the frequency -> the attributes that vary within a coarser period
    "min": ["minute", "hour", "dayofweek", "day", "dayofyear"],
    "h": ["hour", "dayofweek", "day", "dayofyear"],
    "D": ["dayofweek", "day", "dayofyear"],
    "W": ["day", "week"],
    "M": ["month"],
    "Q": ["month"],
    "Y": [],
}


def calendar_names(freq) -> list[str]:
    if isinstance(freq, (int, np.integer)):
        return []
    name = type(freq).__name__
    unit = ("min" if name in ("Minute", "Second", "Milli", "Micro", "Nano") else
            "h" if name in ("Hour", "BusinessHour") else
            "D" if name in ("Day", "BusinessDay", "CustomBusinessDay") else
            "W" if name.startswith("Week") else
            "M" if "Month" in name else
            "Q" if "Quarter" in name else "Y")
    return _BY_UNIT[unit]


def calendar_features(times: np.ndarray, freq) -> np.ndarray:
    """(n, k) float32: the calendar attributes of ``freq`` scaled to [-0.5, 0.5]; (n, 0) for integer ds."""
    names = calendar_names(freq)
    if not names:
        return np.zeros((len(times), 0), np.float32)
    idx = pd.DatetimeIndex(times)
    cols = []
    for n in names:
        attr, count = _CALENDAR[n]
        value = idx.isocalendar().week.to_numpy() if attr == "week" else getattr(idx, attr)
        base = 0 if attr in ("minute", "hour", "dayofweek") else 1
        cols.append((np.asarray(value, np.float64) - base) / max(count - 1, 1) - 0.5)
    return np.stack(cols, -1).astype(np.float32)


SCALERS = ("standard", "robust", "mean_abs", None)


def scale_stats(y: torch.Tensor, mask: torch.Tensor, kind: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """loc, scale (B, 1) of y (B, T) over the observed entries (mask) of each row.

    standard: mean and standard deviation; robust: median and interquartile range; mean_abs: 0 and mean |y|
    (DeepAR's scaling, which keeps counts non-negative). A scale below 1e-6 (a constant window) becomes 1.
    """
    B = y.shape[0]
    if kind is None:
        return y.new_zeros(B, 1), y.new_ones(B, 1)
    m = mask.to(y.dtype)
    n = m.sum(1, keepdim=True).clamp_min(1)
    if kind == "standard":
        loc = (y * m).sum(1, keepdim=True) / n
        scale = (((y - loc) * m) ** 2).sum(1, keepdim=True).div(n).sqrt()
    elif kind == "mean_abs":
        loc = y.new_zeros(B, 1)
        scale = (y.abs() * m).sum(1, keepdim=True) / n
    elif kind == "robust":
        nan = torch.where(mask, y, torch.full_like(y, float("nan")))
        q = torch.nanquantile(nan, torch.tensor([0.25, 0.5, 0.75], dtype=y.dtype), dim=1).T  # (B, 3)
        q = torch.nan_to_num(q)
        loc, scale = q[:, 1:2], q[:, 2:3] - q[:, 0:1]
    else:
        raise ConfigError(f"unknown scaler {kind!r}; choose one of {SCALERS}")
    return loc, torch.where(scale < 1e-6, torch.ones_like(scale), scale)


@dataclass
class Panel:
    """Series left-padded to a common length: y (S, N) with NaN for padding and missing values, the observed
    mask, future-known features (S, N, F: covariates, then calendar), past-only covariates (S, N, P), statics
    (S, K), and each series' real length and timestamps."""

    ids: list
    y: np.ndarray
    futr: np.ndarray
    hist: np.ndarray
    static: np.ndarray
    lengths: np.ndarray
    times: list

    @property
    def observed(self) -> np.ndarray:
        return ~np.isnan(self.y)


def build_panel(df: pd.DataFrame, cols: Columns, freq, futr_exog: list[str], hist_exog: list[str],
                static: dict | None, min_length: int) -> Panel:
    """Pad every series on the left to at least ``min_length`` steps (with a warning: padding is masked)."""
    groups = list(df.groupby(cols.id, sort=False))
    N = max(min_length, max(len(g) for _, g in groups))
    S, Fc, P = len(groups), len(futr_exog) + len(calendar_names(freq)), len(hist_exog)
    y = np.full((S, N), np.nan, np.float32)
    futr = np.zeros((S, N, Fc), np.float32)
    hist = np.zeros((S, N, P), np.float32)
    lengths = np.zeros(S, np.int64)
    times, short = [], []
    for i, (uid, g) in enumerate(groups):
        n = len(g)
        if n < min_length:
            short.append(uid)
        t = g[cols.time].to_numpy()
        y[i, N - n:] = g[cols.target].to_numpy(np.float32)
        futr[i, N - n:] = np.concatenate([g[futr_exog].to_numpy(np.float32), calendar_features(t, freq)], 1)
        hist[i, N - n:] = g[hist_exog].to_numpy(np.float32)
        lengths[i], times = n, times + [t]
    if short:
        warnings.warn(f"{len(short)} series are shorter than the {min_length} steps a window needs (e.g. "
                      f"{short[0]!r}); they are padded on the left and the padding is masked", stacklevel=3)
    stat = np.zeros((S, 0), np.float32) if static is None else np.stack([static[uid] for uid, _ in groups])
    return Panel([uid for uid, _ in groups], y, futr, hist, stat.astype(np.float32), lengths, times)


def warn_nan(df: pd.DataFrame, cols: Columns) -> None:
    n = int(df[cols.target].isna().sum())
    if n:
        warnings.warn(f"{n} missing {cols.target} values (NaN) are masked in the loss and fed to the model as "
                      "missing; forecasts stay finite", stacklevel=3)
