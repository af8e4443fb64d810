"""The peer's side of benchmarks/forecast_speed.py: neuralforecast's LSTM fitted and used once, in this process.

    .peers/nf/bin/python benchmarks/peers/neuralforecast_lstm.py --data air.csv --out peer.json

Run by forecast_speed.py in a fresh process per repeat, with the interpreter of the peer's own venv
(scripts/peer_venv.sh), so it imports nothing from rnnzoo. It times, in this order: the import of neuralforecast
with the model class and loss (the first thing the process does, so torch, pandas and lightning load inside it),
``NeuralForecast.fit`` on all but the last h values, and ``predict`` of the next h. The MAE of that forecast on
the held-out values is a sanity check that training did happen, not an accuracy result (one seed, one window).
Lightning runs on the CPU with logging, checkpoints, progress bars and the model summary off (trainer options
go through the model constructor in neuralforecast).
"""
import time

t0 = time.perf_counter()
import neuralforecast  # noqa: E402
from neuralforecast import NeuralForecast  # noqa: E402
from neuralforecast.losses.pytorch import MSE  # noqa: E402
from neuralforecast.models import LSTM  # noqa: E402

IMPORT_S = time.perf_counter() - t0

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--data", required=True, help="csv with unique_id, ds, y (one series)")
    ap.add_argument("--out", required=True, help="where to write the timings (JSON)")
    ap.add_argument("--freq", default="ME")
    ap.add_argument("--h", type=int, default=12)
    ap.add_argument("--input-size", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--decoder-hidden", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--windows-batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # the "GPU available: False" banners
    warnings.filterwarnings("ignore")  # lightning's advice on dataloader workers and the like

    df = pd.read_csv(args.data, parse_dates=["ds"])
    train, test = df.iloc[:-args.h], df.iloc[-args.h:]
    model = LSTM(h=args.h, input_size=args.input_size, encoder_n_layers=1, encoder_hidden_size=args.hidden,
                 decoder_hidden_size=args.decoder_hidden, decoder_layers=2, loss=MSE(), max_steps=args.steps,
                 learning_rate=args.lr, windows_batch_size=args.windows_batch, scaler_type="standard",
                 random_seed=args.seed, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False)
    nf = NeuralForecast(models=[model], freq=args.freq)
    t1 = time.perf_counter()
    nf.fit(df=train)
    t2 = time.perf_counter()
    fc = nf.predict()
    t3 = time.perf_counter()
    mae = float(np.mean(np.abs(fc["LSTM"].to_numpy() - test["y"].to_numpy())))
    out = {"package": "neuralforecast", "version": neuralforecast.__version__, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "import_s": IMPORT_S, "fit_s": t2 - t1, "predict_s": t3 - t2,
           "holdout_mae": mae}
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
