"""rnnzoo forecast / rnnzoo classify in-process with tiny settings, and the forecast plots."""
import contextlib
import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from rnnzoo.cli.main import main
from rnnzoo.errors import ConfigError, DataError
from rnnzoo.forecast.datasets import air_passengers
from rnnzoo.forecast.plots import plot_backtest, plot_forecasts

TINY = ["--max-steps", "5", "--windows", "1", "--d-model", "8", "--mixers", "lstm",
        "--baselines", "SeasonalNaive,Naive2"]
MODELS = ["lstm", "SeasonalNaive", "Naive2"]


def run(argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnzoo: error: "), err
    return lines[0]


def assert_png(path, min_bytes=5000):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > min_bytes
    image = matplotlib.image.imread(path)  # (H, W, 4)
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20  # lines and text, not a blank canvas


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast")
    rc, printed = run(["forecast", "--out", str(out), *TINY])
    assert rc == 0
    return out, printed


def monthly_csv(path, n=40):
    t = np.arange(n)
    rows = [pd.DataFrame({"store": store, "week": pd.date_range("2001-01-01", periods=n, freq="MS").strftime(
        "%Y-%m-%d"), "sales": 50 + 10 * k + 5 * np.sin(2 * np.pi * t / 12) + 0.3 * t}) for k, store in
        enumerate(["north", "south"])]
    pd.concat(rows).to_csv(path, index=False)
    return path


# ---- rnnzoo forecast ----

def test_default_data_backtest_files(default_run):
    out, printed = default_run
    data = air_passengers()
    cv = pd.read_csv(out / "forecasts.csv", parse_dates=["ds", "cutoff"])
    assert len(cv) == 12 and (cv["cutoff"] == pd.Timestamp("1959-12-31")).all()
    assert cv["ds"].tolist() == data["ds"].iloc[-12:].tolist()
    np.testing.assert_allclose(cv["y"], data["y"].iloc[-12:])
    for m in MODELS:
        for c in (m, f"{m}-lo-95", f"{m}-lo-80", f"{m}-hi-80", f"{m}-hi-95"):
            assert np.isfinite(cv[c]).all(), c
        assert (cv[f"{m}-lo-95"] <= cv[f"{m}-lo-80"]).all() and (cv[f"{m}-hi-80"] <= cv[f"{m}-hi-95"]).all()
    # SeasonalNaive repeats the last season before the cutoff: an independent check of the rows' alignment
    np.testing.assert_allclose(cv["SeasonalNaive"], data["y"].iloc[-24:-12])
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["model"].tolist() == MODELS
    for m in MODELS:
        mae = np.abs(cv["y"] - cv[m]).mean()
        assert metrics.set_index("model").loc[m, "MAE"] == pytest.approx(mae, rel=1e-5)
    future = pd.read_csv(out / "future.csv", parse_dates=["ds"])
    assert future["ds"].tolist() == list(pd.date_range("1961-01-31", periods=12, freq="ME"))
    assert np.isfinite(future[MODELS].to_numpy()).all()
    np.testing.assert_allclose(future["SeasonalNaive"], data["y"].iloc[-12:])
    for name in ("backtest.png", "forecast.png"):
        assert_png(out / name)


def test_default_data_table_marks_the_best(default_run):
    out, printed = default_run
    metrics = pd.read_csv(out / "metrics.csv").set_index("model")
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    columns = lines[header].split()[1:]
    assert columns == list(metrics.columns)
    table = {line.split()[0]: line.split()[1:] for line in lines[header + 2: header + 2 + len(MODELS)]}
    assert list(table) == MODELS
    for j, col in enumerate(columns):
        if col.startswith("coverage-"):
            score = (metrics[col] - int(col.split("-")[1]) / 100).abs()
        else:
            score = metrics[col]
        starred = {m for m, cells in table.items() if cells[j].endswith("*")}
        assert starred == set(score[score == score.min()].index), col
        for m, cells in table.items():
            assert float(cells[j].rstrip("*")) == pytest.approx(metrics.loc[m, col], abs=6e-4)


def test_csv_with_named_columns(tmp_path):
    data = monthly_csv(tmp_path / "sales.csv")
    out = tmp_path / "out"
    rc, printed = run(["forecast", "--data", str(data), "--id-col", "store", "--time-col", "week", "--target-col",
                       "sales", "--h", "6", "--input-size", "12", "--out", str(out), *TINY])
    assert rc == 0
    assert "2 series" in printed and "freq MS, season length 12, h 6" in printed  # M4 monthly season length
    cv = pd.read_csv(out / "forecasts.csv", parse_dates=["ds", "cutoff"])
    assert sorted(cv["unique_id"].unique()) == ["north", "south"] and len(cv) == 12
    assert (cv["cutoff"] == pd.Timestamp("2003-10-01")).all()  # 40 months from 2001-01, 6 held out
    future = pd.read_csv(out / "future.csv", parse_dates=["ds"])
    for _, g in future.groupby("unique_id"):
        assert g["ds"].tolist() == list(pd.date_range("2004-05-01", periods=6, freq="MS"))
    assert_png(out / "forecast.png")


def test_csv_with_integer_times_and_no_id_column(tmp_path):
    t = np.arange(3, 43)
    pd.DataFrame({"ds": t, "y": 5 + np.sin(t / 3.0) + 0.1 * t}).to_csv(tmp_path / "sensor.csv", index=False)
    out = tmp_path / "out"
    rc, _ = run(["forecast", "--data", str(tmp_path / "sensor.csv"), "--h", "4", "--season-length", "1",
                 "--out", str(out), *TINY, "--windows", "2"])  # the last --windows wins
    assert rc == 0
    cv = pd.read_csv(out / "forecasts.csv")
    assert sorted(cv["cutoff"].unique()) == [34, 38] and (cv["unique_id"] == "sensor").all()
    assert pd.read_csv(out / "future.csv")["ds"].tolist() == [43, 44, 45, 46]


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/nowhere.csv"], "does not exist"),
    (["--data", "{tmp}/sales.csv", "--id-col", "store", "--time-col", "week"], "no column 'y' (--target-col)"),
    (["--data", "{tmp}/sales.csv", "--id-col", "shop", "--time-col", "week", "--target-col", "sales"],
     "no column 'shop' (--id-col)"),
    (["--data", "{tmp}/garbage.parquet"], "cannot read"),
    (["--data", "{tmp}/ints.csv"], "pass --h"),
    (["--mixers", "lstm,nope"], "unknown mixer 'nope' in --mixers"),
    (["--baselines", "Naive2,Theta"], "unknown baseline 'Theta' in --baselines"),
    (["--h", "0"], "--h must be >= 1, got 0"),
    (["--h", "-3"], "--h must be >= 1, got -3"),
    (["--loss", "laplace"], "unknown --loss 'laplace'"),
    (["--level", "80", "120"], "--level values are interval coverages in (0, 100)"),
    (["--freq", "fortnightly"], "not a pandas frequency"),
    (["--windows", "20"], "n_windows=20, step_size=12 hold out 240 values) too short"),
])
def test_bad_forecast_input_is_one_error_line(tmp_path, capsys, args, message):
    monthly_csv(tmp_path / "sales.csv")
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    pd.DataFrame({"ds": range(30), "y": range(30)}).to_csv(tmp_path / "ints.csv", index=False)
    argv = ["forecast", "--out", str(tmp_path / "out"), *TINY, *[a.format(tmp=tmp_path) for a in args]]
    assert main(argv) == 2
    assert message in error_line(capsys)


# ---- rnnzoo classify ----

def test_classify_table_and_csv(tmp_path, capsys):
    assert main(["classify", "--mixers", "gru", "--epochs", "1", "--d-model", "8", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "classify.csv")
    assert rows["model"].tolist() == ["gru", "1-NN ED", "1-NN DTW"]
    assert (rows["dataset"] == "ItalyPowerDemand").all()
    # the UCR archive (Dau et al. 2019) lists 1-NN ED / full DTW test errors 0.045 / 0.050 for ItalyPowerDemand
    assert rows["test_error"].tolist()[1:] == pytest.approx([0.045, 0.050], abs=6e-4)
    table = {line.split()[0] + (" " + line.split()[1] if line.startswith("1-NN") else ""): line
             for line in printed.splitlines() if line.startswith(("gru ", "1-NN "))}
    best = rows.loc[rows["test_error"] == rows["test_error"].min(), "model"]
    assert {m for m, line in table.items() if "*" in line} == set(best)


@pytest.mark.parametrize("args, message", [
    (["--dataset", "Coffee"], "unknown UCR/UEA data set 'Coffee'"),
    (["--mixers", "nope"], "unknown mixer 'nope' in --mixers"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
])
def test_bad_classify_input_is_one_error_line(tmp_path, capsys, args, message):
    assert main(["classify", "--out", str(tmp_path), "--epochs", "1", *args]) == 2
    assert message in error_line(capsys)


# ---- plots ----

def frames(n_series=3, levels=(80, 95)):
    """A history of 30 steps per series and a 6-step forecast of two models with their bands."""
    hist, fc = [], []
    for k in range(n_series):
        ds = pd.date_range("2010-01-01", periods=36, freq="MS")
        y = 10 + k + np.sin(np.arange(36) / 2)
        hist.append(pd.DataFrame({"unique_id": f"s/{k}", "ds": ds[:30], "y": y[:30]}))
        block = {"unique_id": f"s/{k}", "ds": ds[30:], "y": y[30:]}
        for j, m in enumerate(("a", "b")):
            point = y[30:] + 0.3 * (j + 1)
            block[m] = point
            for lv in levels:
                block[f"{m}-lo-{lv}"] = point - lv / 50
                block[f"{m}-hi-{lv}"] = point + lv / 50
        fc.append(pd.DataFrame(block))
    return pd.concat(hist, ignore_index=True), pd.concat(fc, ignore_index=True)


def inked(path) -> int:
    image = matplotlib.image.imread(path)[..., :3]
    return int((image.sum(-1) < 2.9).sum())  # pixels visibly darker than white


def test_plot_forecasts_one_file_per_series_or_a_grid(tmp_path):
    hist, fc = frames()
    paths = plot_forecasts(hist, fc, ["a", "b"], (80, 95), tmp_path / "fc.png")
    assert [p.name for p in paths] == ["fc-s_0.png", "fc-s_1.png", "fc-s_2.png"]
    for p in paths:
        assert_png(p)
    assert len(plot_forecasts(hist, fc, "a", (), tmp_path / "two.png", max_series=2)) == 2
    [grid] = plot_forecasts(hist, fc, ["a", "b"], (80, 95), tmp_path / "grid.png", grid=True)
    assert grid == tmp_path / "grid.png"
    assert_png(grid)


def test_plot_forecasts_shades_the_intervals(tmp_path):
    hist, fc = frames(1)
    [plain] = plot_forecasts(hist, fc, ["a"], (), tmp_path / "plain.png")
    [banded] = plot_forecasts(hist, fc, ["a"], (80, 95), tmp_path / "banded.png")
    assert inked(banded) > inked(plain) + 500


def test_plot_backtest(tmp_path):
    hist, fc = frames(2)
    cv = pd.concat([fc.assign(cutoff=pd.Timestamp("2012-06-01")),
                    fc.assign(ds=fc["ds"] - pd.DateOffset(months=6), cutoff=pd.Timestamp("2011-12-01"))])
    full = pd.concat([hist, fc[["unique_id", "ds", "y"]]])
    path = plot_backtest(full, cv, ["a", "b"], tmp_path / "bt.png", levels=(80,), history_steps=12)
    assert path == tmp_path / "bt.png"
    assert_png(path)
    with pytest.raises(DataError, match="several cutoffs per series"):
        plot_forecasts(full, cv, ["a"], (), tmp_path / "x.png")
    with pytest.raises(DataError, match="'cutoff'"):
        plot_backtest(full, fc, ["a"], tmp_path / "x.png")


@pytest.mark.parametrize("models, levels, error, message", [
    (["a", "nope"], (), DataError, "no forecast column for model(s) 'nope'; the frame has 'a', 'b'"),
    (["y"], (), DataError, "no forecast column for model(s) 'y'"),
    (["a"], (90,), DataError, "not 'a-lo-90', 'a-hi-90'"),
    ([], (), ConfigError, "models is empty"),
    (["a"], (150,), ConfigError, "percentages in (0, 100)"),
])
def test_plot_bad_models_and_levels(tmp_path, models, levels, error, message):
    hist, fc = frames(1)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        plot_forecasts(hist, fc, models, levels, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
