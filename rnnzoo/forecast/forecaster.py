"""``Forecaster``: fit any registered mixer to many series in long format; predict, with intervals; backtest.

    fc = Forecaster(mixer="lstm", h=12, input_size=24, loss="normal", freq="MS")
    fc.fit(df, val_size=12)                       # df: unique_id, ds, y (+ covariates)
    fc.predict(level=[80, 95])                    # unique_id, ds, lstm, lstm-lo-95, lstm-lo-80, lstm-hi-80, ...
    fc.cross_validation(df, n_windows=3)          # + cutoff and y; refit=True retrains from scratch per window
    fc.state_                                     # the network's state after reading each series (ForecastState)
    fc.predict(state=saved_state)                 # continue from a saved state without the history

One global model is trained on windows sampled from every series (input_size context steps, then h targets);
each window is scaled by the statistics of its context (``scaler``, ``scale_by="window"``) or of its whole
series (``scale_by="series"``: the history given to fit or predict). See rnnzoo/models/forecast.py for the two
strategies and rnnzoo/models/distributions.py for the likelihoods.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rnnzoo.errors import ConfigError, DataError, NotFittedError
from rnnzoo.forecast.data import (SCALERS, Columns, Panel, build_panel, calendar_names, calendar_features,
                                  check_long, future_times, infer_freq, scale_stats, warn_nan)
from rnnzoo.mixers import select_state
from rnnzoo.models.distributions import HEADS, NegativeBinomialHead, QuantileHead, build_head
from rnnzoo.models.forecast import STRATEGIES, ForecastNet
from rnnzoo.train.optim import AdamW


@dataclass
class ForecastState:
    """Where the network stands after reading each series' last ``input_size`` steps: enough to forecast
    without the history. ``carry`` is the last (z, observed) pair (recursive) or the last encoder output (direct).
    Save it with torch.save and pass it to ``predict(state=...)``."""

    ids: list
    mixer_state: object
    carry: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    last_time: list
    static: torch.Tensor


def _check_int(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")


def _check_levels(level) -> list:
    levels = [] if level is None else list(level)
    for lv in levels:
        if isinstance(lv, bool) or not isinstance(lv, (int, float)) or not 0 < lv < 100:
            raise ConfigError(f"level values are interval coverages in (0, 100), e.g. [80, 95]; got {lv!r}")
    return sorted(levels)


class Forecaster:
    def __init__(self, mixer: str = "lstm", h: int = 1, input_size: int | None = None, *,
                 strategy: str = "recursive", loss: str = "normal", level=(80, 95), scaler: str | None = "standard",
                 scale_by: str = "window",
                 freq=None, d_model: int = 64, n_layers: int = 1, residual: bool = False, dropout: float = 0.0,
                 decoder_hidden: int = 128, max_steps: int = 500, batch_size: int = 64, lr: float = 1e-3,
                 weight_decay: float = 0.0, grad_clip: float = 1.0, val_check_steps: int = 50,
                 early_stop_patience: int | None = None, num_samples: int = 200, futr_exog_list=(),
                 hist_exog_list=(), stat_exog_list=(), alias: str | None = None, seed: int = 0,
                 id_col: str = "unique_id", time_col: str = "ds", target_col: str = "y", **mixer_options):
        _check_int("h", h, 1)
        input_size = 2 * h if input_size is None else input_size
        _check_int("input_size", input_size, 1)
        for name, value in (("max_steps", max_steps), ("batch_size", batch_size), ("num_samples", num_samples),
                            ("val_check_steps", val_check_steps), ("n_layers", n_layers), ("d_model", d_model)):
            _check_int(name, value, 1)
        if strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be 'recursive' (feed forecasts back) or 'direct' (all h steps at "
                              f"once), got {strategy!r}")
        if loss not in HEADS:
            raise ConfigError(f"unknown loss {loss!r}; choose one of {', '.join(HEADS)}")
        if scaler not in SCALERS:
            raise ConfigError(f"unknown scaler {scaler!r}; choose one of {SCALERS}")
        if scale_by not in ("window", "series"):
            raise ConfigError(f"scale_by must be 'window' (each window's context) or 'series' (the whole history), "
                              f"got {scale_by!r}")
        if loss == "negative_binomial" and scaler not in ("mean_abs", None):
            raise ConfigError("loss='negative_binomial' models counts, which a shift would break: use "
                              "scaler='mean_abs' or None")
        if hist_exog_list and strategy == "recursive":
            raise ConfigError("past-only covariates (hist_exog_list) are unknown beyond the forecast origin, which "
                              "the recursive strategy would need: use strategy='direct'")
        self.level = _check_levels(level)
        self.h, self.input_size, self.strategy, self.loss, self.scaler = h, input_size, strategy, loss, scaler
        self.scale_by = scale_by
        self.freq = freq
        self.net_options = dict(mixer=mixer, d_model=d_model, n_layers=n_layers, residual=residual,
                                dropout=dropout, decoder_hidden=decoder_hidden, **mixer_options)
        self.max_steps, self.batch_size, self.lr, self.weight_decay = max_steps, batch_size, lr, weight_decay
        self.grad_clip, self.val_check_steps, self.early_stop_patience = grad_clip, val_check_steps, early_stop_patience
        self.num_samples, self.seed = num_samples, seed
        self.futr_exog, self.hist_exog = list(futr_exog_list), list(hist_exog_list)
        self.stat_exog = list(stat_exog_list)
        self.alias = alias or mixer
        self.cols = Columns(id_col, time_col, target_col)
        self.net: ForecastNet | None = None
        self._static_map: dict | None = None
        self.state_: ForecastState | None = None
        self.train_losses: list[float] = []
        self.valid_losses: list[tuple[int, float]] = []

    def _head(self):
        if self.loss != "quantile":
            return build_head(self.loss)
        qs = [0.5] + [q for lv in self.level for q in ((1 - lv / 100) / 2, 1 - (1 - lv / 100) / 2)]
        return QuantileHead(sorted(set(qs)))

    # ---- data -> tensors ----

    def _frame(self, df, what="df"):
        out = check_long(df, self.cols, self.futr_exog + self.hist_exog, what)
        if self.loss == "negative_binomial":
            y = out[self.cols.target].dropna().to_numpy()
            if (y < 0).any() or (y != np.round(y)).any():
                raise DataError(f"loss='negative_binomial' needs non-negative integer counts in {what}"
                                f"[{self.cols.target!r}]")
        return out

    def _statics(self, static_df, ids) -> dict | None:
        if not self.stat_exog:
            return None
        if static_df is None:
            if self._static_map is not None and all(u in self._static_map for u in ids):
                return self._static_map
            raise DataError(f"stat_exog_list={self.stat_exog} needs static_df with {self.cols.id} and those columns")
        missing = [c for c in [self.cols.id, *self.stat_exog] if c not in static_df.columns]
        if missing:
            raise DataError(f"static_df lacks the column(s) {', '.join(map(repr, missing))}")
        rows = static_df[[self.cols.id, *self.stat_exog]].itertuples(index=False)
        table = {r[0]: np.asarray(r[1:], np.float32) for r in rows}
        absent = [u for u in ids if u not in table]
        if absent:
            raise DataError(f"static_df has no row for series {absent[:5]}")
        return table

    def _panel(self, df, static_df, min_length: int) -> Panel:
        ids = list(pd.unique(df[self.cols.id]))
        return build_panel(df, self.cols, self.freq_, self.futr_exog, self.hist_exog, self._statics(static_df, ids),
                           min_length)

    def _rows(self, y, obs, futr, hist, static, loc, scale):
        """Network input rows for windows: y, obs (B, L), futr (B, L, F), hist (B, L, P), static (B, K)."""
        z = torch.where(obs, (y - loc) / scale, torch.zeros_like(y))  # (B, L)
        parts = [z, obs.to(z.dtype)]
        if self.strategy == "recursive":  # row t carries the value of step t - 1
            parts = [torch.nn.functional.pad(p[:, :-1], (1, 0)) for p in parts]
        rows = [parts[0].unsqueeze(-1), parts[1].unsqueeze(-1)]
        if self.strategy == "direct":
            rows.append(hist)
        rows += [futr, static.unsqueeze(1).expand(-1, y.shape[1], -1)]
        return torch.cat(rows, -1)  # (B, L, n_inputs)

    def _n_inputs(self, n_futr, n_hist, n_static):
        return 2 + n_futr + n_static + (n_hist if self.strategy == "direct" else 0)

    # ---- training ----

    def fit(self, df, val_size: int = 0, static_df=None) -> Forecaster:
        """Train a fresh network on every series of ``df``; the last ``val_size`` steps of each series are held
        out for validation (early stopping when ``early_stop_patience`` is set; the best weights are kept)."""
        _check_int("val_size", val_size, 0)
        if 0 < val_size < self.h:
            raise ConfigError(f"val_size must be 0 or at least h={self.h}, got {val_size}")
        df = self._frame(df)
        warn_nan(df, self.cols)
        self.freq_ = infer_freq(df, self.cols, self.freq)
        self._static_map = None  # a previous fit's statics must not answer for this data
        self._static_map = self._statics(static_df, list(pd.unique(df[self.cols.id])))
        panel = self._panel(df, static_df, self.input_size + self.h)
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
            torch.manual_seed(self.seed)
            gen = torch.Generator().manual_seed(self.seed)
            head = self._head()
            n_futr = len(self.futr_exog) + len(calendar_names(self.freq_))
            self.net = ForecastNet(self._n_inputs(n_futr, len(self.hist_exog), len(self.stat_exog)), head,
                                   strategy=self.strategy, h=self.h, n_future=n_futr, **self.net_options)
            tensors = self._tensors(panel)
            C, L = self.input_size, self.input_size + self.h
            N = panel.y.shape[1]
            starts = np.arange(N - L + 1)
            observed = np.lib.stride_tricks.sliding_window_view(panel.observed[:, C:], self.h, axis=1)  # (S, N-L+1, h)
            has_target = observed.any(-1)
            train_ok = has_target & (starts + L <= N - val_size)[None]
            valid_ok = has_target & (starts + C >= N - val_size)[None] if val_size else np.zeros_like(has_target)
            if not train_ok.any():
                raise DataError(f"no training window of {C} + {self.h} steps with an observed target remains after "
                                f"holding out val_size={val_size}; use smaller input_size, h or val_size")
            train_idx = torch.from_numpy(np.argwhere(train_ok))  # (n, 2): series, start
            valid_idx = torch.from_numpy(np.argwhere(valid_ok))
            opt = AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            best, best_loss, bad = None, math.inf, 0
            self.train_losses, self.valid_losses = [], []
            for step in range(self.max_steps):
                opt.lr = self.lr * (  # cosine decay to 10%
                    0.1 + 0.45 * (1 + math.cos(math.pi * step / self.max_steps)))
                self.net.train()
                pick = train_idx[torch.randint(len(train_idx), (self.batch_size,), generator=gen)]
                loss = self._window_loss(tensors, pick)
                opt.zero_grad()
                loss.backward()
                if self.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
                opt.step()
                self.train_losses.append(loss.item())
                last = step + 1 == self.max_steps
                if len(valid_idx) and ((step + 1) % self.val_check_steps == 0 or last):
                    self.net.eval()
                    with torch.no_grad():
                        v = float(np.mean([self._window_loss(tensors, chunk).item()
                                           for chunk in valid_idx.split(1024)]))
                    self.valid_losses.append((step + 1, v))
                    if v < best_loss:
                        best, best_loss, bad = copy.deepcopy(self.net.state_dict()), v, 0
                    else:
                        bad += 1
                        if self.early_stop_patience is not None and bad >= self.early_stop_patience:
                            break
        if best is not None:
            self.net.load_state_dict(best)
        self.net.eval()
        with torch.no_grad():  # the training panel ends with each series' last input_size steps, as _encode reads
            self.state_ = self._encode(panel)
        return self

    def _tensors(self, panel: Panel) -> dict:
        y = torch.from_numpy(panel.y)
        obs, y = ~torch.isnan(y), torch.nan_to_num(y)
        loc, scale = scale_stats(y, obs, self.scaler)  # (S, 1): used when scale_by == "series"
        return dict(obs=obs, y=y, futr=torch.from_numpy(panel.futr), hist=torch.from_numpy(panel.hist),
                    static=torch.from_numpy(panel.static), loc=loc, scale=scale)

    def _window_loss(self, t: dict, pick: torch.Tensor) -> torch.Tensor:
        C, L = self.input_size, self.input_size + self.h
        series, pos = pick[:, 0], pick[:, 1:2] + torch.arange(L)  # (B,), (B, L)
        y, obs = t["y"][series[:, None], pos], t["obs"][series[:, None], pos]  # (B, L)
        futr, hist = t["futr"][series[:, None], pos], t["hist"][series[:, None], pos]  # (B, L, F), (B, L, P)
        static = t["static"][series]
        if self.scale_by == "series":
            loc, scale = t["loc"][series], t["scale"][series]  # (B, 1) each
        else:
            loc, scale = scale_stats(y[:, :C], obs[:, :C], self.scaler)
        head = self.net.head
        if self.strategy == "recursive":
            encoded, _ = self.net.encode(self._rows(y, obs, futr, hist, static, loc, scale))
            raw = self.net.recursive_params(encoded)[:, 1:]  # row 0 has no previous value
            return head.loss(raw, y[:, 1:], loc, scale, obs[:, 1:])
        encoded, _ = self.net.encode(self._rows(y[:, :C], obs[:, :C], futr[:, :C], hist[:, :C], static, loc, scale))
        raw = self.net.direct_params(encoded[:, -1], futr[:, C:])  # (B, h, n_params)
        return head.loss(raw, y[:, C:], loc, scale, obs[:, C:])

    # ---- forecasting ----

    def _encode(self, panel: Panel) -> ForecastState:
        """Read each series' last input_size steps."""
        t = self._tensors(panel)
        C = self.input_size
        y, obs, futr, hist = t["y"][:, -C:], t["obs"][:, -C:], t["futr"][:, -C:], t["hist"][:, -C:]
        loc, scale = (t["loc"], t["scale"]) if self.scale_by == "series" else scale_stats(y, obs, self.scaler)
        rows = self._rows(y, obs, futr, hist, t["static"], loc, scale)
        encoded, mixer_state = self.net.encode(rows)
        if self.strategy == "recursive":
            carry = torch.stack([torch.where(obs[:, -1], (y[:, -1] - loc[:, 0]) / scale[:, 0], torch.zeros(())),
                                 obs[:, -1].to(y.dtype)], -1)  # (S, 2)
        else:
            carry = encoded[:, -1]
        return ForecastState(list(panel.ids), mixer_state, carry, loc, scale, [tm[-1] for tm in panel.times],
                             t["static"])

    def _future_features(self, state: ForecastState, h: int, futr_df) -> torch.Tensor:
        """(S, h, F): future-known covariates from futr_df, then calendar features of the future timestamps."""
        times = [future_times(last, h, self.freq_) for last in state.last_time]
        cal = np.stack([calendar_features(t, self.freq_) for t in times])  # (S, h, k)
        if not self.futr_exog:
            return torch.from_numpy(cal)
        if futr_df is None:
            raise DataError(f"the model uses future-known covariates {self.futr_exog}: pass futr_df with "
                            f"{self.cols.id}, {self.cols.time} and those columns for the {h} future steps")
        missing = [c for c in [self.cols.id, self.cols.time, *self.futr_exog] if c not in futr_df.columns]
        if missing:
            raise DataError(f"futr_df lacks the column(s) {', '.join(map(repr, missing))}")
        table = futr_df.set_index([self.cols.id, self.cols.time])[self.futr_exog]
        out = np.zeros((len(times), h, len(self.futr_exog)), np.float32)
        for i, (uid, tm) in enumerate(zip(state.ids, times)):
            keys = pd.MultiIndex.from_arrays([[uid] * h, tm])
            found = table.reindex(keys)
            if found.isna().any().any():
                gap = keys[found.isna().any(axis=1).to_numpy()][0]
                raise DataError(f"futr_df has no value of {self.futr_exog} for series {uid!r} at {gap[1]}: future "
                                f"covariates must cover the {h} steps after each series' end")
            out[i] = found.to_numpy(np.float32)
        return torch.from_numpy(np.concatenate([out, cal], -1))

    def predict(self, df=None, h: int | None = None, futr_df=None, level=None, static_df=None,
                state: ForecastState | None = None) -> pd.DataFrame:
        """Forecast the h steps after the end of each series of ``df`` (default: the training data), or after
        a saved ``state``. Columns: id, ds, the model (mean of the sample paths for a likelihood, the median for
        quantile loss), and ``{alias}-lo-{level}`` / ``-hi-`` for each level (default: the constructor's)."""
        if self.net is None:
            raise NotFittedError("predict() before fit(): train the forecaster first")
        h = self.h if h is None else h
        _check_int("h", h, 1)
        if self.strategy == "direct" and h > self.h:
            raise ConfigError(f"a direct forecaster predicts at most its trained h={self.h} steps, asked for {h}; "
                              "use strategy='recursive' for longer horizons")
        levels = self.level if level is None else _check_levels(level)
        if levels and self.loss == "mse":
            raise ConfigError("loss='mse' gives point forecasts only: pass level=[] or train with a likelihood "
                              "such as loss='normal'")
        if self.loss == "quantile":
            trained = self._head().levels
            for lv in levels:
                if (1 - lv / 100) / 2 not in trained:
                    raise ConfigError(f"the quantile loss was trained for level={self.level}; {lv} is not one of them")
        with torch.no_grad():
            if state is None:
                if df is None:
                    state = self.state_
                else:
                    frame = self._frame(df)
                    warn_nan(frame, self.cols)
                    infer_freq(frame, self.cols, self.freq_)
                    state = self._encode(self._panel(frame, static_df, self.input_size))
                    self.state_ = state
            future = self._future_features(state, h, futr_df)
            point, bands = self._forecast(state, future, h, levels)
        rows = {self.cols.id: np.repeat(np.asarray(state.ids), h),
                self.cols.time: np.concatenate([future_times(t, h, self.freq_) for t in state.last_time]),
                self.alias: point.reshape(-1).numpy()}
        for lv in levels:
            lo, hi = bands[lv]
            rows[f"{self.alias}-lo-{lv:g}"] = lo.reshape(-1).numpy()
            rows[f"{self.alias}-hi-{lv:g}"] = hi.reshape(-1).numpy()
        return pd.DataFrame(rows)

    def _forecast(self, state: ForecastState, future: torch.Tensor, h: int, levels: list):
        """point (S, h) and {level: (lo, hi)} in the data's units."""
        head, S = self.net.head, len(state.ids)
        gen = torch.Generator().manual_seed(self.seed)
        if self.strategy == "direct":
            raw = self.net.direct_params(state.carry, torch.nn.functional.pad(future, (0, 0, 0, self.h - h)))[:, :h]
            loc, scale = state.loc, state.scale  # (S, 1)
            point = head.point(raw, loc, scale)
            if isinstance(head, QuantileHead):
                return point, {lv: (head.quantile_at(raw, loc, scale, (1 - lv / 100) / 2),
                                    head.quantile_at(raw, loc, scale, 1 - (1 - lv / 100) / 2)) for lv in levels}
            if not levels:
                return point, {}
            draws = torch.stack([head.sample(raw, loc, scale, gen) for _ in range(self.num_samples)], 1)  # (S, P, h)
            return point, self._bands(draws, levels)
        P = self.num_samples if head.stochastic else 1
        rep = torch.arange(S).repeat_interleave(P)  # path p of series s is row s * P + p
        mixer_state, carry = select_state(state.mixer_state, rep), state.carry[rep]
        loc, scale, static, future = state.loc[rep], state.scale[rep], state.static[rep], future[rep]
        draws, quantiles = [], []
        for k in range(h):
            row = torch.cat([carry, future[:, k], static], -1)  # (S*P, n_inputs)
            raw, mixer_state = self.net.step(row, mixer_state)
            y = head.sample(raw, loc[:, 0], scale[:, 0], gen)  # (S*P,)
            if isinstance(head, QuantileHead):
                quantiles.append(raw)
            draws.append(y)
            carry = torch.stack([(y - loc[:, 0]) / scale[:, 0], torch.ones_like(y)], -1)
        draws = torch.stack(draws, -1).view(S, P, h)
        if isinstance(head, QuantileHead):
            raw = torch.stack(quantiles, 1)  # (S, h, Q): each step's quantiles given the median path
            return draws[:, 0], {lv: (head.quantile_at(raw, state.loc, state.scale, (1 - lv / 100) / 2),
                                      head.quantile_at(raw, state.loc, state.scale, 1 - (1 - lv / 100) / 2))
                                 for lv in levels}
        return draws.mean(1), self._bands(draws, levels)

    def _bands(self, draws: torch.Tensor, levels: list) -> dict:
        # counts keep integer bounds: the nearest order statistic instead of interpolating between two
        how = "nearest" if isinstance(self.net.head, NegativeBinomialHead) else "linear"
        out = {}
        for lv in levels:
            q = torch.tensor([(1 - lv / 100) / 2, 1 - (1 - lv / 100) / 2], dtype=draws.dtype)
            lo, hi = torch.quantile(draws, q, dim=1, interpolation=how)  # (S, h) each
            out[lv] = (lo, hi)
        return out

    # ---- backtesting ----

    def cross_validation(self, df, h: int | None = None, n_windows: int = 1, step_size: int | None = None,
                         refit: bool = True, level=None, val_size: int = 0, static_df=None) -> pd.DataFrame:
        """Rolling-origin evaluation: n_windows forecasts of h steps, the last ending at each series' end,
        ``step_size`` (default h) apart. ``refit=True`` trains a fresh network (same seed) on the data before
        each cutoff; ``refit=False`` trains once, before the first cutoff, and reads the later histories.
        Returns id, ds, cutoff, y and the forecast columns; future covariates come from ``df`` itself."""
        h = self.h if h is None else h
        _check_int("h", h, 1)
        _check_int("n_windows", n_windows, 1)
        step_size = h if step_size is None else step_size
        _check_int("step_size", step_size, 1)
        frame = self._frame(df)
        infer_freq(frame, self.cols, self.freq)
        c = self.cols
        sizes = frame.groupby(c.id, sort=False).size()
        need = h + (n_windows - 1) * step_size + 1
        if (sizes < need).any():
            raise DataError(f"series {sizes[sizes < need].index[0]!r} has {int(sizes.min())} steps, but {n_windows} "
                            f"windows of h={h} every {step_size} steps need at least {need}")
        pos = frame.groupby(c.id, sort=False).cumcount().to_numpy()
        back = (frame[c.id].map(sizes).to_numpy() - 1) - pos  # steps before each series' end
        results = []
        for w in range(n_windows):
            offset = h + (n_windows - 1 - w) * step_size  # steps after the cutoff, to the series' end
            train = frame[back >= offset]
            future = frame[(back < offset) & (back >= offset - h)]
            if refit or w == 0:
                self.fit(train, val_size=val_size, static_df=static_df)
            fc = self.predict(train, h=h, futr_df=future if self.futr_exog else None, level=level,
                              static_df=static_df)
            cutoffs = train.groupby(c.id, sort=False)[c.time].last()
            fc.insert(2, "cutoff", fc[c.id].map(cutoffs).to_numpy())
            fc = fc.merge(future[[c.id, c.time, c.target]], on=[c.id, c.time], how="left")
            results.append(fc[[c.id, c.time, "cutoff", c.target, *fc.columns[3:-1]]])
        return pd.concat(results, ignore_index=True)
