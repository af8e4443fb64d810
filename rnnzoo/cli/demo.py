"""``rnnzoo demo``: train a few classic architectures on the same text in one to two minutes of a 2-core CPU,
then compare them: a table of validation loss and speed, a learning-curve plot, and a sample from the best.

Each model trains in its own process with one thread, as many at once as there are cores: small recurrent
layers gain little from a second thread, and separate processes keep both cores busy without contention.
Results do not depend on how the models are scheduled (every run is seeded and deterministic).
"""
from __future__ import annotations

import concurrent.futures as futures
import csv
import multiprocessing
import os
import time
from pathlib import Path

import torch

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import available_mixers
from rnnzoo.tasks.text import CharVocab, default_corpus, read_text, split_ids
from rnnzoo.train.checkpoint import load_checkpoint
from rnnzoo.train.config import TrainConfig
from rnnzoo.train.evaluate import unigram_entropy
from rnnzoo.train.logging import plot_curves
from rnnzoo.train.loop import CHECKPOINT_DIR, VAL_FRACTION, train

PREFERRED = ("lstm", "gru", "elman")
# Sized so that each model reads ~2 epochs of the default corpus (3M characters) and the LSTM and GRU take about
# a minute each on one core. At this budget lr 1e-2 ended ~0.1 bits/char below lr 4e-3 for all three.
DEMO_SETTINGS = dict(d_model=128, n_layers=1, batch_size=32, seq_len=64, steps=1500, lr=1e-2, min_lr=1e-3,
                     warmup_steps=50, weight_decay=0.01, grad_clip=1.0, eval_every=100, eval_batches=8,
                     log_every=20, save_every=0)
STATUS_EVERY_S = 15.0


def run_demo(out_dir: str | Path = "runs/demo", mixers: list[str] | None = None, data: str | None = None,
             steps: int | None = None, d_model: int | None = None, seed: int = 0, progress: bool = True,
             say=print) -> list[dict]:
    """Train each mixer with DEMO_SETTINGS, print the comparison and a sample, and write the plot.

    Replaces an earlier demo in ``out_dir``. Returns one summary dict per mixer, best first.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    mixers = choose_mixers(mixers)
    text, about = (read_text(data), str(data)) if data is not None else default_corpus()
    vocab = CharVocab.from_text(text)
    train_ids, _ = split_ids(vocab.encode(text), VAL_FRACTION)
    entropy = unigram_entropy(train_ids, len(vocab))
    settings = dict(DEMO_SETTINGS, seed=seed, data=data)
    if steps is not None:
        settings["steps"] = steps
    if d_model is not None:
        settings["d_model"] = d_model
    configs = [TrainConfig.from_dict(dict(settings, mixer=m, out_dir=str(out_dir / m))) for m in mixers]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(len(configs), cores))

    say(f"corpus: {about}")
    say(f"{len(vocab)} distinct characters; a model that ignores context scores {entropy:.3f} bits/char "
        "(unigram entropy)")
    say(f"training {', '.join(mixers)}: d_model={settings['d_model']}, {settings['steps']} steps of "
        f"{settings['batch_size']}x{settings['seq_len']} characters each, {workers} at a time")
    results = train_all(configs, workers, say if progress else None)

    results.sort(key=lambda r: r["val_loss"])
    table = format_table(results)
    plot = plot_curves({r["mixer"]: r["history"] for r in results}, out_dir / "learning_curves.png",
                       title=f"character-level LM, d_model={settings['d_model']}", reference_bpc=entropy)
    best = results[0]
    sample = generate_sample(out_dir / best["mixer"] / CHECKPOINT_DIR, seed)
    say("")
    say(table)
    say("")
    say(f"sample from {best['mixer']} (temperature 0.8):")
    say(sample)
    say("")
    say(f"learning curves: {plot}")
    say(f"checkpoints: {out_dir}/<mixer>/{CHECKPOINT_DIR} (try `rnnzoo generate --checkpoint "
        f"{out_dir / best['mixer']}`)")
    say(f"demo took {time.perf_counter() - started:.0f} s")
    (out_dir / "summary.txt").write_text(f"{table}\n\nsample from {best['mixer']}:\n{sample}\n", encoding="utf-8")
    return results


def choose_mixers(mixers: list[str] | None) -> list[str]:
    """The requested mixers, or the classic three where registered (else the first registered ones)."""
    registered = available_mixers()
    if mixers is not None:
        unknown = [m for m in mixers if m not in registered]
        if unknown:
            raise ConfigError(f"unknown mixer {', '.join(map(repr, unknown))}; available: {', '.join(registered)}")
        return list(dict.fromkeys(mixers))
    chosen = [m for m in PREFERRED if m in registered]
    chosen += [m for m in registered if m not in chosen][:max(0, 2 - len(chosen))]
    return chosen


def train_all(configs: list[TrainConfig], workers: int, say) -> list[dict]:
    """Train each config in a one-thread worker process; ``say`` (if given) gets a status line now and then."""
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads,
                                     initargs=(1,)) as pool:
        pending = {pool.submit(train_one, cfg): cfg for cfg in configs}
        results = []
        while pending:
            done, _ = futures.wait(pending, timeout=STATUS_EVERY_S, return_when=futures.FIRST_COMPLETED)
            for future in done:
                cfg = pending.pop(future)
                results.append(future.result())
                if say:
                    r = results[-1]
                    say(f"  {cfg.mixer}: done in {r['seconds']:.0f} s, val {r['bits_per_char']:.3f} bits/char")
            if say and pending and not done:
                say("  " + "; ".join(status(cfg) for cfg in configs))
    return results


def train_one(cfg: TrainConfig) -> dict:
    """Runs in a worker process: train, and return a picklable summary (not the model)."""
    started = time.perf_counter()
    r = train(cfg, progress=False, overwrite=True)
    return {"mixer": cfg.mixer, "params": r.params, "val_loss": r.val_loss, "bits_per_char": r.bits_per_char,
            "tokens_per_s": r.tokens_per_s, "seconds": time.perf_counter() - started, "history": r.history}


def status(cfg: TrainConfig) -> str:
    """``mixer step/steps (last val bits/char)`` from the run's metrics.csv as written so far."""
    path = Path(cfg.out_dir) / "metrics.csv"
    step, bpc = 0, ""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("step", "").isdigit():
                    step = int(row["step"])
                if row.get("val_bpc"):
                    bpc = f", val {float(row['val_bpc']):.2f} bits/char"
    except (OSError, ValueError):
        pass
    return f"{cfg.mixer} {step}/{cfg.steps}{bpc}"


def format_table(results: list[dict]) -> str:
    header = f"{'mixer':<10} {'params':>9} {'val nats/char':>13} {'bits/char':>9} {'tokens/s':>9} {'time s':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r['mixer']:<10} {r['params']:>9,} {r['val_loss']:>13.4f} {r['bits_per_char']:>9.4f} "
                     f"{r['tokens_per_s']:>9,.0f} {r['seconds']:>7.0f}")
    return "\n".join(lines)


def generate_sample(ckpt_dir: Path, seed: int, length: int = 300) -> str:
    """``length`` characters from the saved model, prompted with ``def `` where the vocabulary allows."""
    ckpt = load_checkpoint(ckpt_dir)
    vocab = ckpt.vocab
    prompt = next(p for p in ("def ", "\n", vocab.chars[0]) if set(p) <= set(vocab.chars))
    model = ckpt.model.eval()
    tokens = model.generate(vocab.encode(prompt), length, temperature=0.8,
                            generator=torch.Generator().manual_seed(seed))
    return prompt + vocab.decode(torch.stack(list(tokens)))
