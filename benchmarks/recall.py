"""Long-context recall: does a model's memory hold key-value pairs across a growing distance? (project issue 5)

Every model is a two-layer residual LanguageModel at d_model=64 trained on ``rnnzoo.tasks.recall.RecallTask``
(4 pairs, 64 keys, 64 values, 16 filler tokens) with the filler distance drawn per step from the training
distances (SIZES), for the same CPU time budget, then scored (accuracy of the answer at every query) at each of
the evaluation distances on fresh sequences. Training stops at distance 64, so 256, 1024 and 4096 measure how
a memory extrapolates to 4, 16 and 64 times the longest distance it was trained on. The sizes are what a CPU
budget can teach: with 8 pairs and training distances up to 256, 3 to 4 minutes left even the transformer at
0.16 (about 1,300 steps); with 4 pairs up to distance 64 it makes about 7,000 steps and solves the task.
Each memory model is listed with the model of the same size without its memory: attention with a short
sliding window for the attention-based memories, the bare inner mixer for memory caching.

    .venv/bin/python benchmarks/recall.py --jobs 2                    # every model, 4 CPU minutes each
    .venv/bin/python benchmarks/recall.py --models transformer titans --minutes 2
    .venv/bin/python benchmarks/recall.py --quick                     # tiny budget and distances, a smoke run

Writes benchmarks/results/recall[_quick][_TAG].json and prints the table.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_results  # noqa: E402

import rnnzoo.blocks  # noqa: E402,F401  (registers rmt and armt)
from rnnzoo.mixers import available_mixers  # noqa: E402
from rnnzoo.models import LanguageModel  # noqa: E402
from rnnzoo.tasks.recall import RecallTask, recall_accuracy  # noqa: E402
from rnnzoo.train import TrainConfig  # noqa: E402
from rnnzoo.train.loop import lr_at  # noqa: E402

TASK = dict(n_keys=64, n_values=64, n_filler=16)
MAX_PAIRS = 8
SIZES = {
    "full": {"pairs": 4, "train": (0, 16, 64), "eval": (0, 16, 64, 256, 1024, 4096), "batch": 32,
             "eval_batches": 4, "minutes": 4.0},
    "quick": {"pairs": 4, "train": (0, 16, 64), "eval": (0, 64), "batch": 8, "eval_batches": 1, "minutes": 0.1},
}
# the no-memory attention baseline sees 32 tokens back: the pairs (8 tokens) and queries (8) at distance 0, not 64
WINDOW = 32
LONGEST = 4096 + 4 * MAX_PAIRS + 1
# name -> (mixer, options, the same-size model without the memory, or None for a reference model)
MODELS = {
    "transformer": ("transformer", {"max_len": LONGEST}, None),
    "transformer_window": ("transformer", {"window": WINDOW}, None),
    "hopfield": ("hopfield", {"max_len": LONGEST}, "transformer_window"),
    "lm2": ("lm2", {}, "transformer_window"),
    "titans": ("titans", {}, "transformer_window"),
    "titans_mac": ("titans_mac", {}, "transformer_window"),
    "titans_mag": ("titans_mag", {"window": WINDOW}, "transformer_window"),
    "titans_mal": ("titans_mal", {"window": WINDOW}, "transformer_window"),
    "rmt": ("rmt", {"backbone_layers": 1, "segment_len": WINDOW}, "transformer_window"),
    "armt": ("armt", {"backbone_layers": 1, "segment_len": WINDOW}, "transformer_window"),
    "gla": ("gla", {}, None),
    "memory_cache": ("memory_cache", {"inner": "gla", "segment_len": 64, "max_segments": 16}, "gla"),
    "deltanet": ("deltanet", {}, None),
    "mamba2": ("mamba2", {}, None),
    "lstm": ("lstm", {}, None),
}
MODEL = dict(d_model=64, n_layers=2, residual=True, mlp_ratio=2.0)
LR, MIN_LR, WARMUP = 2e-3, 1e-4, 50


def task_of(size: dict) -> RecallTask:
    return RecallTask(n_pairs=size["pairs"], **TASK)


def build(name: str, task: RecallTask) -> LanguageModel:
    mixer, options, _ = MODELS[name]
    return LanguageModel(task.vocab_size, mixer, **MODEL, **options)


def train_step(model, optimizer, task, batch, distance, gen) -> float:
    tokens, targets = task.batch(batch, distance, gen)
    logits, _ = model(tokens)  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model, task, distances, batch, n_batches, seed) -> dict[str, float]:
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    acc = {}
    for d in distances:
        scores = [recall_accuracy(model(tokens)[0], targets)
                  for tokens, targets in (task.batch(batch, d, gen) for _ in range(n_batches))]
        acc[str(d)] = sum(scores) / len(scores)
    model.train()
    return acc


def run_one(name: str, size: dict, threads: int, seed: int) -> dict:
    """Train ``name`` for the CPU budget (cosine schedule over the steps a calibration predicts), then score it."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    task = task_of(size)
    model = build(name, task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    gen, pick = torch.Generator().manual_seed(seed), random.Random(seed)
    budget = 60 * size["minutes"]
    start = time.process_time()
    # Calibration: the cost per step over the second and third cycles of the training distances (the first
    # pays one-off set-up costs: timing it left runs at half their budget); it ends inside the warm-up, which
    # does not depend on the number of steps.
    cycle = len(size["train"])
    calibration, warm = 3 * cycle, None
    losses, step, steps = [], 0, None
    schedule = TrainConfig(lr=LR, min_lr=MIN_LR, warmup_steps=WARMUP, steps=WARMUP)
    while True:
        used = time.process_time() - start
        if step == cycle:
            warm = used
        if steps is None and step == calibration:
            per_step = max(used - warm, 1e-9) / (calibration - cycle)
            steps = max(step + 1, step + int((budget - used) / per_step))
            schedule = TrainConfig(lr=LR, min_lr=MIN_LR, warmup_steps=WARMUP, steps=steps)
        if (steps is not None and step >= steps) or used > 1.5 * budget:
            break
        if step < calibration:
            distance = size["train"][step % len(size["train"])]
        else:
            distance = pick.choice(size["train"])
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, schedule)
        losses.append(train_step(model, optimizer, task, size["batch"], distance, gen))
        step += 1
    cpu = time.process_time() - start
    acc = evaluate(model, task, size["eval"], size["batch"], size["eval_batches"], seed + 1)
    print(f"{name}: {step} steps, {cpu:.0f} CPU s, last loss {sum(losses[-20:]) / len(losses[-20:]):.3f}, "
          + ", ".join(f"d={d}: {a:.2f}" for d, a in acc.items()), flush=True)
    mixer, options, baseline = MODELS[name]
    return {"model": name, "mixer": mixer, "options": options, "baseline": baseline,
            "params": model.num_parameters(), "steps": step, "cpu_s": cpu, "threads": threads,
            "final_loss": sum(losses[-20:]) / len(losses[-20:]), "accuracy": acc}


def print_table(rows: list[dict], size: dict) -> None:
    by_name = {r["model"]: r for r in rows}
    header = ["model", "params", "steps"] + [f"d={d}" for d in size["eval"]] + ["without its memory"]
    table = []
    for r in rows:
        base = by_name.get(r["baseline"]) if r["baseline"] else None
        base_text = "(reference)" if r["baseline"] is None else (
            f"{r['baseline']}: " + " / ".join(f"{base['accuracy'][str(d)]:.2f}" for d in size["eval"])
            if base else f"{r['baseline']} (not run)")
        table.append([r["model"], f"{r['params']:,}", r["steps"]]
                     + [f"{r['accuracy'][str(d)]:.2f}" for d in size["eval"]] + [base_text])
    print(markdown_table(header, table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), help="these models (default: every one whose "
                                                                         "mixer is registered)")
    ap.add_argument("--minutes", type=float, help="training budget per model, CPU minutes")
    ap.add_argument("--pairs", type=int, choices=range(1, MAX_PAIRS + 1), metavar=f"1..{MAX_PAIRS}",
                    help="key-value pairs per sequence")
    ap.add_argument("--batch", type=int, help="sequences per training step")
    ap.add_argument("--train-distances", nargs="+", type=int, help="filler lengths drawn from in training")
    ap.add_argument("--jobs", type=int, default=1, help="models trained at once, each in its own process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny budget and distances, a smoke run")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args()
    size = dict(SIZES["quick" if args.quick else "full"])
    for key, arg in (("minutes", "minutes"), ("pairs", "pairs"), ("batch", "batch"), ("train", "train_distances")):
        if getattr(args, arg):
            size[key] = getattr(args, arg)
    registered = set(available_mixers())
    names = args.models or [n for n, (mixer, _, _) in MODELS.items() if mixer in registered]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    t0 = time.perf_counter()
    if args.jobs == 1:
        rows = [run_one(n, size, threads, args.seed) for n in names]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(run_one, names, [size] * len(names), [threads] * len(names),
                                 [args.seed] * len(names)))
    name = "recall" + ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    task = task_of(size)
    path = write_results(name, {"config": dict(size, task=vars(task), model=MODEL, lr=LR, window=WINDOW,
                                               jobs=args.jobs, seed=args.seed), "runs": rows})
    print(f"\nRecall accuracy by distance (filler tokens between the pairs and the queries), {task.n_pairs} pairs, "
          f"{size['minutes']:g} CPU min per model; chance 1/{task.n_values}\n")
    print_table(rows, size)
    print(f"\n{time.perf_counter() - t0:.0f} s. results: {path}")


if __name__ == "__main__":
    main()
