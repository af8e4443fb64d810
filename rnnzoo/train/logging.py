"""What a run leaves behind: metrics.csv, TensorBoard events (when installed), learning-curve plots, and a
progress bar while it runs."""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from tqdm import tqdm

COLUMNS = ("step", "train_loss", "val_loss", "val_bpc", "lr", "grad_norm", "tokens_per_s")


class MetricsLog:
    """One CSV row per logged step in ``out_dir/metrics.csv``; losses in nats/char, ``val_bpc`` in bits/char.

    A resumed run passes the rows saved in its checkpoint as ``rows``: the file is rewritten from them, so it
    never keeps rows from after the checkpoint the run continues from.
    """

    def __init__(self, out_dir: str | Path, rows: list[dict] | None = None, tensorboard: bool = True):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "metrics.csv"
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
        self._csv.writeheader()
        self._csv.writerows(rows or [])
        self._file.flush()
        self._tb = tensorboard_writer(out_dir) if tensorboard else None

    def log(self, row: dict) -> None:
        self._csv.writerow(row)
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and value is not None:
                    self._tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def tensorboard_writer(out_dir: Path):
    """A SummaryWriter when the tensorboard package is installed (it is optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def plot_curves(runs: dict[str, list[dict]], path: str | Path, title: str = "",
                reference_bpc: float | None = None) -> Path:
    """Train (thin) and validation (dots) loss in bits/char against step, one colour per run, as a PNG.

    ``reference_bpc`` draws a dashed line, e.g. the unigram entropy a model that ignores context reaches.
    Uses matplotlib's Agg canvas directly, so no display and no global backend switch is needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, rows) in enumerate(runs.items()):
        for key, style in (("train_loss", dict(lw=1, alpha=0.45)), ("val_loss", dict(lw=2, marker="o", ms=4))):
            points = [(r["step"], r[key] / math.log(2)) for r in rows if r.get(key) is not None]
            if points:
                steps, bpc = zip(*points)
                ax.plot(steps, bpc, color=f"C{i}", label=f"{label} {key.split('_')[0]}", **style)
    if reference_bpc is not None:
        ax.axhline(reference_bpc, color="gray", ls="--", lw=1, label="unigram entropy")
    # A diverging step (a spike of 1e16) would flatten every curve: clip the axis to the validation points
    # and each run's first training point, which bound the interesting range.
    sane = [r[k] / math.log(2) for rows in runs.values() for i, r in enumerate(rows)
            for k in ("val_loss", "train_loss") if r.get(k) is not None and (k == "val_loss" or i == 0)]
    if sane:
        ax.set_ylim(min(min(sane), reference_bpc or math.inf) * 0.95, max(sane) * 1.05)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (bits / char)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    """A tqdm bar on stderr; silent (every method a no-op) when disabled or stderr is not a terminal."""
    show = enabled and sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not show, dynamic_ncols=True,
                leave=False)
