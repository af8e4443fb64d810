"""Forecaster: data checks, scaling, likelihood heads, both strategies, intervals, states, backtests."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rnnzoo.errors import ConfigError, DataError
from rnnzoo.forecast import Forecaster
from rnnzoo.forecast.data import Columns, calendar_features, check_long, infer_freq, scale_stats
from rnnzoo.models.distributions import (MSEHead, NegativeBinomialHead, NormalHead, QuantileHead, StudentTHead,
                                         build_head)
from rnnzoo.train.optim import AdamW

FAST = dict(d_model=16, max_steps=150, batch_size=32, num_samples=100)


def seasonal(n=120, ids=("a",), period=12, noise=0.1, freq="MS", seed=0, level=10.0):
    rng = np.random.default_rng(seed)
    frames = []
    for k, uid in enumerate(ids):
        t = np.arange(n)
        y = level + 3 * np.sin(2 * np.pi * (t + 2 * k) / period) + noise * rng.standard_normal(n)
        ds = pd.date_range("2000-01-01", periods=n, freq=freq) if freq is not None else t
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


# ---- heads ----

def test_normal_head_nll_is_torch_normal():
    raw = torch.randn(5, 7, 2)
    y, loc, scale = torch.randn(5, 7), torch.randn(5, 1), torch.rand(5, 1) + 0.5
    mask = torch.rand(5, 7) > 0.3
    z = (y - loc) / scale
    dist = torch.distributions.Normal(raw[..., 0], torch.nn.functional.softplus(raw[..., 1]) + 1e-4)
    want = -dist.log_prob(z)[mask].mean()
    torch.testing.assert_close(NormalHead().loss(raw, y, loc, scale, mask), want)


def test_student_t_samples_follow_the_t_distribution():
    raw = torch.tensor([[0.3, 0.2, 1.5]]).expand(40000, 3)
    head = StudentTHead()
    draws = head.sample(raw, torch.tensor(2.0), torch.tensor(3.0), torch.Generator().manual_seed(0))
    dist = head.scaled(raw[:1])
    df, mu, sigma = dist.df.item(), dist.loc.item(), dist.scale.item()
    for q in (0.1, 0.5, 0.9):
        want = 2.0 + 3.0 * (mu + sigma * stats.t.ppf(q, df))
        assert abs(np.quantile(draws.numpy(), q) - want) < 0.08 * 3.0 * sigma * stats.t.ppf(0.9, df) + 0.03


def test_negative_binomial_samples_match_mean_and_variance():
    raw = torch.tensor([[1.0, -0.5]]).expand(40000, 2)
    scale = torch.tensor(4.0)
    head = NegativeBinomialHead()
    dist = head.counts(raw[:1], scale)
    draws = head.sample(raw, torch.tensor(0.0), scale, torch.Generator().manual_seed(1))
    assert torch.equal(draws, draws.round()) and (draws >= 0).all()
    assert abs(draws.mean().item() - dist.mean.item()) < 0.03 * dist.mean.item()
    assert abs(draws.var().item() - dist.variance.item()) < 0.08 * dist.variance.item()


def test_quantile_head_is_monotone_and_its_loss_is_the_pinball_loss():
    head = QuantileHead([0.1, 0.9])
    assert head.levels == [0.1, 0.5, 0.9]  # the median is added for the point forecast
    raw = torch.randn(4, 6, 3)
    q = head.values(raw)
    assert (q[..., 1:] >= q[..., :-1]).all()
    y, mask = torch.randn(4, 6), torch.ones(4, 6, dtype=torch.bool)
    want = np.mean([max(a * (yv - qv), (a - 1) * (yv - qv)) for b in range(4) for t in range(6)
                    for a, qv in zip(head.levels, q[b, t].tolist()) for yv in [y[b, t].item()]]) * 1.0
    got = head.loss(raw, y, torch.zeros(4, 1), torch.ones(4, 1), mask).item()
    assert got == pytest.approx(want, rel=1e-5)


def test_build_head_rejects_unknown_losses_and_stray_quantiles():
    with pytest.raises(ConfigError, match="unknown loss 'poisson'"):
        build_head("poisson")
    with pytest.raises(ConfigError, match="quantiles= is for loss='quantile'"):
        build_head("normal", quantiles=[0.1])
    with pytest.raises(ConfigError, match=r"distinct numbers in \(0, 1\)"):
        QuantileHead([0.1, 1.2])
    assert isinstance(build_head("mse"), MSEHead)


def test_adamw_matches_torch_optim():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    mine, ref = AdamW(a.parameters(), lr=0.01, weight_decay=0.1), torch.optim.AdamW(b.parameters(), lr=0.01,
                                                                                      weight_decay=0.1)
    for _ in range(5):
        x = torch.randn(8, 5)
        for net, opt in ((a, mine), (b, ref)):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


# ---- data ----

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(2, 12), st.sampled_from(["standard", "robust", "mean_abs"]), st.data())
def test_scale_stats_match_numpy_on_observed_entries(B, T, kind, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    y = rng.standard_normal((B, T)) * 3 + 1
    mask = rng.random((B, T)) > 0.3
    mask[:, 0] = True
    loc, scale = scale_stats(torch.tensor(y), torch.tensor(mask), kind)
    for b in range(B):
        v = y[b, mask[b]]
        if kind == "standard":
            want = v.mean(), v.std()
        elif kind == "robust":
            want = np.median(v), np.quantile(v, 0.75) - np.quantile(v, 0.25)
        else:
            want = 0.0, np.abs(v).mean()
        want = want[0], want[1] if want[1] >= 1e-6 else 1.0
        assert loc[b, 0].item() == pytest.approx(want[0], abs=1e-9)
        assert scale[b, 0].item() == pytest.approx(want[1], abs=1e-9)


def test_infer_freq_finds_the_step_and_rejects_gaps():
    cols = Columns()
    df = seasonal(30, ids=("a", "b"))
    assert infer_freq(df, cols).freqstr == "MS"
    assert infer_freq(seasonal(30, freq=None), cols) == 1
    with pytest.raises(DataError, match="series 'a' .*irregular|series 'a' is not on a regular"):
        infer_freq(df.drop(index=[5]), cols)
    with pytest.raises(DataError, match="series 'a' has uneven integer steps"):
        infer_freq(seasonal(30, freq=None).drop(index=[5]), cols)
    with pytest.raises(DataError, match="not on a regular D grid"):
        infer_freq(df, cols, "D")
    with pytest.raises(ConfigError, match="not a pandas frequency"):
        infer_freq(df, cols, "fortnightly")


def test_calendar_features_lie_in_half_range_and_follow_the_frequency():
    monthly = calendar_features(pd.date_range("2001-01-01", periods=24, freq="MS").to_numpy(),
                                pd.tseries.frequencies.to_offset("MS"))
    assert monthly.shape == (24, 1) and monthly.min() == -0.5 and monthly.max() == 0.5
    np.testing.assert_array_equal(monthly[:12], monthly[12:])
    hourly = calendar_features(pd.date_range("2001-01-01", periods=48, freq="h").to_numpy(),
                               pd.tseries.frequencies.to_offset("h"))
    assert hourly.shape == (48, 4) and np.abs(hourly).max() <= 0.5
    assert calendar_features(np.arange(10), 1).shape == (10, 0)


@pytest.mark.parametrize("mutate, error, match", [
    (lambda d: d.drop(columns="y"), DataError, "lacks the column"),
    (lambda d: pd.concat([d, d.iloc[:1]]), DataError, "duplicate"),
    (lambda d: d.assign(y=d.y.where(d.unique_id != "b")), DataError, "no observed y"),
    (lambda d: d.assign(y="x"), DataError, "must be numeric"),
    (lambda d: d.assign(ds="not a date"), DataError, "datetimes or integers"),
    (lambda d: [1, 2], DataError, "must be a pandas DataFrame"),
])
def test_bad_frames_raise_named_errors(mutate, error, match):
    with pytest.raises(error, match=match):
        check_long(mutate(seasonal(20, ids=("a", "b"))), Columns())


def test_bad_settings_raise_named_errors():
    with pytest.raises(ConfigError, match="h must be an int >= 1"):
        Forecaster(h=0)
    with pytest.raises(ConfigError, match="strategy must be 'recursive'"):
        Forecaster(h=2, strategy="mimo")
    with pytest.raises(ConfigError, match="hist_exog_list"):
        Forecaster(h=2, hist_exog_list=["x"])
    with pytest.raises(ConfigError, match="scaler='mean_abs'"):
        Forecaster(h=2, loss="negative_binomial")
    with pytest.raises(ConfigError, match="level values"):
        Forecaster(h=2, level=[120])
    with pytest.raises(ConfigError, match="predict\\(\\) before fit"):
        Forecaster(h=2).predict()
    with pytest.raises(ConfigError, match="val_size must be 0 or at least h=4"):
        Forecaster(h=4).fit(seasonal(40), val_size=2)


# ---- fitting and forecasting ----

@pytest.mark.parametrize("strategy", ["recursive", "direct"])
def test_learns_a_seasonal_pattern(strategy):
    df = seasonal(96, ids=("a", "b"))
    train, test = df.groupby("unique_id").head(84), df.groupby("unique_id").tail(12)
    fc = Forecaster("gru", h=12, input_size=24, strategy=strategy, seed=0, **{**FAST, "max_steps": 300})
    out = fc.fit(train).predict().merge(test, on=["unique_id", "ds"])
    assert len(out) == 24 and list(out.columns[:3]) == ["unique_id", "ds", "gru"]
    mae = (out.gru - out.y).abs().mean()
    mean_mae = (test.y - train.y.mean()).abs().mean()
    assert mae < 0.35 * mean_mae, (mae, mean_mae)
    assert (out["gru-lo-95"] <= out["gru-lo-80"]).all() and (out["gru-hi-80"] <= out["gru-hi-95"]).all()
    assert (out["gru-lo-80"] <= out.gru).mean() > 0.9 and (out.gru <= out["gru-hi-80"]).mean() > 0.9


def test_normal_intervals_match_white_noise():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"unique_id": "n", "ds": np.arange(400), "y": 5 + 2 * rng.standard_normal(400)})
    fc = Forecaster("lstm", h=4, input_size=16, scaler=None, seed=1, **{**FAST, "max_steps": 400,
                                                                        "num_samples": 400})
    out = fc.fit(df).predict(level=[80])
    width = (out["lstm-hi-80"] - out["lstm-lo-80"]).mean()
    assert width == pytest.approx(2 * 1.2816 * 2, rel=0.3)
    assert out.lstm.mean() == pytest.approx(5, abs=0.6)


def test_series_scaling_uses_the_whole_history_and_is_invariant_to_affine_changes():
    df = seasonal(60, ids=("a", "b"))
    shifted = df.assign(y=lambda d: d.y * np.where(d.unique_id == "a", 100.0, 0.01) + 7)
    for scale_by in ("window", "series"):
        kw = dict(h=4, input_size=8, scale_by=scale_by, level=[80], **{**FAST, "max_steps": 30})
        a, b = Forecaster(**kw).fit(df).predict(), Forecaster(**kw).fit(shifted).predict()
        factor = np.where(a.unique_id == "a", 100.0, 0.01)
        for col in ("lstm", "lstm-lo-80", "lstm-hi-80"):
            np.testing.assert_allclose(b[col], a[col] * factor + 7, rtol=2e-3, atol=1e-3)
    fc = Forecaster(h=4, input_size=8, scale_by="series", **{**FAST, "max_steps": 5}).fit(df)
    want = df.groupby("unique_id").y.agg(["mean", "std"])
    np.testing.assert_allclose(fc.state_.loc[:, 0], want["mean"], rtol=1e-5)
    np.testing.assert_allclose(fc.state_.scale[:, 0], want["std"] * np.sqrt(59 / 60), rtol=1e-5)
    with pytest.raises(ConfigError, match="scale_by must be 'window'"):
        Forecaster(h=2, scale_by="panel")


def test_same_seed_same_forecast_and_different_seed_differs():
    df = seasonal(60)
    a = Forecaster(h=6, input_size=12, seed=7, **{**FAST, "max_steps": 30}).fit(df).predict()
    b = Forecaster(h=6, input_size=12, seed=7, **{**FAST, "max_steps": 30}).fit(df).predict()
    c = Forecaster(h=6, input_size=12, seed=8, **{**FAST, "max_steps": 30}).fit(df).predict()
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.lstm, c.lstm)


def test_fit_and_predict_leave_the_global_generator_alone():
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    Forecaster(h=3, input_size=6, dropout=0.2, **{**FAST, "max_steps": 5}).fit(seasonal(30)).predict()
    assert torch.equal(torch.rand(3), want)


def test_recursive_forecasts_any_horizon_and_direct_refuses_longer():
    df = seasonal(60, freq=None)
    rec = Forecaster(h=4, input_size=8, **{**FAST, "max_steps": 20}).fit(df)
    out = rec.predict(h=9, level=[])
    assert len(out) == 9 and out.ds.tolist() == list(range(60, 69))
    direct = Forecaster(h=4, input_size=8, strategy="direct", **{**FAST, "max_steps": 20}).fit(df)
    assert len(direct.predict(h=2)) == 2
    with pytest.raises(ConfigError, match="at most its trained h=4"):
        direct.predict(h=5)


def test_teacher_forced_forward_equals_the_step_loop():
    fc = Forecaster("gru", h=3, input_size=10, **{**FAST, "max_steps": 5}).fit(seasonal(40))
    rows = torch.randn(2, 13, fc.net.inp.in_features)
    with torch.no_grad():
        encoded, _ = fc.net.encode(rows)
        want = fc.net.recursive_params(encoded)
        state, got = fc.net.init_state(2), []
        for t in range(13):
            raw, state = fc.net.step(rows[:, t], state)
            got.append(raw)
    torch.testing.assert_close(torch.stack(got, 1), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", ["recursive", "direct"])
def test_predict_from_a_saved_state_equals_predict_from_history(strategy):
    df = seasonal(60, ids=("a", "b"))
    fc = Forecaster("mingru", h=5, input_size=12, strategy=strategy, **{**FAST, "max_steps": 30}).fit(df)
    want = fc.predict(df)
    buffer = io.BytesIO()
    torch.save(fc.state_, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    pd.testing.assert_frame_equal(fc.predict(state=saved), want)
    assert saved.ids == ["a", "b"]


def test_future_covariates_are_used_and_required():
    rng = np.random.default_rng(0)
    n = 200
    x = rng.standard_normal(n)
    df = pd.DataFrame({"unique_id": "a", "ds": np.arange(n), "y": 5 * x, "x": x})
    train, test = df.iloc[:-6], df.iloc[-6:]
    fc = Forecaster(h=6, input_size=12, strategy="direct", futr_exog_list=["x"], loss="mse", level=[],
                    **{**FAST, "max_steps": 300})
    fc.fit(train)
    out = fc.predict(futr_df=test[["unique_id", "ds", "x"]]).merge(test, on=["unique_id", "ds"])
    assert (out.lstm - out.y).abs().mean() < 0.3 * out.y.abs().mean()
    with pytest.raises(DataError, match="pass futr_df"):
        fc.predict()
    with pytest.raises(DataError, match="no value of \\['x'\\] for series 'a' at 197"):
        fc.predict(futr_df=test[["unique_id", "ds", "x"]].iloc[:3])


def test_past_and_static_covariates_fit_and_static_rows_are_required():
    df = seasonal(50, ids=("a", "b")).assign(p=lambda d: d.y.shift(1).fillna(0))
    static = pd.DataFrame({"unique_id": ["a", "b"], "s": [0.0, 1.0]})
    fc = Forecaster(h=4, input_size=8, strategy="direct", hist_exog_list=["p"], stat_exog_list=["s"],
                    **{**FAST, "max_steps": 20})
    assert len(fc.fit(df, static_df=static).predict()) == 8
    with pytest.raises(DataError, match="static_df has no row for series"):
        Forecaster(h=4, input_size=8, stat_exog_list=["s"], **FAST).fit(df, static_df=static.iloc[:1])


def test_missing_values_are_masked_with_a_warning_and_forecasts_stay_finite():
    df = seasonal(60)
    df.loc[[10, 11, 58], "y"] = np.nan
    fc = Forecaster(h=4, input_size=8, **{**FAST, "max_steps": 20})
    with pytest.warns(UserWarning, match="3 missing y values"):
        fc.fit(df)
    out = fc.predict()
    assert np.isfinite(out.drop(columns=["unique_id", "ds"]).to_numpy()).all()


def test_short_series_are_padded_with_a_warning():
    df = pd.concat([seasonal(60, ids=("long",)), seasonal(6, ids=("short",))])
    fc = Forecaster(h=4, input_size=12, **{**FAST, "max_steps": 20})
    with pytest.warns(UserWarning, match="shorter than the 16 steps"):
        fc.fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fc.predict(level=[])
    assert out.groupby("unique_id").size().to_dict() == {"long": 4, "short": 4}


def test_negative_binomial_forecasts_counts():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"unique_id": "c", "ds": np.arange(150), "y": rng.poisson(4.0, 150).astype(float)})
    fc = Forecaster(h=5, input_size=10, loss="negative_binomial", scaler="mean_abs", **{**FAST, "max_steps": 200})
    out = fc.fit(df).predict()
    assert (out["lstm-lo-95"] >= 0).all() and out.lstm.mean() == pytest.approx(4.0, abs=1.0)
    assert np.array_equal(out["lstm-hi-95"], out["lstm-hi-95"].round())
    with pytest.raises(DataError, match="non-negative integer counts"):
        fc.fit(df.assign(y=df.y + 0.5))


def test_quantile_loss_levels_and_mse_point_forecasts():
    df = seasonal(60)
    fc = Forecaster(h=4, input_size=8, loss="quantile", level=[80], **{**FAST, "max_steps": 30}).fit(df)
    out = fc.predict()
    assert (out["lstm-lo-80"] <= out.lstm).all() and (out.lstm <= out["lstm-hi-80"]).all()
    with pytest.raises(ConfigError, match="trained for level=\\[80\\]"):
        fc.predict(level=[95])
    mse = Forecaster(h=4, input_size=8, loss="mse", level=[], **{**FAST, "max_steps": 10}).fit(df)
    assert list(mse.predict().columns) == ["unique_id", "ds", "lstm"]
    with pytest.raises(ConfigError, match="point forecasts only"):
        mse.predict(level=[80])


def test_validation_keeps_the_best_weights_and_records_losses():
    fc = Forecaster(h=4, input_size=8, val_check_steps=10, early_stop_patience=2, **{**FAST, "max_steps": 200})
    fc.fit(seasonal(80), val_size=8)
    steps = [s for s, _ in fc.valid_losses]
    assert steps[0] == 10 and steps == sorted(steps) and len(fc.train_losses) == steps[-1]


@pytest.mark.parametrize("refit", [True, False])
def test_cross_validation_windows_and_cutoffs(refit, monkeypatch):
    df = seasonal(40, ids=("a", "b"), freq=None)
    df = df[~((df.unique_id == "b") & (df.ds < 5))]  # series end together but start apart
    fc = Forecaster(h=3, input_size=6, **{**FAST, "max_steps": 10})
    fits = []
    original = Forecaster.fit
    monkeypatch.setattr(Forecaster, "fit", lambda self, d, **kw: fits.append(len(d)) or original(self, d, **kw))
    cv = fc.cross_validation(df, n_windows=3, step_size=2, refit=refit, level=[80])
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "lstm", "lstm-lo-80", "lstm-hi-80"]
    assert len(cv) == 2 * 3 * 3
    assert sorted(cv.cutoff.unique()) == [32, 34, 36]
    assert (cv.ds > cv.cutoff).all() and (cv.ds <= cv.cutoff + 3).all()
    merged = cv.merge(df, on=["unique_id", "ds"], suffixes=("", "_true"))
    np.testing.assert_array_equal(merged.y, merged.y_true)
    assert len(fits) == (3 if refit else 1)
    with pytest.raises(DataError, match="windows of h=3 every 2 steps need at least 8"):
        fc.cross_validation(df.groupby("unique_id").head(7), n_windows=3, step_size=2)


def test_datetime_ids_and_frequency_in_output():
    df = seasonal(48, ids=(1.0,), freq="ME")
    out = Forecaster(h=3, input_size=12, **{**FAST, "max_steps": 5}).fit(df).predict(level=[])
    assert out.unique_id.tolist() == [1.0] * 3
    assert out.ds.tolist() == list(pd.date_range(df.ds.iloc[-1], periods=4, freq="ME")[1:])
