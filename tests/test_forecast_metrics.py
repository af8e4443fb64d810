"""rnnzoo.forecast.metrics against hand computations and utilsforecast's independent implementations."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rnnzoo.errors import DataError, ShapeError
from rnnzoo.forecast import metrics as M

uf = pytest.importorskip("utilsforecast.losses")

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 20), elements=finite), st.data())
def test_smape_range_symmetry_and_zero_convention(y, data):
    f = data.draw(arrays(np.float64, y.shape, elements=finite))
    s = M.smape(y, f)
    assert 0.0 <= s <= 200.0 + 1e-9
    assert s == pytest.approx(M.smape(f, y))
    # the M4 definition term by term, with 0/0 spelled out
    terms = [0.0 if a == b == 0 else abs(a - b) / (abs(a) + abs(b)) for a, b in zip(y, f)]
    assert s == pytest.approx(200.0 * sum(terms) / len(terms))


def test_smape_zero_cases():
    assert M.smape([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert M.smape([0.0, 2.0], [1.0, 2.0]) == pytest.approx(100.0)  # one term at the 200 maximum, one at 0


def test_mase_hand_computed_and_fallbacks():
    y_train = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    # lag-2 scale: |2-1|, |5-3|, |4-2| -> mean 5/3
    assert M.mase([6.0, 6.0], [5.0, 8.0], y_train, 2) == pytest.approx(1.5 / (5.0 / 3.0))
    periodic = np.tile([1.0, 2.0, 3.0], 4)  # every seasonal difference is 0: falls back to lag 1
    assert M.mase_scale(periodic, 3) == pytest.approx(np.mean(np.abs(np.diff(periodic))))
    assert M.mase_scale([1.0, 4.0], 12) == 3.0  # too short for lag 12: lag 1
    with pytest.raises(DataError, match="constant"):
        M.mase([1.0], [2.0], np.full(10, 7.0), 1)
    with pytest.raises(DataError, match="at least 2"):
        M.mase([1.0], [2.0], [7.0], 1)


def test_pointwise_shape_errors():
    with pytest.raises(ShapeError):
        M.mae([1.0, 2.0], [1.0])
    with pytest.raises(ShapeError):
        M.rmse([], [])
    with pytest.raises(DataError):
        M.pinball_loss([1.0], [1.0], 1.0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 15), elements=finite), st.data())
def test_pinball_median_is_half_mae_and_crps_of_point_forecast(y, data):
    f = data.draw(arrays(np.float64, y.shape, elements=finite))
    assert M.pinball_loss(y, f, 0.5) == pytest.approx(0.5 * M.mae(y, f))
    if np.abs(y).sum() > 0:
        # with a single median quantile the scaled CRPS is sum|y - f| / sum|y|
        assert M.scaled_crps(y, f[:, None], [0.5]) == pytest.approx(np.abs(y - f).sum() / np.abs(y).sum())


def test_coverage_and_owa():
    assert M.coverage([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 3.5, 0.0], [1.0, 3.0, 5.0, 3.9]) == 0.5  # closed ends
    assert M.owa(10.0, 2.0, 10.0, 2.0) == 1.0
    assert M.owa(5.0, 4.0, 10.0, 2.0) == pytest.approx(0.5 * (0.5 + 2.0))


def _cv_frame(rng):
    """Two series, the first with two cutoffs and the second with one, and a training history for each."""
    train = pd.concat([pd.DataFrame({"unique_id": u, "ds": np.arange(30), "y": 50 + rng.normal(0, 5, 30).cumsum()})
                       for u in ("a", "b")], ignore_index=True)
    rows = []
    for uid, cutoff in (("a", 19), ("a", 23), ("b", 25)):
        hist = train[train.unique_id == uid]
        y = hist.y.to_numpy()[cutoff + 1: cutoff + 5]
        f = y + rng.normal(0, 3, y.size)
        rows.append(pd.DataFrame({"unique_id": uid, "ds": np.arange(cutoff + 1, cutoff + 5), "cutoff": cutoff, "y": y,
                                  "M": f, "M-lo-80": f - 2, "M-hi-80": f + 2, "M-lo-95": f - 4, "M-hi-95": f + 4,
                                  "P": y + rng.normal(0, 6, y.size)}))
    return pd.concat(rows, ignore_index=True), train


def _by_series(per_window: pd.DataFrame, col: str) -> float:
    """Mean over cutoffs within each series, then over series."""
    return per_window.groupby("unique_id")[col].mean().mean()


def test_evaluate_matches_utilsforecast_on_cross_validation_frame():
    cv, train = _cv_frame(np.random.default_rng(0))
    got = M.evaluate(cv, train, ["M", "P"], season_length=2, levels=(80, 95)).set_index("model")
    models = ["M", "P"]
    want = {
        "MAE": uf.mae(cv, models), "RMSE": uf.rmse(cv, models),
        "MASE": uf.mase(cv, models, seasonality=2, train_df=train, time_col="ds"),
        "sMAPE": uf.smape(cv, models),
        "coverage-80": uf.coverage(cv, ["M"], level=80), "coverage-95": uf.coverage(cv, ["M"], level=95),
    }
    for col, frame in want.items():
        for model in frame.columns.drop(["unique_id", "cutoff"]):
            scale = 200.0 if col == "sMAPE" else 1.0  # utilsforecast reports sMAPE on 0..1
            assert got.loc[model, col] == pytest.approx(scale * _by_series(frame, model)), (col, model)
    quantiles = np.array([0.025, 0.1, 0.5, 0.9, 0.975])
    crps = uf.scaled_crps(cv, {"M": ["M-lo-95", "M-lo-80", "M", "M-hi-80", "M-hi-95"]}, quantiles)
    assert got.loc["M", "scaled_CRPS"] == pytest.approx(_by_series(crps, "M"))
    assert np.isnan(got.loc["P", "scaled_CRPS"]) and np.isnan(got.loc["P", "coverage-80"])  # P has no intervals
    assert "OWA" not in got.columns


def test_evaluate_without_cutoff_uses_test_df_and_reports_owa():
    rng = np.random.default_rng(1)
    y = 100 + rng.normal(0, 5, 40).cumsum()
    train = pd.DataFrame({"unique_id": "s", "ds": np.arange(32), "y": y[:32]})
    test = pd.DataFrame({"unique_id": "s", "ds": np.arange(32, 40), "y": y[32:]})
    fc = test[["unique_id", "ds"]].assign(Naive2=y[31], Other=y[32:] + 1.0)
    got = M.evaluate(fc, train, ["Other", "Naive2"], 4, test_df=test).set_index("model")
    assert list(got.index) == ["Other", "Naive2"]
    assert got.loc["Other", "MAE"] == pytest.approx(1.0)
    assert got.loc["Other", "MASE"] == pytest.approx(1.0 / np.mean(np.abs(y[4:32] - y[:28])))
    assert got.loc["Naive2", "OWA"] == pytest.approx(1.0)
    n2 = got.loc["Naive2"]
    assert got.loc["Other", "OWA"] == pytest.approx(
        0.5 * (got.loc["Other", "sMAPE"] / n2.sMAPE + got.loc["Other", "MASE"] / n2.MASE))


def test_evaluate_errors_name_the_problem():
    cv, train = _cv_frame(np.random.default_rng(2))
    with pytest.raises(DataError, match="lacks the column"):
        M.evaluate(cv.drop(columns="y"), train, ["M"], 1)
    with pytest.raises(DataError, match="missing values"):
        M.evaluate(cv.assign(M=np.nan), train, ["M"], 1)
    with pytest.raises(DataError, match="reaches into the forecast horizon"):
        M.evaluate(cv.drop(columns="cutoff"), train, ["M"], 1)
    with pytest.raises(DataError, match="not in train_df"):
        M.evaluate(cv, train[train.unique_id == "a"], ["M"], 1)
