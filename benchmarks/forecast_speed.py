"""Speed of an LSTM forecaster on AirPassengers: rnnzoo's Forecaster against neuralforecast's LSTM.

    .venv/bin/python benchmarks/forecast_speed.py                      # 3 fresh processes per side
    .venv/bin/python benchmarks/forecast_speed.py --repeats 5 --threads 2
    .venv/bin/python benchmarks/forecast_speed.py --peer-python none   # rnnzoo only

bash scripts/peer_venv.sh makes the peer's venv (.peers/nf, git-ignored); without it the peer is skipped.

Every measurement runs in a fresh process, so each side pays its own imports, once: rnnzoo in this venv through
``--worker`` below, the peer through benchmarks/peers/neuralforecast_lstm.py with --peer-python. Each process
times (1) the import of the package as the first thing it does (``import rnnzoo`` then ``import rnnzoo.forecast``
for Forecaster; ``import neuralforecast`` with NeuralForecast, LSTM and the loss), torch and pandas included,
(2) fit on the first 132 months, (3) predict of the last 12. Reported: median, min and max over --repeats
processes, and the ratio peer / rnnzoo of the medians (above 1: rnnzoo is faster). ``import rnnzoo`` alone is also
timed in --repeats processes of its own (the issue's target: under 2 s), in-process and as the whole process,
beside ``import torch`` alone, the floor that any torch library pays.

Same settings on both sides (neuralforecast's names in brackets): h=12, input_size=24, one LSTM layer of 32
(encoder_n_layers=1, encoder_hidden_size=32), an MLP decoder with one hidden layer of 128 units
(decoder_hidden_size=128, decoder_layers=2; GELU in rnnzoo, ReLU in neuralforecast), direct multi-step output
(neuralforecast's LSTM default recurrent=False; rnnzoo strategy="direct"), 300 steps (max_steps) of 128 windows
(windows_batch_size=128; one series, so batch_size does not bind), Adam(W) at lr 1e-3, scaler standard
(scaler_type="standard"), loss mean squared error (rnnzoo loss="mse", neuralforecast MSE()): rnnzoo has no
MAE head for neuralforecast's default MAE (its median quantile loss is MAE/2), while both have plain MSE; point
forecasts only. What still differs is each library's own design: rnnzoo adds a month-of-year input and a linear
input projection, and its decoder reads the last encoder state once for all 12 steps, where neuralforecast's
shared MLP reads the last 12 states;
rnnzoo decays the learning rate on a cosine, neuralforecast keeps it constant (num_lr_decays=-1); neuralforecast
trains through Lightning. The held-out MAE is printed as a check that both trained, not as an accuracy result.
Writes benchmarks/results/forecast_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "neuralforecast_lstm.py"
DEFAULT_PEER = ROOT / ".peers" / "nf" / "bin" / "python"
IMPORT_ALONE = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
# the settings both sides share (--steps and --threads come from the command line)
H, INPUT_SIZE, HIDDEN, DECODER_HIDDEN, WINDOWS_BATCH, LR, SEED = 12, 24, 32, 128, 128, 1e-3, 1


def worker(args: argparse.Namespace) -> None:
    """rnnzoo's side, one process: imports first (nothing else is loaded yet), then fit and predict."""
    t0 = time.perf_counter()
    import rnnzoo
    t1 = time.perf_counter()
    from rnnzoo.forecast import Forecaster
    t2 = time.perf_counter()
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    df = pd.read_csv(args.data, parse_dates=["ds"])
    train, test = df.iloc[:-H], df.iloc[-H:]
    fc = Forecaster(mixer="lstm", h=H, input_size=INPUT_SIZE, strategy="direct", loss="mse", level=(),
                    scaler="standard", freq="ME", d_model=HIDDEN, n_layers=1, decoder_hidden=DECODER_HIDDEN,
                    max_steps=args.steps, batch_size=WINDOWS_BATCH, lr=LR, seed=SEED)
    t3 = time.perf_counter()
    fc.fit(train)
    t4 = time.perf_counter()
    pred = fc.predict()
    t5 = time.perf_counter()
    mae = float(np.mean(np.abs(pred["lstm"].to_numpy() - test["y"].to_numpy())))
    out = {"package": "rnnzoo", "version": getattr(rnnzoo, "__version__", "?"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "import_s": t2 - t0, "import_rnnzoo_s": t1 - t0,
           "import_forecast_s": t2 - t1, "fit_s": t4 - t3, "predict_s": t5 - t4, "holdout_mae": mae}
    Path(args.out).write_text(json.dumps(out))


def run_side(cmd: list[str], env: dict, out: Path) -> dict:
    """One fresh process; its own timings plus the wall time of the whole process (interpreter start included)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    out.unlink()
    return {**res, "fit_predict_s": res["fit_s"] + res["predict_s"], "process_s": wall}


def summary(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs]
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per side")
    ap.add_argument("--steps", type=int, default=300, help="training steps (max_steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER),
                    help="python of the venv with neuralforecast ('none' skips the peer)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import markdown_table, write_results

    from rnnzoo.forecast.datasets import air_passengers

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    peer = None if args.peer_python == "none" else Path(args.peer_python)
    if peer is not None and not peer.exists():
        print(f"peer skipped: {peer} does not exist; run `bash scripts/peer_venv.sh` to create it "
              "(installs neuralforecast into .peers/nf)")
        peer = None
    peer_settings = ["--h", str(H), "--input-size", str(INPUT_SIZE), "--hidden", str(HIDDEN),
                     "--decoder-hidden", str(DECODER_HIDDEN), "--windows-batch", str(WINDOWS_BATCH), "--lr", str(LR),
                     "--seed", str(SEED)]
    sides: dict[str, list[dict]] = {"rnnzoo": []}
    if peer is not None:
        sides["neuralforecast"] = []
    alone: dict[str, list[dict]] = {"rnnzoo": [], "torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "air_passengers.csv", Path(tmp) / "result.json"
        air_passengers().to_csv(data, index=False)
        common = ["--data", str(data), "--out", str(out), "--steps", str(args.steps),
                  "--threads", str(args.threads)]
        for i in range(args.repeats):  # the sides alternate, so a busy spell of the machine hits both alike
            print(f"repeat {i + 1}/{args.repeats}", flush=True)
            sides["rnnzoo"].append(run_side([sys.executable, __file__, "--worker"] + common, env, out))
            if peer is not None:
                peer_cmd = [str(peer), str(PEER_SCRIPT)] + common + peer_settings
                sides["neuralforecast"].append(run_side(peer_cmd, env, out))
            for package, runs in alone.items():
                t0 = time.perf_counter()
                line = subprocess.run([sys.executable, "-c", IMPORT_ALONE.format(package)], env=env,
                                      capture_output=True, text=True, check=True).stdout
                runs.append({"import_s": float(line), "process_s": time.perf_counter() - t0})

    phases = ["import_s", "fit_s", "predict_s", "fit_predict_s", "process_s"]
    result = {name: {p: summary(runs, p) for p in phases} for name, runs in sides.items()}
    result["rnnzoo"]["import_rnnzoo_s"] = summary(sides["rnnzoo"], "import_rnnzoo_s")
    import_alone = {package: {"import_s": summary(runs, "import_s"), "process_s": summary(runs, "process_s")}
                    for package, runs in alone.items()}
    ratios = ({p: result["neuralforecast"][p]["median_s"] / result["rnnzoo"][p]["median_s"] for p in phases}
              if peer is not None else None)

    def cell(s: dict) -> str:
        return f"{s['median_s']:.3f} ({s['min_s']:.3f}-{s['max_s']:.3f})"

    rows = [[name, runs[0]["version"], *[cell(result[name][p]) for p in phases],
             f"{statistics.median(r['holdout_mae'] for r in runs):.1f}"] for name, runs in sides.items()]
    if ratios:
        rows.append(["peer / rnnzoo", "", *[f"{ratios[p]:.2f}x" for p in phases], ""])
    table = markdown_table(["side", "version", "import (s)", "fit (s)", "predict (s)", "fit+predict (s)",
                            "process (s)", "holdout MAE"], rows)
    print(f"\nAirPassengers, h={H}, input_size={INPUT_SIZE}, LSTM 1x{HIDDEN}, {args.steps} steps of "
          f"{WINDOWS_BATCH} windows, {args.threads} thread(s); median (min-max) of {args.repeats} fresh "
          f"processes\n\n{table}")
    s = import_alone["rnnzoo"]["import_s"]
    verdict = "meets" if s["median_s"] < 2.0 else "misses"
    print(f"\n`import rnnzoo` alone: {cell(s)} s in-process, {cell(import_alone['rnnzoo']['process_s'])} s for "
          f"the whole process; {verdict} the target of under 2 s (`import torch` alone: "
          f"{cell(import_alone['torch']['import_s'])} s in-process)")
    path = write_results("forecast_speed", {
        "config": {"series": "AirPassengers", "h": H, "input_size": INPUT_SIZE, "hidden": HIDDEN,
                   "decoder_hidden": DECODER_HIDDEN, "steps": args.steps, "windows_batch": WINDOWS_BATCH,
                   "lr": LR, "loss": "mse", "scaler": "standard", "strategy": "direct", "seed": SEED,
                   "threads": args.threads, "repeats": args.repeats,
                   "peer_python": str(peer) if peer is not None else None},
        "summary": result, "ratio_peer_over_rnnzoo": ratios, "import_alone": import_alone,
        "import_rnnzoo_under_2s": s["median_s"] < 2.0, "runs": sides, "import_alone_runs": alone,
        "table": table})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
