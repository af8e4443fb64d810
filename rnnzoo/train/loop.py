"""Training a character-level language model, composed from plain parts read top to bottom:

    data (text -> vocabulary -> ids -> contiguous streams) -> model -> AdamW -> [resume from checkpoint] ->
    loop (truncated BPTT with the state carried, clipping, warm-up + cosine) -> metrics, checkpoints, plot

Resuming is exact: a run stopped at any step and resumed ends with bitwise the same weights as one that never
stopped, because the checkpoint holds everything a step depends on: weights, optimizer moments, the RNG state,
the carried recurrent state and context, and the step (which picks the batch and the learning rate).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from rnnzoo.errors import CheckpointError, ConfigError, DataError, DivergedError
from rnnzoo.mixers.state import detach_state, flatten_state, unflatten_state
from rnnzoo.models.lm import LanguageModel
from rnnzoo.tasks.text import CharVocab, StreamBatches, default_corpus, read_text, split_ids
from rnnzoo.train.checkpoint import load_checkpoint, save_checkpoint
from rnnzoo.train.config import TrainConfig
from rnnzoo.train.distributed import (DistContext, any_rank, barrier, broadcast_from_main, gather_rows,
                                      init_distributed, mean_over_ranks, rank_rows, shutdown, wrap_model)
from rnnzoo.train.evaluate import bits_per_char, evaluate
from rnnzoo.train.logging import MetricsLog, plot_curves, progress_bar

CHECKPOINT_DIR = "checkpoint"  # out_dir/checkpoint; metrics.csv and the plot sit beside it in out_dir
VAL_FRACTION = 0.1


@dataclass
class TrainResult:
    val_loss: float  # nats/char on the whole validation split, after the last step
    bits_per_char: float
    tokens_per_s: float  # global training tokens per second of training (evaluation and saving excluded)
    params: int
    steps: int
    out_dir: Path
    history: list[dict] = field(repr=False)  # the metrics.csv rows
    model: LanguageModel = field(repr=False)
    vocab: CharVocab = field(repr=False)


class Carry(NamedTuple):
    """What one update hands the next: ``context``, the last bptt - seq_len tokens of each stream (none unless
    bptt > seq_len), which the next update runs again for its gradients, and the detached ``state`` before
    them (None: start fresh)."""
    state: Any
    context: torch.Tensor  # (b, c) token ids

    @classmethod
    def fresh(cls, rows: int, device: torch.device) -> Carry:
        return cls(None, torch.empty(rows, 0, dtype=torch.long, device=device))


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, *, overwrite: bool = False) -> TrainResult:
    """Train a LanguageModel as ``cfg`` says; with ``resume``, continue the run saved in ``cfg.out_dir``.

    A fresh run refuses an out_dir that already holds a checkpoint unless ``overwrite``, so nothing saved is
    lost by mistake. Ctrl-C finishes the current step, saves a checkpoint and raises KeyboardInterrupt.
    Launched by torchrun (WORLD_SIZE > 1) it trains data-parallel (see rnnzoo.train.distributed).
    """
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"train takes a TrainConfig, got {type(cfg).__name__}; build one with "
                          "TrainConfig(...) or TrainConfig.from_dict(...)")
    ctx = init_distributed(cfg.device)
    clean = False
    try:
        with deterministic(ctx.device.type == "cpu"), StopRequest() as stop:
            result = _train(cfg, ctx, resume, progress, overwrite, stop)
        clean = True
        return result
    finally:
        shutdown(ctx, clean)


def _train(cfg: TrainConfig, ctx: DistContext, resume: bool, progress: bool, overwrite: bool,
           stop: StopRequest) -> TrainResult:
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out_dir {str(out_dir)!r} is a file; pass a directory (it is created if missing)")
    if resume and not has_checkpoint(ckpt_dir):
        raise CheckpointError(f"there is no checkpoint to resume in {str(out_dir)!r}; "
                              "run without resume to start a new run there")
    if not resume and has_checkpoint(ckpt_dir) and not overwrite:
        raise ConfigError(f"{str(out_dir)!r} already holds a checkpoint; resume it (--resume), pick another "
                          "out_dir, or pass --overwrite to replace it")

    # Data: the characters of the training text, a 90/10 split, contiguous streams (this rank's rows).
    text = read_text(cfg.data) if cfg.data is not None else default_corpus()[0]
    vocab = CharVocab.from_text(text)
    train_ids, val_ids = split_ids(vocab.encode(text), VAL_FRACTION)
    batches = StreamBatches(train_ids, cfg.batch_size, cfg.seq_len, ctx.rank, ctx.world_size)
    val_rows = min(cfg.batch_size, (len(val_ids) - 1) // cfg.seq_len)
    if val_rows < 1:
        raise DataError(f"the validation split (the last {VAL_FRACTION:.0%} of the text, {len(val_ids)} "
                        f"characters) is shorter than one sequence of seq_len + 1 = {cfg.seq_len + 1}; "
                        "use a longer text or a smaller seq_len")
    fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()

    # Model and optimizer. Every rank uses the same seed, so the initial weights agree.
    torch.manual_seed(cfg.seed)
    model = LanguageModel(len(vocab), cfg.mixer, cfg.d_model, cfg.n_layers, residual=cfg.residual,
                          mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, memory_layers=cfg.memory_layers,
                          memory_options=cfg.memory_options, **cfg.mixer_options).to(ctx.device)
    optimizer = make_optimizer(model, cfg)

    step, carry, history = 0, Carry.fresh(cfg.batch_size // ctx.world_size, ctx.device), []
    if resume:
        step, carry, history = restore(ckpt_dir, cfg, model, optimizer, fingerprint, ctx)
    net = wrap_model(model, ctx)  # DistributedDataParallel under torchrun, else the model itself

    def checkpoint() -> None:
        """Save on rank 0 with the carried state of the whole global batch (all ranks take part)."""
        state = gather_rows(flatten_state(carry.state), ctx) if carry.state is not None else None
        context = gather_rows([carry.context], ctx)[0]
        if ctx.is_main:
            rng_cuda = torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None
            save_checkpoint(ckpt_dir, model=model, vocab=vocab, train_config=cfg.to_dict(), trainer_state={
                "step": step, "optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state(),
                "rng_cuda": rng_cuda, "carry_state": None if state is None else [t.cpu() for t in state],
                "carry_context": context.cpu(), "data_sha256": fingerprint, "metrics": history,
            })
        barrier(ctx)

    # The loop. One step: the next chunk of every stream, forward from the carry, loss, backward, update.
    bptt = cfg.bptt or cfg.seq_len
    tokens_per_step = cfg.batch_size * cfg.seq_len  # the global batch
    first_step, train_time = step, 0.0
    interval_loss, interval_steps, interval_time = 0.0, 0, 0.0
    log = MetricsLog(out_dir, history) if ctx.is_main else None
    bar = progress_bar(cfg.steps, step, cfg.mixer, progress and ctx.is_main)
    stopping_together = False
    started = time.perf_counter()
    try:
        while step < cfg.steps:
            if any_rank(stop.requested, ctx):
                stopping_together = True
                raise KeyboardInterrupt
            x, y, reset = batches.get(step)
            if reset or not cfg.carry_state:
                carry = Carry.fresh(x.shape[0], ctx.device)
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            loss, grad_norm, carry = train_step(net, optimizer, x.to(ctx.device), y.to(ctx.device), carry, bptt,
                                                cfg.grad_clip)
            if any_rank(not math.isfinite(loss.item()), ctx):
                raise DivergedError(
                    f"the training loss became {loss.item()} at step {step + 1}: the model diverged, and this "
                    f"step's update is not saved (the last checkpoint in {str(ckpt_dir)!r}, if any, is untouched). "
                    f"Lower lr (now {lr:.3g}), turn on grad_clip, or bound the recurrence "
                    "(e.g. indrnn's recurrent_max=1.0)")
            step += 1
            interval_loss += loss.item()
            elapsed = time.perf_counter() - t0
            interval_steps += 1
            interval_time += elapsed
            train_time += elapsed
            bar.update(1)

            out_of_time = cfg.max_minutes is not None and time.perf_counter() - started > 60 * cfg.max_minutes
            final = step == cfg.steps or any_rank(out_of_time, ctx)
            evaluating = final or (cfg.eval_every > 0 and step % cfg.eval_every == 0)
            if evaluating or step % cfg.log_every == 0:
                row = {"step": step, "train_loss": mean_over_ranks(interval_loss / interval_steps, ctx),
                       "val_loss": None, "val_bpc": None, "lr": lr, "grad_norm": float(grad_norm),
                       "tokens_per_s": interval_steps * tokens_per_step / interval_time}
                if evaluating and ctx.is_main:
                    row["val_loss"] = evaluate(model, val_ids, val_rows, cfg.seq_len,
                                               None if final else cfg.eval_batches, cfg.carry_state)
                    row["val_bpc"] = bits_per_char(row["val_loss"])
                barrier(ctx)
                history.append(row)
                if log is not None:
                    log.log(row)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", tok_s=f"{row['tokens_per_s']:,.0f}")
                interval_loss, interval_steps, interval_time = 0.0, 0, 0.0
            if final:
                break
            if cfg.save_every > 0 and step % cfg.save_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        if stopping_together or not ctx.enabled:
            checkpoint()
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()

    checkpoint()
    if ctx.is_main:
        plot_curves({cfg.mixer: history}, out_dir / "learning_curve.png",
                    title=f"{cfg.mixer}, d_model={cfg.d_model}, {cfg.n_layers} layer(s)")
    val_loss = broadcast_from_main(history[-1]["val_loss"] if ctx.is_main else 0.0, ctx)
    return TrainResult(val_loss=val_loss, bits_per_char=bits_per_char(val_loss),
                       tokens_per_s=(step - first_step) * tokens_per_step / max(train_time, 1e-9),
                       params=model.num_parameters(), steps=step, out_dir=out_dir, history=history, model=model,
                       vocab=vocab)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               carry: Carry, bptt: int, grad_clip: float) -> tuple[torch.Tensor, torch.Tensor, Carry]:
    """One update on a chunk x, y (b, k1): forward from the carry, mean cross-entropy over the k1 new tokens
    (teacher forcing: the inputs are the true previous characters), backward, clip, AdamW step.

    Returns (loss, gradient norm before clipping, the carry for the next chunk).
    """
    logits, next_carry = forward_chunk(model, x, carry, bptt)  # (b, k1, V)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    optimizer.step()
    return loss.detach(), grad_norm, next_carry


def forward_chunk(model: torch.nn.Module, x: torch.Tensor, carry: Carry, bptt: int) -> tuple[torch.Tensor, Carry]:
    """Logits for the chunk x (b, k1) with a ``bptt``-token gradient horizon, and the next carry.

    The window is carry.context followed by x, run from carry.state in segments cut at: the end of the context
    (only later logits are returned), the start of the next context (the state there is what the next chunk
    starts from), and every ``bptt`` tokens when bptt < k1, where the state is detached. By the mixer contract
    the segments together compute exactly one forward over the window.
    """
    k1, c = x.shape[1], carry.context.shape[1]
    window = torch.cat([carry.context, x], dim=1)  # (b, c + k1)
    end = c + k1
    keep = max(end - max(bptt - k1, 0), 0)  # the next context is window[:, keep:]
    cuts = {c, keep, end}
    if bptt < k1:
        cuts.update(range(bptt, k1, bptt))
    state, keep_state, scored, start = carry.state, carry.state, [], 0
    for cut in sorted(cuts - {0}):
        logits, state = model(window[:, start:cut], state)  # (b, cut - start, V)
        if start >= c:
            scored.append(logits)
        if cut == keep:
            keep_state = detach_state(state)
        if bptt < k1:
            state = detach_state(state)
        start = cut
    return torch.cat(scored, dim=1), Carry(keep_state, window[:, keep:])


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then a cosine down to ``min_lr`` at ``decay_steps``
    (default ``steps``), then ``min_lr``. A pure function of the step: the step is the schedule's whole state."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    horizon = cfg.decay_steps or cfg.steps
    if step >= horizon:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(horizon - cfg.warmup_steps, 1)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only, not on biases and norm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def has_checkpoint(ckpt_dir: Path) -> bool:
    """A checkpoint, or the ``.old`` copy a save that crashed mid-swap leaves (load_checkpoint reads both)."""
    return ckpt_dir.exists() or ckpt_dir.with_name(ckpt_dir.name + ".old").exists()


def restore(ckpt_dir: Path, cfg: TrainConfig, model: LanguageModel, optimizer: torch.optim.Optimizer,
            fingerprint: str, ctx: DistContext) -> tuple[int, Carry, list[dict]]:
    """Load what a step depends on from the checkpoint, after checking that it belongs to this run."""
    ckpt = load_checkpoint(ckpt_dir, map_location=ctx.device)
    saved = ckpt.trainer_state
    if saved is None:
        raise CheckpointError(f"{ckpt_dir} holds weights but no trainer state (trainer.pt), so it cannot be "
                              "resumed; use it with `rnnzoo generate`, or start a new run elsewhere")
    if saved.get("data_sha256") != fingerprint:
        raise ConfigError(f"the training text differs from the one the checkpoint in {ckpt_dir} was trained on; "
                          "pass the same data to resume, or use another out_dir for a new run")
    old_cfg = ckpt.train_config or {}
    mine, theirs = model.config.to_dict(), ckpt.model.config.to_dict()
    diffs = [f"{k}={theirs[k]!r} there, {mine[k]!r} here" for k in mine if mine[k] != theirs[k]]
    old_bptt = old_cfg.get("bptt") or old_cfg.get("seq_len")
    for key, old, new in (("batch_size", old_cfg.get("batch_size"), cfg.batch_size),
                          ("seq_len", old_cfg.get("seq_len"), cfg.seq_len),
                          ("bptt", old_bptt, cfg.bptt or cfg.seq_len)):
        if old != new:
            diffs.append(f"{key}={old!r} there, {new!r} here")
    if diffs:
        raise ConfigError(f"cannot resume {ckpt_dir}: the run differs from the checkpoint ({'; '.join(diffs)}); "
                          "pass the checkpoint's settings, or use another out_dir for a new run")
    step = saved.get("step")
    if isinstance(step, int) and step >= cfg.steps:
        raise ConfigError(f"the checkpoint in {ckpt_dir} is already at step {step} of steps={cfg.steps}; "
                          "pass a larger steps to train further")
    try:
        model.load_state_dict(ckpt.model.state_dict())
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng_cpu"].cpu())
        if ctx.device.type == "cuda" and saved["rng_cuda"] is not None:
            torch.cuda.set_rng_state(saved["rng_cuda"].cpu(), ctx.device)
        state = None
        if saved["carry_state"] is not None:
            template = model.init_state(cfg.batch_size // ctx.world_size, device=ctx.device)
            state = unflatten_state(template, [rank_rows(t, ctx).to(ctx.device) for t in saved["carry_state"]])
        carry = Carry(state, rank_rows(saved["carry_context"], ctx).to(ctx.device))
        history = list(saved["metrics"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{ckpt_dir}/trainer.pt is incomplete or from another version "
                              f"({type(e).__name__}: {str(e)[:200]}); start a new run") from None
    if not isinstance(step, int):
        raise CheckpointError(f"{ckpt_dir}/trainer.pt has no step count; it is damaged, start a new run")
    return step, carry, history


@contextlib.contextmanager
def deterministic(enabled: bool):
    """torch.use_deterministic_algorithms for the run (only warning where an op has no deterministic
    kernel), with the caller's setting restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


class StopRequest:
    """While training, Ctrl-C sets ``requested`` instead of raising at an arbitrary point; the loop stops
    between two steps and saves a consistent checkpoint. A second Ctrl-C raises at once."""

    def __enter__(self) -> StopRequest:
        self.requested, self._installed = False, threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)
