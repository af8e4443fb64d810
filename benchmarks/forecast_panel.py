"""Forecast accuracy of rnnzoo mixers on the real-series panel, against AutoARIMA, AutoETS, SeasonalNaive and Naive2.

    .venv/bin/python benchmarks/forecast_panel.py                              # 11 series, 4 mixers, 3 seeds
    .venv/bin/python benchmarks/forecast_panel.py --configs recursive,direct   # compare the two strategies
    .venv/bin/python benchmarks/forecast_panel.py --series airline,nile --mixers lstm --seeds 1
    .venv/bin/python benchmarks/forecast_panel.py --quick                      # smoke run: 2 series, 1 seed, 20 steps

Protocol. Every series of rnnzoo.forecast.datasets.PANEL is evaluated by rolling-origin cross-validation: --windows
windows of the series' horizon h, h steps apart, the last ending at the series' end; every model is refitted from
scratch on each window's past (Forecaster.cross_validation with refit=True, baseline_cross_validation). Each rnnzoo
mixer is trained once per configuration and seed (seeds 0..--seeds-1); the baselines are deterministic and run once.

Neural settings (CONFIGS, COMMON): one layer of d_model units, Normal likelihood (loss="normal"), per-window
standard scaling, --max-steps Adam steps of 64 windows, intervals from 200 sample paths. input_size is
max(2h, 3m) (two horizons, or three seasons of m steps), capped so that the first window's training part still
holds at least MIN_TRAIN_WINDOWS distinct training windows (it binds only on shampoo_sales, 36 values), and
never below h.

Metrics (rnnzoo.forecast.metrics.evaluate): MASE, sMAPE, scaled CRPS, coverage of the 80% and 95% intervals,
each averaged over the windows of a series. Panel values are the means over series of the per-series values.
OWA follows the M4 competition guide: per series, OWA = 0.5 (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) on that
series' window means; for the panel, OWA = 0.5 (mean sMAPE / mean sMAPE_Naive2 + mean MASE / mean MASE_Naive2), the
ratio of panel means (not the mean of the per-series OWAs, which is reported beside it as "mean series OWA"). For a
neural model both are computed per seed; the tables give mean +- std (ddof=1) over seeds. The issue's target is
that the best rnnzoo (mixer, configuration) has a panel OWA (seed mean) at most AutoARIMA's.

Fits are small, so they run --jobs at a time in worker processes with one torch thread each. An estimate of the
run time, from a short calibration of each mixer here, is printed first. Writes
benchmarks/results/forecast_panel.json (every series, model, configuration and seed) and forecast_panel.md (the
tables); --quick writes forecast_panel_quick.json / .md instead.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402

from rnnzoo.errors import DataError  # noqa: E402
from rnnzoo.forecast import Forecaster  # noqa: E402
from rnnzoo.forecast.baselines import DEFAULT_MODELS, baseline_cross_validation  # noqa: E402
from rnnzoo.forecast.datasets import PANEL, load_series  # noqa: E402
from rnnzoo.forecast.metrics import evaluate  # noqa: E402
from rnnzoo.mixers import available_mixers  # noqa: E402

LEVELS = (80, 95)
METRICS = ["MASE", "sMAPE", "OWA", "scaled_CRPS", "coverage-80", "coverage-95", "MAE", "RMSE"]
MIN_TRAIN_WINDOWS = 12
COMMON = dict(loss="normal", scaler="standard", n_layers=1, batch_size=64, lr=1e-3, num_samples=200, level=LEVELS)
CONFIGS = {
    "recursive": dict(strategy="recursive", d_model=64),  # DeepAR-style: one step at a time, draws fed back
    "direct": dict(strategy="direct", d_model=64),  # MQ-RNN-style: all h steps from the last encoder state
    "recursive_d32": dict(strategy="recursive", d_model=32),
    "direct_d32": dict(strategy="direct", d_model=32),
}
QUICK_SERIES = ["airline", "nile"]


def input_size(name: str, n_windows: int) -> int:
    """max(2h, 3m), capped to leave MIN_TRAIN_WINDOWS training windows in the first fold, at least h."""
    info = PANEL[name]
    n_first = len(load_series(name)) - n_windows * info.h  # training values of the first window
    room = n_first - info.h - MIN_TRAIN_WINDOWS + 1  # the longest context that leaves that many windows
    return max(info.h, min(max(2 * info.h, 3 * info.season_length), room))


def make_forecaster(series: str, mixer: str, config: str, seed: int, max_steps: int, n_windows: int) -> Forecaster:
    info = PANEL[series]
    return Forecaster(mixer=mixer, h=info.h, input_size=input_size(series, n_windows), freq=info.freq,
                      max_steps=max_steps, seed=seed, **COMMON, **CONFIGS[config])


def run_neural(series: str, mixer: str, config: str, seed: int, max_steps: int, n_windows: int) -> dict:
    """One (series, mixer, configuration, seed): its cross-validation frame, or the error that stopped it."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        fc = make_forecaster(series, mixer, config, seed, max_steps, n_windows)
        cv = fc.cross_validation(load_series(series), n_windows=n_windows, step_size=PANEL[series].h, refit=True)
        error = None
    except Exception as e:  # a diverged or failed fit is reported in the results, not allowed to end the run
        cv, error = None, f"{type(e).__name__}: {e}"
    return {"series": series, "mixer": mixer, "config": config, "seed": seed, "cv": cv, "error": error,
            "seconds": time.perf_counter() - t0}


def run_baselines(series: str, n_windows: int) -> dict:
    info = PANEL[series]
    t0 = time.perf_counter()
    cv = baseline_cross_validation(load_series(series), h=info.h, n_windows=n_windows, step_size=info.h,
                                   freq=info.freq, season_length=info.season_length, levels=LEVELS)
    return {"series": series, "cv": cv, "seconds": time.perf_counter() - t0}


def calibrate(mixers: list[str], configs: list[str], series: str, n_windows: int) -> dict[tuple[str, str], float]:
    """Seconds per training step of each (mixer, config) on ``series``, from two short fits (their difference
    drops the fixed costs). Per-step cost grows with the window, so the longest-window series gives an upper
    estimate."""
    torch.set_num_threads(1)
    df = load_series(series).iloc[:-PANEL[series].h]
    out = {}
    for mixer in mixers:
        for config in configs:
            times = []
            for steps in (3, 13):
                t0 = time.perf_counter()
                make_forecaster(series, mixer, config, 0, steps, n_windows).fit(df)
                times.append(time.perf_counter() - t0)
            out[mixer, config] = max(times[1] - times[0], 1e-4) / 10
    return out


def score_series(base_cv: pd.DataFrame, series: str, neural: dict | None = None) -> pd.DataFrame:
    """Per-model metrics on one series (window means): the baselines, or one neural run scored beside Naive2."""
    info = PANEL[series]
    history = load_series(series)
    if neural is None:
        return evaluate(base_cv, history, list(DEFAULT_MODELS), info.season_length, levels=LEVELS)
    keys = ["unique_id", "ds", "cutoff"]
    naive2 = [c for c in base_cv.columns if c == "Naive2" or c.startswith("Naive2-")]
    merged = neural["cv"].drop(columns="y").merge(base_cv[keys + ["y"] + naive2], on=keys, how="inner",
                                                  validate="one_to_one")
    if len(merged) != len(base_cv):
        raise RuntimeError(f"{series}: the neural and baseline windows do not line up ({len(merged)} of "
                           f"{len(base_cv)} rows match); both should cut at the same ds")
    scores = evaluate(merged, history, [neural["mixer"], "Naive2"], info.season_length, levels=LEVELS)
    return scores[scores["model"] == neural["mixer"]]


def panel_values(rows: pd.DataFrame, naive2: pd.DataFrame) -> dict:
    """Panel metrics of one model from its per-series rows: means over series, M4 OWA from the means."""
    means = {m: float(rows[m].mean()) for m in METRICS if m != "OWA"}
    ref_smape, ref_mase = float(naive2["sMAPE"].mean()), float(naive2["MASE"].mean())
    means["OWA"] = 0.5 * (means["sMAPE"] / ref_smape + means["MASE"] / ref_mase)
    means["mean_series_OWA"] = float(rows["OWA"].mean())
    return means


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--series", help=f"comma-separated panel series (default: all of {','.join(PANEL)})")
    ap.add_argument("--mixers", default="lstm,gru,mingru,mamba2", help="comma-separated rnnzoo mixers")
    ap.add_argument("--configs", default="recursive", help=f"comma-separated, from {','.join(CONFIGS)}")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per neural model")
    ap.add_argument("--windows", type=int, default=3, help="cross-validation windows per series")
    ap.add_argument("--max-steps", type=int, default=500, help="training steps per fit")
    ap.add_argument("--jobs", type=int, default=2, help="fits at once, each in its own process on one thread")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 series, 1 seed, 20 steps")
    args = ap.parse_args()
    series = args.series.split(",") if args.series else (QUICK_SERIES if args.quick else list(PANEL))
    mixers, configs = args.mixers.split(","), args.configs.split(",")
    if args.quick:
        series, args.seeds, args.max_steps = series[:2], 1, 20
    for what, names, known in (("series", series, list(PANEL)), ("mixer", mixers, available_mixers()),
                               ("config", configs, list(CONFIGS))):
        bad = [n for n in names if n not in known]
        if bad:
            ap.error(f"unknown {what} {bad}; choose from {known}")
    for name, v in (("--seeds", args.seeds), ("--windows", args.windows), ("--max-steps", args.max_steps),
                    ("--jobs", args.jobs)):
        if v < 1:
            ap.error(f"{name} must be >= 1, got {v}")
    sizes = {s: input_size(s, args.windows) for s in series}
    info = {s: {"freq": PANEL[s].freq, "season_length": PANEL[s].season_length, "h": PANEL[s].h,
                "n": len(load_series(s)), "input_size": sizes[s]} for s in series}

    longest = max(series, key=lambda s: sizes[s] + PANEL[s].h)
    per_step = calibrate(mixers, configs, longest, args.windows)
    fit_s = {k: v * args.max_steps for k, v in per_step.items()}
    neural_s = len(series) * args.seeds * args.windows * sum(fit_s.values())
    n_tasks = len(series) * len(mixers) * len(configs) * args.seeds
    print(f"{n_tasks} neural runs of {args.windows} fits each + {len(series)} baseline runs on {args.jobs} "
          f"process(es); calibrated on {longest}: " +
          ", ".join(f"{m}/{c} {1000 * v:.0f} ms/step" for (m, c), v in per_step.items()) +
          f"\nestimated run time: about {neural_s / args.jobs / 60:.1f} min for the neural fits (an upper "
          "estimate at this machine's current load), plus the baselines", flush=True)

    t_start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    base, runs = {}, []
    with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
        # the slowest runs first, so that no long fit starts last
        tasks = sorted(((s, m, c, seed) for s in series for m in mixers for c in configs
                        for seed in range(args.seeds)),
                       key=lambda t: -fit_s[t[1], t[2]] * (sizes[t[0]] + PANEL[t[0]].h))
        futures = [pool.submit(run_baselines, s, args.windows) for s in series]
        futures += [pool.submit(run_neural, *t, args.max_steps, args.windows) for t in tasks]
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            if "mixer" in r:
                runs.append(r)
                what = f"{r['mixer']}/{r['config']} seed {r['seed']}"
                what += f" FAILED: {r['error']}" if r["error"] else ""
            else:
                base[r["series"]] = r
                what = "baselines"
            print(f"[{i}/{len(futures)}] {r['series']}: {what} ({r['seconds']:.0f} s, "
                  f"{(time.perf_counter() - t_start) / 60:.1f} min elapsed)", flush=True)
    elapsed = time.perf_counter() - t_start

    # ---- per-series scores ----
    rows = []
    for s in series:
        for r in score_series(base[s]["cv"], s).to_dict("records"):
            rows.append({"series": s, "model": r["model"], "config": None, "seed": None,
                         "seconds": base[s]["seconds"], **{m: r[m] for m in METRICS}})
    errors = []
    for r in runs:
        if r["error"] is None:
            try:
                score = score_series(base[r["series"]]["cv"], r["series"], r).iloc[0]
            except DataError as e:  # e.g. a non-finite forecast from a diverged fit
                r["error"] = f"scoring: {e}"
        if r["error"]:
            errors.append({k: r[k] for k in ("series", "mixer", "config", "seed", "error")})
            continue
        rows.append({"series": r["series"], "model": r["mixer"], "config": r["config"], "seed": r["seed"],
                     "seconds": r["seconds"], **{m: float(score[m]) for m in METRICS}})
    scores = pd.DataFrame(rows)
    naive2 = scores[scores["model"] == "Naive2"].set_index("series").loc[series]

    # ---- panel: baselines once, neural per seed then mean +- std over seeds ----
    panel = []
    for model in DEFAULT_MODELS:
        part = scores[scores["model"] == model]
        panel.append({"model": model, "config": None, "seeds": None, **{k: {"mean": v, "std": 0.0} for k, v in
                                                                        panel_values(part, naive2).items()},
                      "run_seconds": float(part["seconds"].sum())})
    per_series = []
    for m in mixers:
        for c in configs:
            part = scores[(scores["model"] == m) & (scores["config"] == c)]
            complete = [seed for seed, g in part.groupby("seed") if len(g) == len(series)]
            if not complete:
                continue  # every seed lost a series to an error, listed in errors
            seed_panels = [panel_values(part[part["seed"] == seed], naive2) for seed in complete]
            panel.append({"model": m, "config": c, "seeds": len(complete),
                          **{k: spread([p[k] for p in seed_panels]) for k in seed_panels[0]},
                          "run_seconds": float(part["seconds"].sum())})
            for s, g in part.groupby("series", sort=False):
                per_series.append({"series": s, "model": m, "config": c,
                                   **{k: spread(g[k].tolist()) for k in METRICS}})
    panel.sort(key=lambda p: p["OWA"]["mean"])

    def pm(v: dict, fmt: str = ".3f") -> str:
        return f"{v['mean']:{fmt}}" + (f" ± {v['std']:{fmt}}" if v["std"] else "")

    label = {(p["model"], p["config"]): p["model"] + (f"/{p['config']}" if p["config"] else "") for p in panel}
    panel_table = markdown_table(
        ["model", "seeds", "OWA", "mean series OWA", "MASE", "sMAPE", "scaled CRPS", "cover 80", "cover 95",
         "run s"],
        [[label[p["model"], p["config"]], p["seeds"] or "-", pm(p["OWA"]), pm(p["mean_series_OWA"]),
          pm(p["MASE"]), pm(p["sMAPE"], ".2f"), pm(p["scaled_CRPS"]), pm(p["coverage-80"], ".2f"),
          pm(p["coverage-95"], ".2f"), f"{p['run_seconds']:.0f}"] for p in panel])
    owa_of = {(r["series"], r["model"], r["config"]): r["OWA"]["mean"] for r in per_series}
    owa_of |= {(r.series, r.model, None): r.OWA for r in scores[scores["config"].isna()].itertuples()}
    series_table = markdown_table(
        ["series", "m", "h", "input"] + [label[p["model"], p["config"]] for p in panel],
        [[s, PANEL[s].season_length, PANEL[s].h, sizes[s]] +
         [f"{owa_of[s, p['model'], p['config']]:.3f}" if (s, p["model"], p["config"]) in owa_of else "-"
          for p in panel] for s in series])

    arima = next(p for p in panel if p["model"] == "AutoARIMA")["OWA"]["mean"]
    neural = [p for p in panel if p["config"]]
    if neural:
        best = neural[0]
        met = best["OWA"]["mean"] <= arima
        verdict = (f"Target {'MET' if met else 'NOT MET'}: the best rnnzoo configuration, "
                   f"{label[best['model'], best['config']]}, has panel OWA {pm(best['OWA'])} (mean over "
                   f"{best['seeds']} seed{'s' if best['seeds'] > 1 else ''}), {'at most' if met else 'above'} "
                   f"AutoARIMA's {arima:.3f}.")
    else:
        met, verdict = False, "Target NOT MET: no rnnzoo configuration completed every series."
    head = (f"{len(series)} series, {args.windows} rolling windows of h, {args.max_steps} steps, "
            f"configs {','.join(configs)}; neural: mean ± std over seeds; run s: wall seconds of a model's runs "
            "summed (the four baselines share one run per series, counted in full on each of their rows)")
    text = (f"{head}\n\nPanel (OWA = M4 ratio of panel means vs Naive2; lower is better):\n\n{panel_table}\n\n"
            f"OWA per series (neural: mean over seeds):\n\n{series_table}\n\n{verdict}")
    if errors:
        text += "\n\nFailed runs (left out of the panel):\n" + "\n".join(
            f"- {e['series']} {e['mixer']}/{e['config']} seed {e['seed']}: {e['error']}" for e in errors)
    print("\n" + text + f"\n\nelapsed {elapsed / 60:.1f} min")

    name = "forecast_panel_quick" if args.quick else "forecast_panel"
    (RESULTS_DIR / f"{name}.md").write_text(text + "\n")
    path = write_results(name, {
        "config": {"series": series, "mixers": mixers, "configs": {c: CONFIGS[c] for c in configs},
                   "common": {k: list(v) if isinstance(v, tuple) else v for k, v in COMMON.items()},
                   "seeds": args.seeds, "windows": args.windows, "max_steps": args.max_steps, "jobs": args.jobs,
                   "baselines": list(DEFAULT_MODELS)},
        "series_info": info, "calibration_s_per_step": {f"{m}/{c}": v for (m, c), v in per_step.items()},
        "elapsed_s": elapsed, "panel": panel, "per_series_over_seeds": per_series,
        "runs": rows, "errors": errors,
        "target_met": met, "verdict": verdict, "tables": {"panel": panel_table, "per_series_owa": series_table}})
    print(f"\nresults: {path}\ntables: {RESULTS_DIR / f'{name}.md'}")


if __name__ == "__main__":
    main()
