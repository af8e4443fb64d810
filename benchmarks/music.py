"""Polyphonic music modelling: frame-level NLL on the Bach chorales of music21 at about 20K parameters.

    .venv/bin/python benchmarks/music.py                         # tanh RNN (elman), GRU, LSTM
    .venv/bin/python benchmarks/music.py --mixers mingru s4d     # these too, at the same size
    .venv/bin/python benchmarks/music.py --quick                 # smoke run: 14 chorales, 2 epochs

The task of Chung et al. 2014 ("Empirical evaluation of gated recurrent neural networks on sequence modeling",
table 2): predict each quarter-note frame of 88 keys from the previous ones, 88 independent Bernoulli outputs,
scored by the negative log-likelihood per time step (nats, summed over the keys) on the test chorales. Their
JSB Chorales test NLL at about 20K parameters: tanh 9.10, GRU 8.54, LSTM 8.67. Our data is not their file: the
rolls are built from music21's chorales by rnnzoo.tasks.music (350 chorales, split 210 / 70 / 70; JSB has
382), so the numbers are comparable in scale, not digit for digit.

Each mixer gets one layer (``--layers``) between Linear(88, d) and Linear(d, 88), with d chosen so that the
whole model has 20K parameters +- 10% (the input projection is counted, so the recurrent width is smaller than
in the paper, whose recurrent layer reads the 88 keys directly). Training: Adam, whole chorales in batches of
8, gradient clipping at 1, early stopping on the validation NLL (patience 20 epochs, at most 500); the test NLL
is that of the best validation epoch. Each mixer is trained at every learning rate of ``--lr`` (default 1e-3,
3e-3, 1e-2) and the row is the one with the best validation NLL: at 1e-3 alone GRU and LSTM (torch.nn.LSTM in
the same model too) stopped on a plateau near 11.4 nats while the tanh RNN reached 9.1.
Writes benchmarks/results/music[_TAG].json and music[_TAG].md.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, add_size_options, markdown_table, set_threads, write_results  # noqa: E402

from rnnzoo.errors import ConfigError  # noqa: E402
from rnnzoo.tasks.music import (PianoRollModel, chorale_names, dataset_nll, load_rolls, pad_rolls,  # noqa: E402
                                split_names)

CORE = ["elman", "gru", "lstm"]
CHUNG_2014 = {"elman": 9.10, "gru": 8.54, "lstm": 8.67}  # JSB test NLL per step, table 2
TARGET_PARAMS = 20_000


@dataclass
class RunConfig:
    target_params: int = TARGET_PARAMS
    n_layers: int = 1
    residual: bool = False
    lr: float = 1e-3
    batch_size: int = 8
    grad_clip: float = 1.0
    max_epochs: int = 500
    patience: int = 20  # epochs without a better validation NLL before stopping
    seed: int = 0


def size_model(mixer: str, cfg: RunConfig) -> tuple[int, int]:
    """(d_model, parameters) of the PianoRollModel closest to cfg.target_params; a SystemExit when no width
    lands within 10%."""
    best = None
    for d in range(2, 1025):
        try:
            n = PianoRollModel(mixer, d, cfg.n_layers, residual=cfg.residual).num_parameters()
        except ConfigError:  # a width the mixer does not take (heads, expansions)
            continue
        if best is None or abs(n - cfg.target_params) < abs(best[1] - cfg.target_params):
            best = (d, n)
        if n > 1.5 * cfg.target_params:
            break
    if abs(best[1] - cfg.target_params) > 0.1 * cfg.target_params:
        raise SystemExit(f"{mixer}: no width gives {cfg.target_params:,} parameters +- 10% "
                         f"(closest: d_model={best[0]} with {best[1]:,}); try other --layers")
    return best


def best_lr(mixer: str, splits: dict[str, list[torch.Tensor]], cfg: RunConfig, lrs: list[float]) -> dict:
    """Train ``mixer`` at each learning rate; the run with the best validation NLL, with every run's summary."""
    size = size_model(mixer, cfg)
    runs = [train_one(mixer, size, splits, replace(cfg, lr=lr)) for lr in lrs]
    best = min(runs, key=lambda r: r["valid_nll"])
    sweep = [{k: r[k] for k in ("lr", "epochs", "valid_nll", "test_nll", "diverged")} for r in runs]
    return {**best, "lr_sweep": sweep, "wall_s": sum(r["wall_s"] for r in runs),
            "cpu_s": sum(r["cpu_s"] for r in runs)}


def train_one(mixer: str, size: tuple[int, int], splits: dict[str, list[torch.Tensor]], cfg: RunConfig) -> dict:
    """Train ``mixer`` at ``size`` (d_model, parameters) with early stopping; the test NLL of the epoch with the
    best validation NLL."""
    d_model, params = size
    torch.manual_seed(cfg.seed)
    model = PianoRollModel(mixer, d_model, cfg.n_layers, residual=cfg.residual)
    print(f"{mixer}: d_model={d_model}, {params:,} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    train = splits["train"]
    best = {"valid_nll": math.inf, "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    history, diverged = [], False
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        nll_sum, steps = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            x, lengths = pad_rolls([train[j] for j in order[i:i + cfg.batch_size]])  # (B, T, 88), (B,)
            loss = model.nll_per_step(x, lengths)
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            nll_sum += float(loss.detach()) * int(lengths.sum())
            steps += int(lengths.sum())
        if diverged:
            print(f"{mixer}: non-finite loss in epoch {epoch}; keeping epoch {best['epoch']}", flush=True)
            break
        valid = dataset_nll(model, splits["valid"])
        history.append({"epoch": epoch, "train_nll": nll_sum / steps, "valid_nll": valid})
        if valid < best["valid_nll"]:
            best = {"valid_nll": valid, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        elif epoch - best["epoch"] >= cfg.patience:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    model.load_state_dict(best["state"])
    test = dataset_nll(model, splits["test"])
    print(f"{mixer} at lr {cfg.lr:g}: test NLL {test:.3f} per step (valid {best['valid_nll']:.3f} at epoch "
          f"{best['epoch']} of {len(history)}), {wall:.0f} s", flush=True)
    return {"mixer": mixer, "lr": cfg.lr, "d_model": d_model, "params": params, "epochs": len(history),
            "best_epoch": best["epoch"], "valid_nll": best["valid_nll"], "test_nll": test,
            "chung_2014_test_nll": CHUNG_2014.get(mixer), "diverged": diverged, "wall_s": wall, "cpu_s": cpu,
            "history": history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixers", nargs="+", default=[], help="mixers to train beside elman, gru and lstm")
    ap.add_argument("--layers", type=int, default=1, help="mixer layers (all at the same width)")
    ap.add_argument("--residual", action="store_true", help="pre-norm residual blocks with an MLP")
    ap.add_argument("--epochs", type=int, default=RunConfig.max_epochs, help="at most this many epochs")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                    help="Adam's learning rates to try; each mixer's row is its best on the validation set")
    ap.add_argument("--seed", type=int, default=0, help="model initialisation and batch order")
    ap.add_argument("--no-cache", action="store_true", help="parse the chorales without the roll cache")
    ap.add_argument("--tag", default="", help="suffix of the results file names")
    ap.add_argument("--skip-core", action="store_true", help="train only --mixers, not elman, gru and lstm")
    add_size_options(ap)
    args = ap.parse_args()
    set_threads(args)
    if min(args.lr) <= 0:
        ap.error(f"--lr must be > 0, got {args.lr}")
    cfg = RunConfig(n_layers=args.layers, residual=args.residual, max_epochs=args.epochs, seed=args.seed)
    names = split_names(chorale_names())  # the fixed split (seed 0), whatever --seed says
    if args.quick:  # a few chorales of each part and two epochs: checks that everything runs
        names = {"train": names["train"][:8], "valid": names["valid"][:3], "test": names["test"][:3]}
        cfg.max_epochs, cfg.batch_size = min(cfg.max_epochs, 2), 4
    rolls = load_rolls([n for part in names.values() for n in part], cache=not args.no_cache, progress=True)
    splits = {part: [rolls[n] for n in part_names] for part, part_names in names.items()}
    print(", ".join(f"{part}: {len(r)} chorales, {sum(x.shape[0] for x in r):,} steps"
                    for part, r in splits.items()), flush=True)
    mixers = list(dict.fromkeys(([] if args.skip_core else CORE) + args.mixers))
    if not mixers:
        ap.error("--skip-core needs --mixers")
    rows = [best_lr(m, splits, cfg, args.lr) for m in mixers]
    name = ("music_quick" if args.quick else "music") + (f"_{args.tag}" if args.tag else "")
    sizes = {part: {"chorales": len(r), "steps": sum(x.shape[0] for x in r)} for part, r in splits.items()}
    config = {**asdict(cfg), "lr": args.lr}
    path = write_results(name, {"config": config, "quick": args.quick, "data": sizes, "runs": rows})
    table = markdown_table(
        ["mixer", "d_model", "params", "lr", "epochs (best)", "valid NLL", "test NLL", "Chung et al. 2014 (JSB)",
         "wall, all lrs (s)"],
        [[r["mixer"], r["d_model"], f"{r['params']:,}", f"{r['lr']:g}", f"{r['epochs']} ({r['best_epoch']})",
          f"{r['valid_nll']:.3f}", f"{r['test_nll']:.3f}",
          "-" if r["chung_2014_test_nll"] is None else f"{r['chung_2014_test_nll']:.2f}", f"{r['wall_s']:.0f}"]
         for r in rows])
    md = RESULTS_DIR / f"{name}.md"
    md.write_text(f"Bach chorales (music21), NLL per time step in nats, {path.name}\n\n{table}\n")
    print(f"\n{table}\n\nresults: {path}\ntable: {md}")


if __name__ == "__main__":
    main()
