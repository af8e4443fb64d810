"""Speed of every registered mixer at d_model=256, in three parts:

    train   training throughput: forward+backward on random input (B, T, d), tokens/s at T in {256, 1024, 4096},
            with torch.nn.LSTM(d, d, batch_first=True) and the "transformer" mixer measured in the same run
    memory  peak memory of one forward+backward at each T (resident-set high-water mark, see ``peak_rss_bytes``)
    stream  step() latency and state size after prefixes of {256, 4096, 65536} tokens (ops_speed.stream_rows)

    .venv/bin/python benchmarks/speed_all.py                      # full sizes, sized for ~25 min on 2 cores
    .venv/bin/python benchmarks/speed_all.py --only train         # one part: train, memory or stream
    .venv/bin/python benchmarks/speed_all.py --quick --mixers gru mingru   # tiny sizes, one repeat: a smoke run
    rnnzoo bench speed ...                                        # the same, through the CLI

Writes benchmarks/results/speed_all[_quick][_PART][_TAG].json, the log-log plots speed_all...{_train,_stream}.png
next to it, and prints markdown tables. Every time is the median of ``--repeats`` runs with the spread (min-max).

Full-run choices (2 cores): batch B=8 for training, 3 repeats, a forward+backward projected past 30 s is not run
(it and the larger T are marked skipped); stream: 50 step() calls per timing, 3 repeats, forward over a prefix
capped at 16384 tokens when it projects past 30 s. Before the run starts, one forward+backward per mixer at the
smallest T calibrates a printed estimate of the run time. The peers run first, each T with the same repeats as
the mixers (not interleaved with each mixer, which would triple the part's time); the ratios are peer time
over mixer time at the same T.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, markdown_table, set_threads, time_it, write_results  # noqa: E402
from ops_speed import print_stream, stream_rows, train_step  # noqa: E402

from rnnzoo.errors import ConfigError, RnnzooError  # noqa: E402
from rnnzoo.mixers import available_mixers, build_mixer  # noqa: E402

SIZES = {
    "full": {"train": {"d": 256, "B": 8, "Ts": (256, 1024, 4096), "repeats": 3, "cap_s": 30.0},
             "stream": {"d": 256, "prefixes": (256, 4096, 65536), "chunk": 4096, "cap": 16384, "cap_limit_s": 30.0,
                        "steps": 50, "repeats": 3}},
    "quick": {"train": {"d": 64, "B": 8, "Ts": (64, 256), "repeats": 1, "cap_s": 2.0},
              "stream": {"d": 64, "prefixes": (64, 256), "chunk": 256, "cap": 256, "cap_limit_s": 0.5,
                         "steps": 10, "repeats": 1}},
}
PEERS = ("torch.nn.LSTM", "transformer")  # measured in every run, whatever --mixers says: the ratios' bases
ATTENTION = ("transformer", "hopfield")  # their KV cache needs max_len >= the longest sequence


def build(name: str, d: int, max_T: int) -> nn.Module:
    """The module timed under ``name``: torch.nn.LSTM or a registered mixer with its default options."""
    if name == "torch.nn.LSTM":
        return nn.LSTM(d, d, batch_first=True)
    return build_mixer(name, d, **({"max_len": max_T} if name in ATTENTION else {}))


def projected_seconds(points: list[tuple[int, float]], T: int) -> float:
    """Time of one forward+backward at ``T`` extrapolated from earlier (T_i, seconds) points, T_i ascending:
    t_last * (T / T_last)^p, with p the growth exponent between the last two points, at least 1 (linear)."""
    (T1, t1) = points[-1]
    p = 1.0
    if len(points) > 1:
        T0, t0 = points[-2]
        p = max(1.0, math.log(t1 / t0) / math.log(T1 / T0))
    return t1 * (T / T1) ** p


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_bytes(fn: Callable[[], object]) -> int:
    """Peak resident memory that one call of ``fn`` adds to the process, in bytes.

    torch's CPU tensors come from malloc, which tracemalloc does not see, so this reads the kernel's count of
    resident pages (Linux, proc(5)): free heap memory is handed back (glibc malloc_trim), the high-water mark
    VmHWM is reset to the current resident size (writing 5 to /proc/self/clear_refs), fn runs, and the answer is
    VmHWM - VmRSS before the call. It counts every page touched during the call: tensors saved for backward,
    temporaries, the gradients, allocator overhead; what existed before (weights, the input) is the baseline.
    The kernel updates its page counts lazily, so the figure is good to about a MiB."""
    gc.collect()
    _libc().malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kib("VmRSS")
    fn()
    return 1024 * (_status_kib("VmHWM") - base)


def _libc():
    name = ctypes.util.find_library("c")
    lib = ctypes.CDLL(name) if name else None
    if lib is None or not hasattr(lib, "malloc_trim") or not Path("/proc/self/clear_refs").exists():
        raise ConfigError("the memory part reads /proc/self/status and calls glibc's malloc_trim, so it needs "
                          "Linux with glibc; run the other parts with --only train or --only stream")
    return lib


def calibrate(names: list[str], d: int, B: int, T: int, max_T: int) -> tuple[dict[str, float], dict[str, bool]]:
    """Seconds of one forward+backward at (B, T, d) per module (0 where it cannot be built), the run-time
    estimate's basis and a warm-up of torch's kernels; and whether each module is a causal mixer (has step())."""
    seconds, causal = {}, {}
    for name in names:
        torch.manual_seed(0)
        seconds[name], causal[name] = 0.0, False
        try:
            module = build(name, d, max_T)
            causal[name] = getattr(module, "causal", False)  # torch.nn.LSTM has no step(): not streamed
            fn = train_step(module, torch.randn(B, T, d))
            t0 = time.perf_counter()
            fn()
            seconds[name] = time.perf_counter() - t0
        except RnnzooError:
            pass  # the parts report it on their rows
    return seconds, causal


def estimate_s(calib: dict[str, float], causal: dict[str, bool], train: dict, stream: dict,
               parts: tuple[str, ...]) -> dict[str, float]:
    """Rough run time of each part from ``calibrate``, every cost linear in T (attention grows faster, so the
    estimate is low for it; the caps bound the error). The stream part's per-token cost is taken as a third of
    the training step's per time step (forward only, batch 1)."""
    T0, reps, cap = train["Ts"][0], train["repeats"], train["cap_s"]
    out = {}
    if "train" in parts:
        out["train"] = sum((reps + 1) * t + sum(reps * min(t * T / T0, cap) for T in train["Ts"][1:])
                           for t in calib.values())
    if "memory" in parts:
        out["memory"] = sum(min(t * T / T0, cap) for t in calib.values() for T in train["Ts"])
    if "stream" in parts:
        per_token = [t / (3 * T0) for name, t in calib.items() if causal.get(name)]
        n_steps = len(stream["prefixes"]) * (stream["repeats"] + 1) * stream["steps"]
        out["stream"] = sum(min(c * max(stream["prefixes"]), 2 * stream["cap_limit_s"]) + c * n_steps
                            for c in per_token)
    return out


def sweep(names: list[str], d: int, B: int, Ts: tuple[int, ...], cap_s: float,
          measure: Callable[[nn.Module, torch.Tensor, bool], dict]) -> list[dict]:
    """For every module and T ascending: ``measure(module, x, first)`` with random x (B, T, d) (first: the
    module's first T); a T whose single forward+backward projects past ``cap_s`` and every larger T are skipped.
    ``measure`` returns a dict with ``seconds``, one run's time, for the projection."""
    rows = []
    for name in names:
        torch.manual_seed(0)
        try:
            module = build(name, d, max(Ts))
        except RnnzooError as e:
            rows.append({"mixer": name, "skipped": f"build failed: {e}", "points": []})
            continue
        points, done = [], []
        for T in Ts:
            if done and projected_seconds(done, T) > cap_s:
                points.append({"T": T, "skipped": f"one forward+backward projected at "
                                                  f"{projected_seconds(done, T):.0f} s > {cap_s:g} s"})
                break
            try:
                m = measure(module, torch.randn(B, T, d), not done)
            except RnnzooError as e:
                points.append({"T": T, "skipped": f"{type(e).__name__}: {e}"})
                break
            done.append((T, m["seconds"]))
            points.append({"T": T, **m})
        rows.append({"mixer": name, "points": points})
        print(f"{name}: " + ", ".join(f"T={p['T']} " + ("skipped" if "skipped" in p else f"{p['seconds']:.3f} s")
                                      for p in points), flush=True)
    return rows


def train_rows(names: list[str], d: int, B: int, Ts: tuple[int, ...], repeats: int, cap_s: float) -> list[dict]:
    """Median/min/max seconds of forward+backward and tokens/s (B T / median) per module and T; the module's
    first T gets one warm-up call."""
    def measure(module, x, first):
        t = time_it(train_step(module, x), repeats=repeats, warmup=1 if first else 0)
        return {**t, "seconds": t["median_s"], "tokens_per_s": x.shape[0] * x.shape[1] / t["median_s"]}
    rows = sweep(names, d, B, Ts, cap_s, measure)
    peer = {name: {p["T"]: p for p in r["points"] if "median_s" in p} for r in rows if (name := r["mixer"]) in PEERS}
    for r in rows:
        for p in r["points"]:
            if "median_s" in p:
                for base, key in zip(PEERS, ("vs_torch_lstm", "vs_transformer")):
                    q = peer[base].get(p["T"])
                    p[key] = q["median_s"] / p["median_s"] if q else None  # > 1: faster than the peer
    return rows


def memory_rows(names: list[str], d: int, B: int, Ts: tuple[int, ...], cap_s: float) -> list[dict]:
    """Peak memory (``peak_rss_bytes``) of one forward+backward per module and T, after one unmeasured call at
    the module's first T so that lazily made buffers are not counted as the step's."""
    def measure(module, x, first):
        fn = train_step(module, x)
        if first:
            fn()
        module.zero_grad(set_to_none=True)  # the gradients belong to the step's peak
        t0 = time.perf_counter()
        peak = peak_rss_bytes(fn)
        return {"seconds": time.perf_counter() - t0, "peak_bytes": peak}
    return sweep(names, d, B, Ts, cap_s, measure)


def cell_tokens(p: dict | None) -> str:
    if p is None:
        return ""
    if "skipped" in p:
        return "skipped"
    n = p["tokens_per_s"] * p["median_s"]  # B T
    return f"{p['tokens_per_s']:,.0f} ({n / p['max_s']:,.0f}-{n / p['min_s']:,.0f})"


def print_train(rows: list[dict], cfg: dict) -> None:
    Ts = cfg["Ts"]
    print(f"\nTraining throughput, forward+backward, fp32, B={cfg['B']} d_model={cfg['d']}: tokens/s, median of "
          f"{cfg['repeats']} (spread from the min-max time); x LSTM / x transformer: time of torch.nn.LSTM / of the "
          "transformer mixer over the mixer's, same run (> 1: faster)\n")
    table, notes = [], []
    for r in rows:
        by_T = {p["T"]: p for p in r["points"]}
        ratio = [[f"{p[k]:.2f}" if p and p.get(k) else "" for p in map(by_T.get, Ts)]
                 for k in ("vs_torch_lstm", "vs_transformer")]
        table.append([r["mixer"], *map(cell_tokens, map(by_T.get, Ts)), *ratio[0], *ratio[1]])
        notes += [f"{r['mixer']} T={p['T']}: {p['skipped']}" for p in r["points"] if "skipped" in p]
        if "skipped" in r:
            notes.append(f"{r['mixer']}: {r['skipped']}")
    print(markdown_table(["mixer", *(f"tokens/s T={T}" for T in Ts), *(f"x LSTM T={T}" for T in Ts),
                          *(f"x transformer T={T}" for T in Ts)], table))
    if notes:
        print("\nskipped: " + "; ".join(notes))


def print_memory(rows: list[dict], cfg: dict) -> None:
    Ts = cfg["Ts"]
    print(f"\nPeak memory of one forward+backward, B={cfg['B']} d_model={cfg['d']}: MiB of resident memory the step "
          "adds (Linux VmHWM after a reset, minus VmRSS before: activations kept for backward, temporaries, "
          "gradients)\n")
    table = []
    for r in rows:
        by_T = {p["T"]: p for p in r["points"]}
        table.append([r["mixer"], *("" if p is None else "skipped" if "skipped" in p else
                                    f"{p['peak_bytes'] / 2 ** 20:,.1f}" for p in map(by_T.get, Ts))])
    print(markdown_table(["mixer", *(f"MiB T={T}" for T in Ts)], table))


def plot(path: Path, series: dict[str, list[tuple[int, float, float, float]]], xlabel: str, ylabel: str,
         title: str) -> None:
    """One log-log line per name through (x, median) with min-max error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 7))
    cmap = plt.get_cmap("tab20")
    for i, (name, pts) in enumerate(series.items()):
        if not pts:
            continue
        x, y, lo, hi = map(list, zip(*pts))
        ax.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]], label=name,
                    color=cmap(i % 20), linestyle=("-", "--", ":")[i // 20 % 3], marker="o", markersize=3,
                    capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (d=64, T 64 and 256), 1 repeat: a smoke run")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's, or 1 with --quick)")
    ap.add_argument("--only", choices=("train", "memory", "stream"), help="run one part")
    ap.add_argument("--mixers", nargs="+", choices=available_mixers(),
                    help="these mixers only (torch.nn.LSTM and transformer are timed anyway, for the ratios)")
    ap.add_argument("--repeats", type=int, help="timed runs per figure (default 3, 1 with --quick)")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args()
    if args.repeats is not None and args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    set_threads(args)
    sizes = SIZES["quick" if args.quick else "full"]
    train_cfg, stream_cfg = dict(sizes["train"]), dict(sizes["stream"])
    if args.repeats:
        train_cfg["repeats"] = stream_cfg["repeats"] = args.repeats
    parts = (args.only,) if args.only else ("train", "memory", "stream")
    mixers = args.mixers or available_mixers()
    names = list(PEERS) + [m for m in mixers if m not in PEERS]
    d, B, Ts = train_cfg["d"], train_cfg["B"], train_cfg["Ts"]
    if "memory" in parts:
        _libc()  # fail now, with the message, rather than after the other parts

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(names)} modules "
          f"({', '.join(names)})", flush=True)
    t_start = time.perf_counter()
    calib, causal = calibrate(names, d, B, Ts[0], max(Ts))
    est = estimate_s(calib, causal, train_cfg, stream_cfg, parts)
    print(f"estimated run time ~{sum(est.values()):.0f} s ("
          + ", ".join(f"{p} {s:.0f} s" for p, s in est.items())
          + f"), from one forward+backward per module at T={Ts[0]} ({time.perf_counter() - t_start:.0f} s); "
          "linear in T, so low for attention\n", flush=True)

    name = ("speed_all" + ("_quick" if args.quick else "") + (f"_{args.only}" if args.only else "")
            + (f"_{args.tag}" if args.tag else ""))
    payload = {"config": {"train": train_cfg, "stream": stream_cfg, "peers": list(PEERS)},
               "estimate_s": est, "calibration_s": calib}
    seconds = {}

    def finish(part: str, t0: float) -> Path:
        """Record the part's time and rewrite the results file, so a long run stopped later keeps what it has."""
        seconds[part] = time.perf_counter() - t0
        return write_results(name, dict(payload, seconds=seconds))

    if "train" in parts:
        t0 = time.perf_counter()
        payload["train"] = train_rows(names, **train_cfg)
        print_train(payload["train"], train_cfg)
        plot(RESULTS_DIR / f"{name}_train.png",
             {r["mixer"]: [(p["T"], p["median_s"], p["min_s"], p["max_s"]) for p in r["points"] if "median_s" in p]
              for r in payload["train"]}, "sequence length T", "forward+backward time (s)",
             f"Training step time, B={B}, d_model={d} (median, min-max bars)")
        path = finish("train", t0)
    if "memory" in parts:
        t0 = time.perf_counter()
        payload["memory"] = memory_rows(names, d, B, Ts, train_cfg["cap_s"])
        print_memory(payload["memory"], train_cfg)
        path = finish("memory", t0)
    if "stream" in parts:
        t0 = time.perf_counter()
        payload["stream"] = stream_rows(**stream_cfg, mixers=[m for m in names if m != "torch.nn.LSTM"])
        print_stream(payload["stream"], stream_cfg)
        plot(RESULTS_DIR / f"{name}_stream.png",
             {r["mixer"]: [(p["reached_T"], p["step_ms"], *p["spread_ms"]) for p in r["points"]]
              for r in payload["stream"] if "points" in r}, "prefix length T (tokens)", "step() latency (ms)",
             f"Generation step latency after a prefix, batch 1, d_model={stream_cfg['d']} (median, min-max bars)")
        path = finish("stream", t0)
    print(f"\n{', '.join(f'{p} {s:.0f} s' for p, s in seconds.items())}; total "
          f"{time.perf_counter() - t_start:.0f} s (estimated {sum(est.values()):.0f} s). results: {path}")


if __name__ == "__main__":
    main()
