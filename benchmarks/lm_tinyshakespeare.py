"""Character-level language modelling on tinyshakespeare under a fixed CPU time budget.

    .venv/bin/python benchmarks/lm_tinyshakespeare.py                   # the classic mixers, 10 min each
    .venv/bin/python benchmarks/lm_tinyshakespeare.py --group parallel --jobs 2 --tag parallel
                                                                        # two at a time, one core each
    .venv/bin/python benchmarks/lm_tinyshakespeare.py --mixers lstm --minutes 2

Each mixer gets a model of about the same parameter count (~1.1M, see MODELS), two layers, trained through the
same ``rnnzoo.train.train`` as ``rnnzoo train``, on one thread. The budget is CPU time: a short calibration run
measures the CPU seconds of a training step, which sets the number of steps (and so the learning-rate
schedule) to fill 85% of the budget. CPU time, unlike wall time, does not shrink when other work shares the
machine, so every mixer does the work it would do alone; ``max_minutes`` (3x the budget, wall clock) only
guards against a runaway. On an idle machine the two coincide (the classic rows were budgeted by wall time).
Validation loss is nats/char on the last 10% of the text, as in nanoGPT's shakespeare_char (whose CPU baseline
is 1.88 in BENCHMARKS.md). Writes benchmarks/results/lm_tinyshakespeare.json and a loss-vs-time plot.

    .venv/bin/python benchmarks/lm_tinyshakespeare.py --leaderboard    # every mixer's row: one table, one plot

``--leaderboard`` trains nothing: it reads the results files in LEADERBOARD_FILES (a later file's row replaces an
earlier one of the same mixer: reruns) and writes lm_leaderboard.json and a plot of validation loss against
training time (CPU seconds; wall seconds for the classic rows, which were budgeted by wall time on an idle machine).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, markdown_table, write_results  # noqa: E402

from rnnzoo.errors import DivergedError  # noqa: E402
from rnnzoo.train.config import TrainConfig  # noqa: E402
from rnnzoo.train.logging import plot_curves  # noqa: E402
from rnnzoo.train.loop import train  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

# Each mixer's model, sized for about 1.1M parameters in two layers. The classic family is stacked plainly
# (char-rnn); the parallel-trainable family sits in pre-norm residual blocks with a 4x MLP, as in the papers'
# language models, except the xLSTM blocks, which carry their own up-projection (mLSTM) or gated MLP (sLSTM).
CLASSIC = dict(residual=False, mlp_ratio=0.0)
BLOCK = dict(residual=True, mlp_ratio=4.0)
XLSTM = dict(residual=True, mlp_ratio=0.0)
MODELS = {
    "lstm": dict(CLASSIC, d_model=256), "gru": dict(CLASSIC, d_model=296), "elman": dict(CLASSIC, d_model=512),
    "jordan": dict(CLASSIC, d_model=418),
    # IndRNN's relu recurrence is unbounded: without |u| <= 1 it diverged to NaN in this benchmark (Li et al.
    # 2018 constrain |u| the same way).
    "indrnn": dict(CLASSIC, d_model=724, mixer_options={"recurrent_max": 1.0}),
    "mingru": dict(BLOCK, d_model=224), "minlstm": dict(BLOCK, d_model=224),
    "linear_attention": dict(BLOCK, d_model=192),
    # no forgetting: carried through the whole text its state sums all of it, so it also runs chunk by chunk
    "linear_attention_fresh": dict(BLOCK, d_model=192, mixer="linear_attention", carry_state=False),
    "retnet": dict(BLOCK, d_model=176), "gla": dict(BLOCK, d_model=192),
    "rwkv6": dict(BLOCK, d_model=192), "rwkv7": dict(BLOCK, d_model=192), "deltanet": dict(BLOCK, d_model=192),
    "gated_deltanet": dict(BLOCK, d_model=192), "deltaproduct": dict(BLOCK, d_model=176),
    "mlstm": dict(XLSTM, d_model=288), "slstm": dict(XLSTM, d_model=240),
    # Mamba blocks have no MLP (the block is the whole layer), as in the papers.
    "s4d": dict(BLOCK, d_model=224), "mamba": dict(XLSTM, d_model=288), "mamba2": dict(XLSTM, d_model=288),
    "paragru": dict(BLOCK, d_model=224), "paralstm": dict(BLOCK, d_model=224), "lmu": dict(BLOCK, d_model=192),
    "esn": dict(BLOCK, d_model=192),
    # The training loop carries the state from batch to batch, so attention needs a sliding window to keep
    # its cache bounded (Titans' MAG and MAL too; MAC attends within segments); RMT/ARMT are one transformer
    # block each (their own MLP), two of them.
    "transformer": dict(BLOCK, d_model=192, mixer_options={"window": 256}),
    "hopfield": dict(BLOCK, d_model=192, mixer_options={"window": 256}),
    # LM2 is the paper's layer: sliding-window attention plus the memory read (18 d^2 per block against 12 d^2)
    "lm2": dict(BLOCK, d_model=160, mixer_options={"window": 256}), "titans": dict(BLOCK, d_model=192),
    "titans_mag": dict(BLOCK, d_model=160, mixer_options={"window": 256}),
    "titans_mal": dict(BLOCK, d_model=168, mixer_options={"window": 256}),
    "titans_mac": dict(BLOCK, d_model=160),
    "memory_cache": dict(BLOCK, d_model=192),
    "rmt": dict(XLSTM, d_model=192, mixer_options={"backbone_layers": 1}),
    "armt": dict(XLSTM, d_model=192, mixer_options={"backbone_layers": 1}),
}
GROUPS = {"classic": ["lstm", "gru", "elman", "jordan", "indrnn"],
          "parallel": ["mingru", "minlstm", "linear_attention", "retnet", "gla", "rwkv6", "rwkv7", "deltanet",
                       "gated_deltanet", "deltaproduct", "mlstm", "slstm"],
          "ssm": ["s4d", "mamba", "mamba2", "paragru", "paralstm", "lmu", "esn"],
          "memory": ["transformer", "hopfield", "lm2", "titans", "titans_mag", "titans_mal", "titans_mac",
                     "memory_cache", "rmt", "armt"]}
COMMON = dict(n_layers=2, batch_size=32, seq_len=128, lr=3e-3, min_lr=1e-4, warmup_steps=100,
              weight_decay=0.01, grad_clip=1.0, dropout=0.1, eval_batches=20, log_every=25, save_every=0, seed=0)


def config(name: str, steps: int, out_dir: str, eval_every: int, max_minutes: float | None = None) -> TrainConfig:
    """The TrainConfig of the model ``name`` in MODELS (its mixer is ``name`` unless the entry says otherwise)."""
    spec = dict(MODELS[name])
    mixer = spec.pop("mixer", name)
    return TrainConfig.from_dict(dict(COMMON, **spec, data=str(DATA), mixer=mixer, steps=steps,
                                      out_dir=out_dir, eval_every=eval_every, max_minutes=max_minutes))


def calibrate(mixer: str, out: Path) -> float:
    """CPU seconds per training step, from two short runs (their difference drops start-up and the final eval)."""
    t0 = time.process_time()
    train(config(mixer, 10, str(out / "calibrate-a"), 0), progress=False, overwrite=True)
    t1 = time.process_time()
    train(config(mixer, 40, str(out / "calibrate-b"), 0), progress=False, overwrite=True)
    t2 = time.process_time()
    return ((t2 - t1) - (t1 - t0)) / 30


def run_one(mixer: str, minutes: float, threads: int, out_root: str) -> dict:
    """Calibrate, then train ``mixer`` for the budget; runs in its own process when --jobs > 1."""
    torch.set_num_threads(threads)
    out = Path(out_root) / mixer
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        per_step = calibrate(mixer, out)
        steps = max(50, int(0.85 * 60 * minutes / per_step))  # 15% kept for evaluation and slack
        t0, c0 = time.perf_counter(), time.process_time()
        cfg = config(mixer, steps, str(out / "run"), max(50, steps // 10), max_minutes=3 * minutes)
        res = train(cfg, progress=False, overwrite=True)
    except DivergedError as e:  # one mixer's failure is a result, not the end of the run
        print(f"{mixer}: diverged: {e}", flush=True)
        return {**MODELS[mixer], "mixer": mixer, "diverged": str(e), "cpu_s": time.process_time() - c0,
                "wall_s": time.perf_counter() - t0, "threads": threads, "history": []}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{mixer}: val {res.val_loss:.4f} nats/char after {res.steps} steps, {cpu:.0f} CPU s, {wall:.0f} s wall",
          flush=True)
    tokens = res.steps * COMMON["batch_size"] * COMMON["seq_len"]
    return {**MODELS[mixer], "mixer": mixer, "params": res.params, "steps": res.steps, "tokens": tokens,
            "wall_s": wall, "cpu_s": cpu, "tokens_per_s": res.tokens_per_s, "tokens_per_cpu_s": tokens / cpu,
            "val_nats_per_char": res.val_loss, "val_bits_per_char": res.bits_per_char, "threads": threads,
            "history": [{k: h.get(k) for k in ("step", "train_loss", "val_loss")} for h in res.history]}


# oldest first: a later file's row of the same mixer is a rerun and replaces the earlier one
LEADERBOARD_FILES = ["lm_tinyshakespeare", "lm_tinyshakespeare_loops", "lm_tinyshakespeare_indrnn",
                     "lm_tinyshakespeare_parallel", "lm_tinyshakespeare_ssm", "lm_tinyshakespeare_memory",
                     "lm_tinyshakespeare_memory2", "lm_tinyshakespeare_memory_lm2", "lm_tinyshakespeare_rmt",
                     "lm_tinyshakespeare_titans_clip"]


def leaderboard() -> None:
    """Every mixer's latest finished row, sorted by validation loss, and their validation curves against time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    best: dict[str, dict] = {}
    for name in LEADERBOARD_FILES:
        path = RESULTS_DIR / f"{name}.json"
        if not path.exists():
            print(f"(no {path.name}: its rows are missing)")
            continue
        for r in json.loads(path.read_text())["runs"]:
            if "diverged" not in r and math.isfinite(r["val_nats_per_char"]):
                best[r["mixer"]] = dict(r, file=path.name, seconds=r.get("cpu_s") or r["wall_s"])
    rows = sorted(best.values(), key=lambda r: r["val_nats_per_char"])
    fig = Figure(figsize=(9, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, r in enumerate(rows):
        per_step = r["seconds"] / r["steps"]
        points = [(h["step"] * per_step, h["val_loss"]) for h in r["history"] if h.get("val_loss") is not None]
        if points:
            ax.plot(*zip(*points), color=f"C{i % 10}", ls=("-", "--", ":", "-.")[i // 10 % 4], marker="o", ms=2,
                    lw=1.2, label=f"{r['mixer']} {r['val_nats_per_char']:.3f}")
    ax.set_xlabel("training time (CPU s; wall s for the classic rows)")
    ax.set_ylabel("validation loss (nats / char)")
    ax.set_ylim(1.4, 2.6)
    ax.set_title("tinyshakespeare, about 1.1M parameters, 10 minutes per mixer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=3)
    plot = RESULTS_DIR / "lm_leaderboard.png"
    fig.savefig(plot, dpi=120)
    path = write_results("lm_leaderboard", {"files": LEADERBOARD_FILES, "rows": [
        {k: r[k] for k in ("mixer", "d_model", "params", "steps", "seconds", "val_nats_per_char", "file")}
        for r in rows]})
    print(markdown_table(["rank", "mixer", "params", "steps", "time (s)", "val nats/char", "results file"],
                         [[i + 1, r["mixer"], f"{r['params']:,}", r["steps"], f"{r['seconds']:.0f}",
                           f"{r['val_nats_per_char']:.3f}", r["file"]] for i, r in enumerate(rows)]))
    print(f"\nresults: {path}\nplot: {plot}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", choices=list(GROUPS), default="classic", help="which mixers to train")
    ap.add_argument("--mixers", nargs="+", choices=list(MODELS), help="these mixers instead of a group")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per mixer, CPU minutes")
    ap.add_argument("--jobs", type=int, default=1, help="mixers trained at once, each in its own process")
    ap.add_argument("--out", default="runs/lm_tinyshakespeare", help="run folders (checkpoints, metrics.csv)")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--leaderboard", action="store_true", help="train nothing: one table and plot of every row")
    args = ap.parse_args()
    if args.leaderboard:
        return leaderboard()
    mixers = args.mixers or GROUPS[args.group]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    name = "lm_tinyshakespeare" + (f"_{args.tag}" if args.tag else "")
    rows = []

    def record(row: dict) -> Path:
        """Rewrite the results file after every mixer, so a run stopped later keeps what it has."""
        rows.append(row)
        return write_results(name, {"config": dict(COMMON, minutes=args.minutes, jobs=args.jobs, data=DATA.name),
                                    "runs": rows})

    if args.jobs == 1:
        for m in mixers:
            path = record(run_one(m, args.minutes, threads, args.out))
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, m, args.minutes, threads, args.out) for m in mixers]
            for future in as_completed(futures):  # record each row as it finishes, whatever the order
                path = record(future.result())
    plot = RESULTS_DIR / f"{name}.png"
    plot_curves({r["mixer"]: r["history"] for r in rows if r["history"]}, plot,
                title=f"tinyshakespeare, {args.minutes:g} min per mixer")
    print(markdown_table(
        ["mixer", "params", "threads", "steps", "CPU (s)", "wall (s)", "tokens/CPU s", "val nats/char",
         "val bits/char"],
        [[r["mixer"], f"{r['params']:,}", r["threads"], r["steps"], f"{r['cpu_s']:.0f}", f"{r['wall_s']:.0f}",
          f"{r['tokens_per_cpu_s']:,.0f}", f"{r['val_nats_per_char']:.3f}", f"{r['val_bits_per_char']:.3f}"]
         if "diverged" not in r else [r["mixer"], "", r["threads"], "", f"{r['cpu_s']:.0f}", f"{r['wall_s']:.0f}",
                                      "", "diverged", ""]
         for r in rows]))
    print(f"\nresults: {path}\nplot: {plot}")


if __name__ == "__main__":
    main()
