"""The ``rnnzoo`` command: list | train | generate | demo | forecast | classify | bench.

Every rnnzoo error is printed as one line, ``rnnzoo: error: <message>``, with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from rnnzoo.cli import bench, classify, forecast
from rnnzoo.cli.demo import run_demo
from rnnzoo.errors import ConfigError, RnnzooError
from rnnzoo.mixers import describe_mixers
from rnnzoo.train.checkpoint import load_checkpoint
from rnnzoo.train.config import TrainConfig, parse_value
from rnnzoo.train.loop import CHECKPOINT_DIR, train

# train flags -> TrainConfig keys (the rest of TrainConfig is reachable with --set key=value)
TRAIN_FLAGS = {"mixer": "mixer", "data": "data", "d_model": "d_model", "n_layers": "n_layers", "steps": "steps",
               "seq_len": "seq_len", "batch_size": "batch_size", "lr": "lr", "bptt": "bptt", "clip": "grad_clip",
               "seed": "seed", "out": "out_dir", "device": "device"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed its usage message
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.run(args)
    except RnnzooError as e:
        message = " ".join(str(e).split())
        print(f"rnnzoo: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnzoo: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnzoo", description="Recurrent sequence models under one contract.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="registered mixers with one-line descriptions")
    p.set_defaults(run=cmd_list)

    p = commands.add_parser("train", help="train a character-level language model")
    p.add_argument("--mixer", help="registered mixer name (see `rnnzoo list`)")
    p.add_argument("--data", help="UTF-8 text file (default: the Python standard library's source)")
    p.add_argument("--d-model", type=int)
    p.add_argument("--n-layers", type=int)
    p.add_argument("--steps", type=int, help="optimizer updates")
    p.add_argument("--seq-len", type=int, help="tokens per stream per update (k1)")
    p.add_argument("--batch-size", type=int, help="streams per update (global, over all ranks)")
    p.add_argument("--lr", type=float)
    p.add_argument("--bptt", type=int, help="gradient horizon in tokens (k2, default seq-len)")
    p.add_argument("--clip", type=float, help="gradient-norm clip (0 = off)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output directory (metrics, plot, checkpoint/)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any TrainConfig field, e.g. --set warmup_steps=100 --set dropout=0.1")
    p.add_argument("--mixer-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the mixer, e.g. --mixer-option hidden_size=256")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("generate", help="sample text from a trained checkpoint")
    p.add_argument("--checkpoint", required=True, help="a run's --out directory or its checkpoint/ directory")
    p.add_argument("--prompt", default="\n", help="text to start from (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_generate)

    p = commands.add_parser("demo", help="train a few architectures on the default corpus and compare them")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--mixers", help="comma-separated mixer names (default: lstm,gru,elman where registered)")
    p.add_argument("--data", help="text file instead of the default corpus")
    p.add_argument("--steps", type=int, help="updates per model")
    p.add_argument("--d-model", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=cmd_demo)

    forecast.add_parser(commands)
    classify.add_parser(commands)
    bench.add_parser(commands)
    return parser


def cmd_list(args) -> int:
    mixers = describe_mixers()
    width = max(map(len, mixers), default=0)
    for name, description in mixers.items():
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_train(args) -> int:
    base = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    cfg = TrainConfig.from_overrides(args.set, base)
    options = dict(cfg.mixer_options)
    for item in args.mixer_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected --mixer-option key=value, got {item!r}; e.g. hidden_size=256")
        options[key.strip()] = parse_value(value)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "mixer_options": options})
    try:
        result = train(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(f"rnnzoo: interrupted; the checkpoint in {Path(cfg.out_dir) / CHECKPOINT_DIR} holds the last "
              "completed step: continue with the same command and --resume", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{cfg.mixer}: {result.params:,} parameters, {result.steps} steps, "
              f"{result.tokens_per_s:,.0f} tokens/s")
        print(f"validation loss {result.val_loss:.4f} nats/char = {result.bits_per_char:.4f} bits/char")
        print(f"wrote {result.out_dir / CHECKPOINT_DIR}, {result.out_dir / 'metrics.csv'}, "
              f"{result.out_dir / 'learning_curve.png'}")
    return 0


def cmd_generate(args) -> int:
    path = Path(args.checkpoint)
    if (path / CHECKPOINT_DIR).is_dir() and not (path / "config.json").exists():
        path = path / CHECKPOINT_DIR
    ckpt = load_checkpoint(path)
    if not args.prompt:
        raise ConfigError("the prompt is empty; pass --prompt with at least one character")
    prompt = ckpt.vocab.encode(args.prompt)
    model = ckpt.model.eval()
    generator = torch.Generator().manual_seed(args.seed)
    tokens = model.generate(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                            generator=generator)
    sys.stdout.write(args.prompt)
    for token in tokens:
        sys.stdout.write(ckpt.vocab.decode(token))
        sys.stdout.flush()
    print()
    return 0


def cmd_demo(args) -> int:
    if args.mixers is not None:
        mixers = [m.strip() for m in args.mixers.split(",") if m.strip()]
        if not mixers:
            raise ConfigError("--mixers is empty; name at least one mixer, e.g. --mixers lstm,gru")
    else:
        mixers = None
    run_demo(args.out, mixers=mixers, data=args.data, steps=args.steps, d_model=args.d_model, seed=args.seed,
             progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
