"""``rnnzoo forecast``: backtest rnnzoo mixers beside the classical baselines on one data set, then forecast.

    rnnzoo forecast                                    # AirPassengers: lstm, gru vs AutoARIMA, AutoETS, ...
    rnnzoo forecast --data sales.csv --id-col store --time-col week --target-col units --h 8

1. Rolling-origin cross-validation: --windows forecasts of h steps, --step-size apart, the last one ending at
   each series' end. Every model is refitted on the data before each cutoff (Forecaster.cross_validation with
   refit=True; baseline_cross_validation), so all models forecast the same windows from the same histories.
2. Accuracy over those windows (rnnzoo.forecast.metrics.evaluate), the best model of each column marked *.
3. Every model, refitted on all the data, forecasts the h steps after its end.

Writes to --out: forecasts.csv (the cross-validation rows of every model), metrics.csv, backtest.png,
future.csv and forecast.png (the forecasts of step 3).

A --data file without --freq / --season-length / --h: the frequency is inferred from its timestamps, and the
season length and horizon are the M4 competition's for that frequency (Makridakis et al. 2020, M4 competitors'
guide): yearly 1 / 6, quarterly 4 / 8, monthly 12 / 18, weekly 1 / 13, daily 1 / 14, hourly 24 / 48.
"""
from __future__ import annotations

import time
from pathlib import Path

from rnnzoo.errors import ConfigError, DataError, UnknownNameError
from rnnzoo.mixers import available_mixers
from rnnzoo.models.distributions import HEADS

DEFAULT_MIXERS = "lstm,gru"
DEFAULT_BASELINES = "AutoARIMA,AutoETS,SeasonalNaive,Naive2"
# offset class name fragment -> (season length, horizon), from the M4 competitors' guide
M4_DEFAULTS = {"Hour": ("hourly", 24, 48), "Day": ("daily", 1, 14), "Week": ("weekly", 1, 13),
               "Month": ("monthly", 12, 18), "Quarter": ("quarterly", 4, 8), "Year": ("yearly", 1, 6)}
LOWER_IS_BETTER = ("MAE", "RMSE", "MASE", "sMAPE", "scaled_CRPS", "OWA")


def add_parser(commands) -> None:
    p = commands.add_parser("forecast", help="backtest mixers against AutoARIMA/AutoETS/naive baselines, forecast")
    p.add_argument("--data", help="long-format .csv or .parquet file (default: AirPassengers from statsforecast)")
    p.add_argument("--id-col", help="series id column (default unique_id; a file without it is one series)")
    p.add_argument("--time-col", default="ds", help="timestamp column: datetimes or integers (default ds)")
    p.add_argument("--target-col", default="y", help="value column (default y)")
    p.add_argument("--freq", help="pandas frequency such as MS or ME, or an integer step (default: inferred)")
    p.add_argument("--season-length", type=int, help="observations per season, 1 for none (default: by freq)")
    p.add_argument("--h", type=int, help="forecast horizon in steps (default: by freq; 12 for AirPassengers)")
    p.add_argument("--windows", type=int, default=3, help="cross-validation windows (default 3)")
    p.add_argument("--step-size", type=int, help="steps between cutoffs (default h)")
    p.add_argument("--mixers", default=DEFAULT_MIXERS, help=f"comma-separated, or none (default {DEFAULT_MIXERS})")
    p.add_argument("--baselines", default=DEFAULT_BASELINES,
                   help=f"comma-separated, or none (default {DEFAULT_BASELINES})")
    p.add_argument("--input-size", type=int, help="context steps each mixer reads (default 2 h)")
    p.add_argument("--max-steps", type=int, default=300, help="training updates per mixer fit (default 300)")
    p.add_argument("--d-model", type=int, default=64, help="mixer width (default 64)")
    p.add_argument("--loss", default="normal", help=f"mixer likelihood: {', '.join(HEADS)} (default normal)")
    p.add_argument("--level", type=float, nargs="*", default=[80, 95],
                   help="prediction-interval coverages in percent (default 80 95; none: --level)")
    p.add_argument("--plot-series", type=int, default=6, help="series drawn in the plots (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/forecast", help="output directory (default runs/forecast)")
    p.set_defaults(run=run)


def run(args) -> int:
    # imported here so that the other commands do not load pandas, statsforecast and matplotlib
    from rnnzoo.forecast.baselines import MODELS as BASELINES
    from rnnzoo.forecast.metrics import evaluate
    from rnnzoo.forecast.plots import plot_backtest, plot_forecasts

    mixers = parse_names(args.mixers, "--mixers", available_mixers(), "mixer")
    baselines = parse_names(args.baselines, "--baselines", BASELINES, "baseline")
    if not mixers and not baselines:
        raise ConfigError("--mixers and --baselines are both none; name at least one model")
    if args.loss not in HEADS:
        raise ConfigError(f"unknown --loss {args.loss!r}; choose one of {', '.join(HEADS)}")
    for flag in ("h", "windows", "step_size", "input_size", "max_steps", "d_model", "season_length", "plot_series"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    levels = sorted(set(args.level))
    for lv in levels:
        if not 0 < lv < 100:
            raise ConfigError(f"--level values are interval coverages in (0, 100), e.g. 80 95; got {lv:g}")

    df, name, freq, season_length, h = load_data(args)
    step_size = args.step_size or h
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"data: {name}: {df['unique_id'].nunique()} series, {len(df)} rows, freq {freq}, season length "
          f"{season_length}, h {h}; {windows(args.windows)} {step_size} steps apart")
    options = dict(h=h, input_size=args.input_size, loss=args.loss, freq=freq, max_steps=args.max_steps,
                   d_model=args.d_model, seed=args.seed, level=[] if args.loss == "mse" else levels,
                   # counts must not be shifted, so the count likelihood scales by the mean absolute value only
                   scaler="mean_abs" if args.loss == "negative_binomial" else "standard")

    cv = backtest(df, mixers, baselines, options, levels, args.windows, step_size, season_length)
    models = mixers + baselines
    metrics = evaluate(cv, df, models, season_length, levels)
    future = forecast_future(df, mixers, baselines, options, levels, season_length)
    cv.to_csv(out / "forecasts.csv", index=False)
    metrics.to_csv(out / "metrics.csv", index=False)
    future.to_csv(out / "future.csv", index=False)
    plots = [plot_backtest(df, cv, models, out / "backtest.png", max_series=args.plot_series, history_steps=3 * h,
                           title=f"{name}: backtest, {windows(args.windows)} of {h} steps"),
             *plot_forecasts(df, future, models, levels, out / "forecast.png", grid=True,
                             max_series=args.plot_series, history_steps=4 * h,
                             title=f"{name}: the next {h} steps")]
    print()
    print(format_metrics(metrics, levels))
    print("* best in its column (coverage: nearest the nominal level); each metric averaged over the windows of "
          "each series, then over series")
    print()
    written = [out / "forecasts.csv", out / "metrics.csv", out / "future.csv", *plots]
    print(f"wrote {', '.join(map(str, written))}")
    return 0


def windows(n: int) -> str:
    return f"{n} window" if n == 1 else f"{n} windows"


def parse_names(text: str, flag: str, known, kind: str) -> list[str]:
    """Comma-separated names, in order and without repeats; 'none' (or nothing) for an empty list."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if [n.lower() for n in names] == ["none"]:
        return []
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownNameError(f"unknown {kind} {', '.join(map(repr, unknown))} in {flag}; choose from "
                               f"{', '.join(known)}")
    return names


# ------------------------------------------------------------------------------------------------ data

def load_data(args):
    """(df with unique_id, ds, y; its name; freq as a pandas alias or int; season length; h) from the flags."""
    from rnnzoo.forecast.datasets import AIR_PASSENGERS, air_passengers

    if args.data is None:
        if args.id_col is not None or (args.time_col, args.target_col) != ("ds", "y"):
            raise ConfigError("--id-col/--time-col/--target-col name the columns of a --data file; the default "
                              "data set has its own")
        info = AIR_PASSENGERS
        df = air_passengers()
        freq = info.freq if args.freq is None else _offset(args.freq).freqstr
        return df, "AirPassengers", freq, args.season_length or info.season_length, args.h or info.h
    df = read_frame(Path(args.data), args.id_col, args.time_col, args.target_col)
    freq = resolve_freq(df, args.freq)
    season_length, h = args.season_length, args.h
    if season_length is None or h is None:
        if isinstance(freq, int):
            raise ConfigError(f"{args.data} has integer timestamps, so no calendar suggests a season or horizon: "
                              "pass --h (and --season-length if the series has a season)" if h is None else
                              f"{args.data} has integer timestamps: pass --season-length (1 for no season)")
        kind = next((v for k, v in M4_DEFAULTS.items() if k in type(_offset(freq)).__name__), None)
        if kind is None:
            raise ConfigError(f"freq {freq!r} has no M4 default season length or horizon; pass --season-length "
                              "and --h")
        season_length = kind[1] if season_length is None else season_length
        h = kind[2] if h is None else h
    return df, Path(args.data).name, freq, season_length, h


def read_frame(path: Path, id_col: str | None, time_col: str, target_col: str):
    """The file's id, time and target columns renamed to unique_id, ds, y (ds parsed to datetimes unless it holds
    integers). Without an id column (and no --id-col) the whole file is one series named after the file."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"data file {path} does not exist (or is not a file); pass a .csv or .parquet file")
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}
    if path.suffix.lower() not in readers:
        raise DataError(f"cannot read {path}: expected a .csv or .parquet file, got {path.suffix or 'no suffix'}")
    try:
        df = readers[path.suffix.lower()](path)
    except (OSError, ValueError) as e:  # pandas' parser, encoding and empty-file errors are ValueErrors
        raise DataError(f"cannot read {path}: {e}") from None
    flags = {"--id-col": id_col or "unique_id", "--time-col": time_col, "--target-col": target_col}
    missing = [f"{c!r} ({flag})" for flag, c in flags.items() if c not in df.columns
               and not (flag == "--id-col" and id_col is None)]
    if missing:
        raise DataError(f"{path} has no column {', '.join(missing)}; its columns are "
                        f"{', '.join(map(repr, df.columns))}")
    ids = df[flags["--id-col"]] if flags["--id-col"] in df.columns else path.stem
    out = pd.DataFrame({"unique_id": ids, "ds": df[time_col], "y": df[target_col]})
    if not (pd.api.types.is_integer_dtype(out["ds"]) or pd.api.types.is_datetime64_any_dtype(out["ds"])):
        try:
            out["ds"] = pd.to_datetime(out["ds"], format="mixed")
        except (ValueError, TypeError) as e:
            raise DataError(f"{path}: column {time_col!r} (--time-col) must hold dates or integers: {e}") from None
    if not pd.api.types.is_numeric_dtype(out["y"]) or pd.api.types.is_bool_dtype(out["y"]):
        raise DataError(f"{path}: column {target_col!r} (--target-col) must be numeric, got {out['y'].dtype}")
    if out.empty:
        raise DataError(f"{path} has no rows")
    return out.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)


def _offset(freq):
    import pandas as pd

    try:
        return pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise ConfigError(f"--freq {freq!r} is not a pandas frequency (e.g. MS, ME, QS, D, h)") from None


def resolve_freq(df, freq: str | None):
    """--freq as the baselines and Forecaster take it: an int step for integer ds, else a pandas alias string
    (inferred from the timestamps when not given)."""
    import pandas as pd

    from rnnzoo.forecast.data import Columns, infer_freq

    if pd.api.types.is_integer_dtype(df["ds"]):
        if freq is None:
            return int(infer_freq(df, Columns()))
        try:
            return int(freq)
        except ValueError:
            raise ConfigError(f"the timestamps are integers, so --freq must be an integer step, got {freq!r}") \
                from None
    return infer_freq(df, Columns(), None if freq is None else _offset(freq)).freqstr


# ------------------------------------------------------------------------------------------------ models

def backtest(df, mixers: list[str], baselines: list[str], options: dict, levels: list[float], n_windows: int,
             step_size: int, season_length: int):
    """Cross-validation rows of every model side by side: unique_id, ds, cutoff, y, then each model's columns.
    ``options`` are the Forecaster's, ``levels`` the baselines' interval levels."""
    from rnnzoo.forecast import Forecaster
    from rnnzoo.forecast.baselines import baseline_cross_validation

    # the baselines first: they take seconds, and their checks (e.g. a series too short) come before any training
    baseline_frames = []
    if baselines:
        started = time.perf_counter()
        baseline_frames.append(baseline_cross_validation(df, options["h"], n_windows, step_size, options["freq"],
                                                         season_length, baselines, levels))
        print(f"  {', '.join(baselines)}: {windows(n_windows)} in {time.perf_counter() - started:.0f} s", flush=True)
    frames = []
    for mixer in mixers:
        started = time.perf_counter()
        fc = Forecaster(mixer, **options)
        frames.append(fc.cross_validation(df, n_windows=n_windows, step_size=step_size, refit=True))
        print(f"  {mixer}: {windows(n_windows)} in {time.perf_counter() - started:.0f} s", flush=True)
    return _side_by_side(frames + baseline_frames, ["unique_id", "ds", "cutoff"], "cross-validation")


def forecast_future(df, mixers: list[str], baselines: list[str], options: dict, levels: list[float],
                    season_length: int):
    """Each model refitted on all of df: unique_id, ds and the forecast columns for the h steps after its end."""
    from rnnzoo.forecast import Forecaster
    from rnnzoo.forecast.baselines import baseline_forecasts

    frames = []
    for mixer in mixers:
        frames.append(Forecaster(mixer, **options).fit(df).predict())
    if baselines:
        frames.append(baseline_forecasts(df, options["h"], options["freq"], season_length, baselines, levels))
    return _side_by_side(frames, ["unique_id", "ds"], "future")


def _side_by_side(frames: list, keys: list[str], what: str):
    out = frames[0]
    for frame in frames[1:]:
        frame = frame.drop(columns=[c for c in frame.columns if c in out.columns and c not in keys])
        merged = out.merge(frame, on=keys, how="inner", validate="one_to_one")
        if len(merged) != len(out) or len(merged) != len(frame):
            raise DataError(f"the {what} rows of the models do not line up on {keys}; check that --freq matches "
                            "the spacing of the timestamps")
        out = merged
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ table

def best_marks(metrics, levels) -> dict[str, set[str]]:
    """Per metric column, the model(s) with the best value: lowest error, or coverage nearest the level."""
    from rnnzoo.forecast.metrics import level_name

    targets = {f"coverage-{level_name(lv)}": lv / 100 for lv in levels}
    best = {}
    for col in metrics.columns:
        if col not in LOWER_IS_BETTER and col not in targets:
            continue
        score = (metrics[col] - targets[col]).abs() if col in targets else metrics[col]
        if score.notna().any():
            best[col] = set(metrics.loc[score == score.min(), "model"])
    return best


def format_metrics(metrics, levels) -> str:
    """The evaluate() frame as an aligned text table, the best value of each column followed by *."""
    best = best_marks(metrics, levels)
    cols = [c for c in metrics.columns if c != "model"]
    cells = [["model", *(f"{c} " for c in cols)]]  # the trailing space lines up with the * column
    for row in metrics.itertuples(index=False):
        values = dict(zip(metrics.columns, row))
        cells.append([values["model"]] + [
            "- " if values[c] != values[c]  # NaN: a model without intervals has no interval metrics
            else f"{values[c]:.3f}" + ("*" if values["model"] in best.get(c, ()) else " ") for c in cols])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = [" ".join([r[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(r[1:], widths[1:])]) for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
