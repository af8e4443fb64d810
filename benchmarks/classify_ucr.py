"""Sequence classification on UCR/UEA data sets shipped with sktime: rnnzoo mixers against 1-NN ED and DTW.

    .venv/bin/python benchmarks/classify_ucr.py                                  # 5 data sets, 4 mixers, 3 seeds
    .venv/bin/python benchmarks/classify_ucr.py --datasets GunPoint --mixers lstm mamba2 --seeds 5
    .venv/bin/python benchmarks/classify_ucr.py --quick                          # ItalyPowerDemand, 2 mixers, 1 seed

Each mixer is a one-layer SequenceClassifier (d_model 64, last-step pooling, AdamW with a cosine schedule,
inputs standardised per channel) trained for --epochs on the archive's train split and scored on its test
split, once per seed: the table gives the test error as mean +- std over seeds with the mean fit time. The
1-NN rows use the squared Euclidean distance and full-window DTW (rnnzoo.classify.nn_baselines); ED is left
out (n/a) for unequal-length data sets. For reference, the UCR archive (Dau et al. 2019) lists 1-NN ED / DTW
test errors of 0.045 / 0.050 for ItalyPowerDemand and 0.087 / 0.093 for GunPoint.
Writes benchmarks/results/classify_ucr.json (classify_ucr_quick.json with --quick) and prints the table.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_size_options, markdown_table, set_threads, write_results  # noqa: E402

from rnnzoo.classify import SequenceClassifier, UCR_DATASETS, load_ucr, one_nn_error  # noqa: E402

DEFAULT_DATASETS = ["ItalyPowerDemand", "GunPoint", "ArrowHead", "BasicMotions", "JapaneseVowels"]
DEFAULT_MIXERS = ["lstm", "gru", "mingru", "mamba2"]


def describe(X) -> dict:
    if isinstance(X, list):
        lengths = [len(x) for x in X]
        return {"n": len(X), "T": f"{min(lengths)}-{max(lengths)}", "C": 1 if X[0].ndim == 1 else X[0].shape[1]}
    return {"n": len(X), "T": X.shape[1], "C": 1 if X.ndim == 2 else X.shape[2]}


def nn_rows(X_train, y_train, X_test, y_test) -> dict:
    """1-NN test errors and times; ED only when every series has one length."""
    out = {}
    metrics = ("dtw",) if isinstance(X_train, list) else ("euclidean", "dtw")
    for metric in metrics:
        t0 = time.perf_counter()
        error = one_nn_error(X_train, y_train, X_test, y_test, metric=metric)
        out[metric] = {"error": error, "time_s": time.perf_counter() - t0}
    return out


def mixer_row(mixer: str, seeds: int, X_train, y_train, X_test, y_test, args) -> dict:
    # one throwaway epoch first, so that the first seed's time does not include torch's one-off warm-up
    SequenceClassifier(mixer, d_model=args.d_model, n_layers=args.n_layers, epochs=1).fit(X_train, y_train)
    errors, times = [], []
    for seed in range(seeds):
        clf = SequenceClassifier(mixer, d_model=args.d_model, n_layers=args.n_layers, epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr, pooling=args.pooling, seed=seed)
        t0 = time.perf_counter()
        clf.fit(X_train, y_train)
        times.append(time.perf_counter() - t0)
        errors.append(1.0 - clf.score(X_test, y_test))
        print(f"  {mixer} seed {seed}: test error {errors[-1]:.3f}, fit {times[-1]:.1f} s", flush=True)
    return {"errors": errors, "error_mean": statistics.mean(errors),
            "error_std": statistics.stdev(errors) if seeds > 1 else 0.0,
            "fit_s": times, "fit_s_mean": statistics.mean(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", choices=UCR_DATASETS, help=f"default: {' '.join(DEFAULT_DATASETS)}")
    ap.add_argument("--mixers", nargs="+", help=f"default: {' '.join(DEFAULT_MIXERS)}")
    ap.add_argument("--seeds", type=int, help="seeds per mixer (default 3, 1 with --quick)")
    ap.add_argument("--epochs", type=int, help="default 100, 5 with --quick")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--pooling", choices=("last", "mean"), default="last")
    add_size_options(ap)
    args = ap.parse_args()
    set_threads(args)
    datasets = args.datasets or (["ItalyPowerDemand"] if args.quick else DEFAULT_DATASETS)
    mixers = args.mixers or (["lstm", "gru"] if args.quick else DEFAULT_MIXERS)
    seeds = args.seeds or (1 if args.quick else 3)
    args.epochs = args.epochs or (5 if args.quick else 100)

    results = []
    for name in datasets:
        X_train, y_train = load_ucr(name, "train")
        X_test, y_test = load_ucr(name, "test")
        shape = describe(X_train)
        print(f"{name}: {shape['n']} train / {len(y_test)} test, T={shape['T']}, C={shape['C']}", flush=True)
        entry = {"dataset": name, "n_train": shape["n"], "n_test": len(y_test), "T": shape["T"], "C": shape["C"],
                 "classes": len(set(y_train)), "one_nn": nn_rows(X_train, y_train, X_test, y_test),
                 "mixers": {m: mixer_row(m, seeds, X_train, y_train, X_test, y_test, args) for m in mixers}}
        results.append(entry)

    config = {"datasets": datasets, "mixers": mixers, "seeds": seeds, "epochs": args.epochs,
              "d_model": args.d_model, "n_layers": args.n_layers, "batch_size": args.batch_size, "lr": args.lr,
              "pooling": args.pooling}
    path = write_results("classify_ucr" + ("_quick" if args.quick else ""), {"config": config, "results": results})

    def nn_cell(r, metric):
        return f"{r['one_nn'][metric]['error']:.3f}" if metric in r["one_nn"] else "n/a"

    def mixer_cell(m):
        return f"{m['error_mean']:.3f} +- {m['error_std']:.3f} ({m['fit_s_mean']:.1f} s)"

    print(f"\nTest error (mean +- std over {seeds} seed(s), mean fit time); {args.epochs} epochs, "
          f"d_model={args.d_model}, n_layers={args.n_layers}\n")
    print(markdown_table(["data set", "N train/test", "T", "C", "1-NN ED", "1-NN DTW", *mixers],
                         [[r["dataset"], f"{r['n_train']}/{r['n_test']}", r["T"], r["C"], nn_cell(r, "euclidean"),
                           nn_cell(r, "dtw"), *(mixer_cell(r["mixers"][m]) for m in mixers)] for r in results]))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
