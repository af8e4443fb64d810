"""Forecast plots as PNG files: the history, each model's forecast with shaded prediction intervals and the
actuals where known; and backtests, every cutoff's forecast drawn over the history.

Frames are in the long format Forecaster, the baselines and ``evaluate`` share: id, time and target columns,
one point column per model and, for an interval level l, the band f"{model}-lo-{l}" .. f"{model}-hi-{l}".
Wider bands are drawn lighter, so that a 95% band stays readable around the 80% band inside it. A model with
no interval columns at all (e.g. trained with loss='mse') is drawn as a line only, as ``evaluate`` leaves its
interval metrics empty; a model with some interval columns must have all of them, so a mistyped level is an
error rather than a missing band.

Figures use matplotlib's Agg canvas directly: no display and no global backend switch.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rnnzoo.errors import ConfigError, DataError
from rnnzoo.forecast.data import require_columns
from rnnzoo.forecast.metrics import level_name

HISTORY_COLOR = "0.15"
BAND_ALPHA = (0.12, 0.32)  # widest band, narrowest band; levels in between are spaced evenly


def plot_forecasts(history_df: pd.DataFrame, forecasts_df: pd.DataFrame, models: str | Sequence[str],
                   levels: Sequence[float] = (), path: str | Path = "forecasts.png", *,
                   max_series: int | None = None, grid: bool = False, history_steps: int | None = None,
                   title: str = "", id_col: str = "unique_id", time_col: str = "ds", target_col: str = "y",
                   ) -> list[Path]:
    """Plot each series' history and the models' forecasts; return the PNG paths written.

    grid=True draws every series in one figure at ``path``. Otherwise each series gets its own figure: ``path``
    itself when there is one series, else f"{stem}-{series id}{suffix}" beside it (the id reduced to letters,
    digits, '.', '_' and '-'). ``max_series`` keeps the first series in order of appearance in forecasts_df;
    ``history_steps`` keeps each history's last steps. Actuals are drawn when forecasts_df has target_col.
    forecasts_df holds one forecast per series (for a cross-validation frame use plot_backtest).
    """
    models, levels = _check_options(models, levels)
    require_columns(history_df, [id_col, time_col, target_col], "history_df")
    require_columns(forecasts_df, [id_col, time_col], "forecasts_df")
    banded = _check_models(forecasts_df, models, levels, (id_col, time_col, target_col, "cutoff"))
    if "cutoff" in forecasts_df.columns and (forecasts_df.groupby(id_col)["cutoff"].nunique() > 1).any():
        raise DataError("forecasts_df holds several cutoffs per series (a cross-validation frame); draw it with "
                        "plot_backtest")
    ids = _series_ids(forecasts_df, id_col, max_series)
    history = {uid: g.sort_values(time_col) for uid, g in history_df.groupby(id_col, sort=False)}
    forecasts = {uid: g.sort_values(time_col) for uid, g in forecasts_df.groupby(id_col, sort=False)}
    has_actuals = target_col in forecasts_df.columns

    def draw(ax, uid) -> None:
        past = history.get(uid)
        if past is not None:
            past = past if history_steps is None else past.tail(history_steps)
            ax.plot(past[time_col].to_numpy(), past[target_col].to_numpy(), color=HISTORY_COLOR, lw=1.2,
                    label="history")
        future = forecasts[uid]
        for i, model in enumerate(models):
            _draw_model(ax, future, time_col, model, levels if model in banded else [], f"C{i}")
        if has_actuals:
            ax.plot(future[time_col].to_numpy(), future[target_col].to_numpy(), "o", color=HISTORY_COLOR, ms=3,
                    label="actual")
        ax.set_title(str(uid), fontsize="medium")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_int("history_steps", history_steps)
    if grid or len(ids) == 1:
        fig, axes = _figure(len(ids))
        for ax, uid in zip(axes, ids):
            draw(ax, uid)
        return [_save(fig, axes, path, title)]
    written, used = [], set()
    for uid in ids:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(uid))
        if name in used:  # two ids that reduce to one file name: keep both files apart
            name = f"{name}-{len(written)}"
        used.add(name)
        fig, axes = _figure(1)
        draw(axes[0], uid)
        written.append(_save(fig, axes, path.with_name(f"{path.stem}-{name}{path.suffix or '.png'}"), title))
    return written


def plot_backtest(df: pd.DataFrame, cv_df: pd.DataFrame, models: str | Sequence[str],
                  path: str | Path = "backtest.png", *, levels: Sequence[float] = (), max_series: int | None = None,
                  history_steps: int | None = None, title: str = "", id_col: str = "unique_id",
                  time_col: str = "ds", target_col: str = "y", cutoff_col: str = "cutoff") -> Path:
    """Plot a cross-validation frame: each series' history (``df``, the data the backtest ran on), every
    cutoff's forecast of every model (one colour per model) and a dashed line at each cutoff, one panel per
    series in one PNG at ``path``. ``history_steps`` keeps that many steps up to the earliest cutoff (and
    everything after it); ``max_series`` the first series in order of appearance in cv_df."""
    models, levels = _check_options(models, levels)
    require_columns(df, [id_col, time_col, target_col], "df")
    require_columns(cv_df, [id_col, time_col, cutoff_col], "cv_df")
    banded = _check_models(cv_df, models, levels, (id_col, time_col, target_col, cutoff_col))
    _check_int("history_steps", history_steps)
    ids = _series_ids(cv_df, id_col, max_series)
    history = {uid: g.sort_values(time_col) for uid, g in df.groupby(id_col, sort=False)}
    windows = {uid: g for uid, g in cv_df.groupby(id_col, sort=False)}

    fig, axes = _figure(len(ids))
    for ax, uid in zip(axes, ids):
        cv = windows[uid]
        cutoffs = np.sort(cv[cutoff_col].unique())
        past = history.get(uid)
        if past is not None:
            if history_steps is not None:
                before = past[past[time_col] <= cutoffs[0]].tail(history_steps)
                past = pd.concat([before, past[past[time_col] > cutoffs[0]]])
            ax.plot(past[time_col].to_numpy(), past[target_col].to_numpy(), color=HISTORY_COLOR, lw=1.2,
                    label="history")
        for k, cutoff in enumerate(cutoffs):
            window = cv[cv[cutoff_col] == cutoff].sort_values(time_col)
            for i, model in enumerate(models):
                _draw_model(ax, window, time_col, model, levels if model in banded else [], f"C{i}", label=k == 0)
            ax.axvline(cutoff, color="0.5", ls="--", lw=0.8, label="cutoff" if k == 0 else None)
        ax.set_title(str(uid), fontsize="medium")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, axes, path, title)


# ------------------------------------------------------------------------------------------------ helpers

def _draw_model(ax, frame: pd.DataFrame, time_col: str, model: str, levels: list[float], color: str,
                label: bool = True) -> None:
    """The model's point forecast and its bands, widest (lightest) first so narrower ones sit on top."""
    t = frame[time_col].to_numpy()
    widest_first = sorted(levels, reverse=True)
    for k, lv in enumerate(widest_first):
        share = k / (len(widest_first) - 1) if len(widest_first) > 1 else 0.0
        alpha = BAND_ALPHA[0] + share * (BAND_ALPHA[1] - BAND_ALPHA[0])
        name = level_name(lv)
        ax.fill_between(t, frame[f"{model}-lo-{name}"].to_numpy(np.float64),
                        frame[f"{model}-hi-{name}"].to_numpy(np.float64), color=color, alpha=alpha, lw=0,
                        label=f"{model} {name}%" if label else None)
    ax.plot(t, frame[model].to_numpy(np.float64), color=color, lw=1.6, label=model if label else None)


def _figure(n: int):
    """A figure with n axes in a grid of up to 3 columns; returns (figure, the n axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 1 if n == 1 else 2 if n <= 4 else 3
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(7.5 if cols == 1 else 5.5 * cols, 4.2 if rows == 1 else 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[n:]:
        ax.set_visible(False)
    return fig, list(grid[:n])


def _save(fig, axes, path: Path, title: str) -> Path:
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize="small")
    # one legend for all panels, beside them: a model keeps its colour in every panel
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.autofmt_xdate()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _check_options(models, levels) -> tuple[list[str], list[float]]:
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ConfigError("models is empty; name at least one model column to plot")
    levels = list(levels)
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, (int, float, np.integer, np.floating)) or not 0 < lv < 100:
            raise ConfigError(f"interval levels are percentages in (0, 100), e.g. [80, 95]; got {lv!r}")
    return models, levels


def _check_int(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ConfigError(f"{name} must be None or an int >= 1, got {value!r}")

def _check_models(frame: pd.DataFrame, models: list[str], levels: list[float], reserved) -> set[str]:
    """Check every model has a point column, and all or none of its interval columns; return those with bands."""
    present = [c for c in frame.columns if c not in reserved and "-lo-" not in c and "-hi-" not in c]
    unknown = [m for m in models if m not in frame.columns or m in reserved]
    if unknown:
        raise DataError(f"no forecast column for model(s) {', '.join(map(repr, unknown))}; the frame has "
                        f"{', '.join(map(repr, present)) or 'none'}")
    banded = set()
    for m in models:
        if not levels or not any(c.startswith((f"{m}-lo-", f"{m}-hi-")) for c in frame.columns):
            continue
        lacking = [c for lv in levels for side in ("lo", "hi")
                   if (c := f"{m}-{side}-{level_name(lv)}") not in frame.columns]
        if lacking:
            raise DataError(f"model {m!r} has interval columns but not {', '.join(map(repr, lacking))}; pass "
                            "levels the forecasts were made with")
        banded.add(m)
    return banded


def _series_ids(frame: pd.DataFrame, id_col: str, max_series: int | None) -> list:
    _check_int("max_series", max_series)
    ids = list(pd.unique(frame[id_col]))
    return ids if max_series is None else ids[:max_series]
