"""``rnnzoo classify``: train mixers on a UCR/UEA data set shipped with sktime and set their test error beside
the 1-nearest-neighbour baselines, squared Euclidean distance and full-window DTW (the reference classifiers of
the UCR archive, Dau et al. 2019; rnnzoo.classify.nn_baselines).

    rnnzoo classify                                          # ItalyPowerDemand: lstm, gru, 1-NN ED and DTW
    rnnzoo classify --dataset GunPoint --mixers gru,mingru --epochs 200

Each mixer is a one-layer SequenceClassifier fitted on the archive's train split and scored on its test split.
Writes --out/classify.csv (dataset, model, test_error, seconds). 1-NN ED is left out for unequal-length sets.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

from rnnzoo.cli.forecast import parse_names
from rnnzoo.errors import ConfigError
from rnnzoo.mixers import available_mixers


def add_parser(commands) -> None:
    p = commands.add_parser("classify", help="train mixers on a UCR data set, compare with 1-NN ED and DTW")
    p.add_argument("--dataset", default="ItalyPowerDemand", help="a data set shipped with sktime "
                   "(default ItalyPowerDemand; see rnnzoo.classify.UCR_DATASETS)")
    p.add_argument("--mixers", default="lstm,gru", help="comma-separated mixer names, or none (default lstm,gru)")
    p.add_argument("--epochs", type=int, default=100, help="passes over the train split (default 100)")
    p.add_argument("--d-model", type=int, default=64, help="mixer width (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/classify", help="output directory (default runs/classify)")
    p.set_defaults(run=run)


def run(args) -> int:
    from rnnzoo.classify import SequenceClassifier, load_ucr, one_nn_error  # sktime and scikit-style code: lazy

    mixers = parse_names(args.mixers, "--mixers", available_mixers(), "mixer")
    for flag in ("epochs", "d_model"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    X_train, y_train = load_ucr(args.dataset, "train")
    X_test, y_test = load_ucr(args.dataset, "test")
    print(f"{args.dataset}: {len(y_train)} train and {len(y_test)} test series, {len(set(y_train))} classes")

    rows = []
    for mixer in mixers:
        started = time.perf_counter()
        clf = SequenceClassifier(mixer, d_model=args.d_model, epochs=args.epochs, seed=args.seed)
        clf.fit(X_train, y_train)
        rows.append({"model": mixer, "test_error": 1.0 - clf.score(X_test, y_test),
                     "seconds": time.perf_counter() - started})
        print(f"  {mixer}: {args.epochs} epochs in {rows[-1]['seconds']:.1f} s", flush=True)
    # Euclidean distance compares step t with step t only, so it needs one length for every series
    metrics = [("1-NN DTW", "dtw")] if isinstance(X_train, list) else [("1-NN ED", "euclidean"), ("1-NN DTW", "dtw")]
    for name, metric in metrics:
        started = time.perf_counter()
        error = one_nn_error(X_train, y_train, X_test, y_test, metric=metric)
        rows.append({"model": name, "test_error": error, "seconds": time.perf_counter() - started})

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "classify.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["dataset", "model", "test_error", "seconds"])
        writer.writeheader()
        writer.writerows({"dataset": args.dataset, **r} for r in rows)
    print()
    print(format_table(rows))
    print("* lowest test error; seconds: fit and score for a mixer, all test distances for 1-NN")
    print(f"wrote {path}")
    return 0


def format_table(rows: list[dict]) -> str:
    best = min(r["test_error"] for r in rows)
    width = max(len("model"), *(len(r["model"]) for r in rows))
    header = f"{'model':<{width}} {'test error':>11} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        mark = "*" if r["test_error"] == best else " "
        lines.append(f"{r['model']:<{width}} {r['test_error']:>10.4f}{mark} {r['seconds']:>8.1f}")
    return "\n".join(lines)
