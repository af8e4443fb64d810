"""Naive2, the statsforecast baselines, rolling-origin windows and the shipped-series loaders."""

import numpy as np
import pandas as pd
import pytest

from rnnzoo.errors import ConfigError, DataError, UnknownNameError

pytest.importorskip("statsforecast")
from statsforecast.models import Naive  # noqa: E402

from rnnzoo.forecast import baselines as B  # noqa: E402
from rnnzoo.forecast import datasets as D  # noqa: E402


def _acf_by_hand(y, k):
    ybar = sum(y) / len(y)
    num = sum((y[t] - ybar) * (y[t - k] - ybar) for t in range(k, len(y)))
    return num / sum((v - ybar) ** 2 for v in y)


def _seasonal_series(n=96, m=12, seed=0):
    """y_t = trend_t * s_{t mod m} * (1 + noise): a multiplicative seasonal series with known indices."""
    rng = np.random.default_rng(seed)
    s = 1.0 + 0.3 * np.sin(2 * np.pi * np.arange(m) / m)
    s = s / s.mean()
    t = np.arange(n)
    return (100 + 0.8 * t) * s[t % m] * (1 + rng.normal(0, 0.01, n)), s


def test_acf_and_seasonality_test_match_a_hand_computation():
    rng = np.random.default_rng(0)
    for y in (rng.normal(size=40), _seasonal_series(48, 4)[0], np.sin(np.arange(30) * 0.7) + rng.normal(0, 1, 30)):
        m = 4
        r = [_acf_by_hand(list(y), k) for k in range(1, m + 1)]
        assert [B.acf(y, k) for k in range(1, m + 1)] == pytest.approx(r)
        limit = 1.645 * np.sqrt((1 + 2 * sum(v * v for v in r[:-1])) / len(y))
        assert B.seasonality_test(y, m) == (abs(r[-1]) > limit)
    assert B.seasonality_test(_seasonal_series(96, 12)[0], 12)
    assert not B.seasonality_test(_seasonal_series(30, 12)[0], 12)  # n < 3m: never seasonal
    assert not B.seasonality_test(_seasonal_series(96, 12)[0], 1)


def test_naive2_on_non_seasonal_series_is_the_last_value():
    rng = np.random.default_rng(1)
    y = 50 + rng.normal(0, 1, 60).cumsum()
    for m in (1, 12):
        if m > 1:
            assert not B.seasonality_test(y, m)  # a random walk shows no lag-12 seasonality here
        out = B.naive2(y, 7, m)
        np.testing.assert_array_equal(out["mean"], np.full(7, y[-1]))


def test_naive2_matches_statsforecast_naive_with_intervals_on_non_seasonal_data():
    y = 20 + np.random.default_rng(2).normal(0, 2, 50).cumsum()
    ours = B.naive2(y, 6, 1, levels=(80, 95))
    theirs = Naive().forecast(y=y, h=6, level=[80, 95])
    for key in ("mean", "lo-80", "hi-80", "lo-95", "hi-95"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-10)


def test_naive2_recovers_a_multiplicative_seasonal_pattern():
    y, s = _seasonal_series(96, 12)
    si = B.seasonal_indices(y, 12)
    np.testing.assert_allclose(si, s, rtol=0.02)
    fc = B.naive2(y, 24, 12, levels=(80,))
    level = y[-1] / s[95 % 12]  # the seasonally adjusted last value
    np.testing.assert_allclose(fc["mean"], level * s[np.arange(96, 120) % 12], rtol=0.03)
    assert (fc["lo-80"] < fc["mean"]).all() and (fc["mean"] < fc["hi-80"]).all()
    # the interval widens with the horizon: compare the same season phase a year apart
    width = (fc["hi-80"] - fc["lo-80"]) / s[np.arange(96, 120) % 12]
    assert (np.diff(width) > 0).all()


def _panel():
    ap = D.air_passengers()
    return pd.concat([ap, ap.iloc[:100].assign(unique_id="short", y=lambda d: d.y * 2)], ignore_index=True)


def test_baseline_forecasts_columns_lengths_and_times():
    df = _panel()
    fc = B.baseline_forecasts(df, 12, "ME", 12, levels=(80, 95))
    expect = ["unique_id", "ds"]
    for m in B.DEFAULT_MODELS:
        expect += [m, f"{m}-lo-95", f"{m}-lo-80", f"{m}-hi-80", f"{m}-hi-95"]
    assert list(fc.columns) == expect
    assert not fc.isna().any().any()
    for uid, g in df.groupby("unique_id"):
        out = fc[fc.unique_id == uid]
        assert len(out) == 12
        np.testing.assert_array_equal(out.ds, pd.date_range(g.ds.max(), periods=13, freq="ME")[1:])
        np.testing.assert_allclose(out.SeasonalNaive, g.y.to_numpy()[-12:])  # last season repeated
        np.testing.assert_allclose(out.Naive2, B.naive2(g.y.to_numpy(), 12, 12)["mean"])
        for m in B.DEFAULT_MODELS:
            assert (out[f"{m}-lo-95"] <= out[f"{m}-lo-80"]).all() and (out[f"{m}-hi-80"] <= out[f"{m}-hi-95"]).all()


def test_cross_validation_windows_cutoffs_and_refit():
    df = _panel()
    h, n_windows, step = 5, 3, 4
    cv = B.baseline_cross_validation(df, h, n_windows, step, "ME", 12, models=("SeasonalNaive", "Naive2"),
                                     levels=(90,))
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "SeasonalNaive", "SeasonalNaive-lo-90",
                                "SeasonalNaive-hi-90", "Naive2", "Naive2-lo-90", "Naive2-hi-90"]
    for uid, g in df.groupby("unique_id"):
        y, ds = g.y.to_numpy(), g.ds.to_numpy()
        rows = cv[cv.unique_id == uid]
        assert rows.cutoff.nunique() == n_windows and len(rows) == n_windows * h
        for w, (cutoff, win) in enumerate(rows.groupby("cutoff")):
            end = len(y) - h - (n_windows - 1 - w) * step
            assert cutoff == ds[end - 1]
            np.testing.assert_array_equal(win.ds, ds[end: end + h])
            np.testing.assert_array_equal(win.y, y[end: end + h])
            np.testing.assert_allclose(win.SeasonalNaive, y[end - 12: end - 12 + h])  # fitted on y[:end]
            ref = B.naive2(y[:end], h, 12, levels=(90,))
            np.testing.assert_allclose(win.Naive2, ref["mean"])
            np.testing.assert_allclose(win["Naive2-hi-90"], ref["hi-90"])
        assert rows.cutoff.max() == ds[-h - 1]  # the last window ends at the series end


def test_cross_validation_with_integer_ds_and_statsforecast_models():
    y = 10 + np.sin(np.arange(40)) + np.arange(40) * 0.1
    df = pd.DataFrame({"unique_id": 0, "ds": np.arange(40), "y": y})
    cv = B.baseline_cross_validation(df, 3, 2, 3, 1, 1, models=("AutoETS",), levels=())
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "AutoETS"]
    assert list(cv.cutoff.unique()) == [33, 36] and not cv.isna().any().any()


def test_clear_errors():
    df = _panel()
    with pytest.raises(DataError, match="lacks the column"):
        B.baseline_forecasts(df.rename(columns={"y": "value"}), 3, "ME", 12)
    with pytest.raises(DataError, match="duplicate"):
        B.baseline_forecasts(pd.concat([df, df.iloc[:1]]), 3, "ME", 12, models=("Naive2",))
    with pytest.raises(DataError, match="positive int"):
        B.baseline_forecasts(df, 0, "ME", 12, models=("Naive2",))
    with pytest.raises(DataError, match="too short for SeasonalNaive"):
        B.baseline_forecasts(df.iloc[:10], 3, "ME", 12, models=("SeasonalNaive", "Naive2"))
    with pytest.raises(DataError, match="too short for AutoETS"):
        B.baseline_cross_validation(df.iloc[:18], 6, 3, 3, "ME", 1, models=("AutoETS",))  # needs 7 + 12
    with pytest.raises(DataError, match="not regular"):
        B.baseline_forecasts(df.drop(index=5), 3, "ME", 12, models=("Naive2",))
    with pytest.raises(DataError, match="not regular"):
        B.baseline_forecasts(df, 3, "MS", 12, models=("Naive2",))  # month-end dates, month-start freq
    with pytest.raises(UnknownNameError, match="Naive3"):
        B.baseline_forecasts(df, 3, "ME", 12, models=("Naive3",))
    with pytest.raises(ConfigError, match="levels"):
        B.baseline_forecasts(df, 3, "ME", 12, models=("Naive2",), levels=(120,))


def test_shipped_series_are_regular_without_gaps_or_duplicates():
    frames = [D.air_passengers()] + [D.load_series(n) for n in D.PANEL]
    infos = [D.AIR_PASSENGERS] + list(D.PANEL.values())
    for df, info in zip(frames, infos):
        uid = df.unique_id.iloc[0]
        assert list(df.columns) == ["unique_id", "ds", "y"] and df.unique_id.nunique() == 1
        assert not df.isna().any().any() and not df.duplicated(["unique_id", "ds"]).any()
        assert len(df) >= 3 * info.h, uid
        grid = pd.date_range(df.ds.iloc[0], periods=len(df), freq=info.freq)
        np.testing.assert_array_equal(df.ds.to_numpy(), grid.to_numpy(), err_msg=uid)
        assert pd.infer_freq(df.ds) is not None, uid
    panel = D.panel(["nile", "lynx"])
    pd.testing.assert_frame_equal(panel, pd.concat([D.load_series("lynx"), D.load_series("nile")], ignore_index=True))
    with pytest.raises(UnknownNameError, match="choose from"):
        D.load_series("m4_daily")
