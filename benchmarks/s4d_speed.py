"""S4D's two forms of the same op: the FFT convolution (how S4D trains) against the recurrent loop (how it
generates), forward and forward+backward, on the parameters of a freshly initialised S4D layer.

    .venv/bin/python benchmarks/s4d_speed.py                  # B=4, T=4096, d_model=256, N=64
    .venv/bin/python benchmarks/s4d_speed.py --quick          # tiny sizes on 1 thread, a smoke run
    .venv/bin/python benchmarks/s4d_speed.py --device cuda

Writes benchmarks/results/s4d_speed[_quick].json and prints a markdown table. Each time is the median of the
repeats with the spread (min-max); the two forms alternate within each repeat, so their ratio is fair.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_size_options, markdown_table, set_threads, time_interleaved, write_results  # noqa: E402

from rnnzoo.mixers import build_mixer  # noqa: E402
from rnnzoo.ops.ssm import s4d  # noqa: E402

SIZES = {"full": {"B": 4, "T": 4096, "d_model": 256, "d_state": 64, "repeats": 3},
         "quick": {"B": 2, "T": 256, "d_model": 32, "d_state": 16, "repeats": 2}}
FORMS = ("conv", "recurrent")


def make_inputs(cfg: dict, device: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """u (B, T, H) and the op's (A, B, C, log_dt, D) from an S4D-Lin layer, as leaves that require grad."""
    torch.manual_seed(0)
    mixer = build_mixer("s4d", cfg["d_model"], d_state=cfg["d_state"])
    params = [p.detach().to(device).requires_grad_() for p in mixer.ssm(torch.float32)]
    u = torch.randn(cfg["B"], cfg["T"], cfg["d_model"], device=device).requires_grad_()
    return u, params


def timed(fn: Callable[[], object], device: str) -> Callable[[], object]:
    def run():
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out
    return run


def passes(u: torch.Tensor, params: list[torch.Tensor], form: str) -> dict[str, Callable[[], object]]:
    def forward():
        with torch.no_grad():
            return s4d(u, *params, mode=form)

    def forward_backward():
        y, state = s4d(u, *params, mode=form)
        torch.autograd.grad(y.square().mean() + state.square().mean(), [u, *params])

    return {"forward": forward, "forward+backward": forward_backward}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_options(ap)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    set_threads(args)
    cfg = SIZES["quick" if args.quick else "full"]
    u, params = make_inputs(cfg, args.device)
    with torch.no_grad():
        y = {form: s4d(u, *params, mode=form)[0] for form in FORMS}
    gap = ((y["conv"] - y["recurrent"]).abs().max() / y["recurrent"].abs().max()).item()
    rows = []
    for name in ("forward", "forward+backward"):
        fns = {form: timed(passes(u, params, form)[name], args.device) for form in FORMS}
        times = time_interleaved(fns, repeats=cfg["repeats"])
        for form in FORMS:
            rows.append({"pass": name, "form": form, **times[form],
                         "tokens_per_s": cfg["B"] * cfg["T"] / times[form]["median_s"],
                         "speedup_vs_recurrent": times["recurrent"]["median_s"] / times[form]["median_s"]})
    path = write_results("s4d_speed" + ("_quick" if args.quick else ""),
                         {"config": {**cfg, "device": args.device, "dtype": "float32"}, "rows": rows,
                          "max_rel_gap_conv_vs_recurrent": gap})
    print(f"S4D op, conv vs recurrent, B={cfg['B']} T={cfg['T']} H={cfg['d_model']} N={cfg['d_state']}, float32 "
          f"on {args.device} (median of {cfg['repeats']}; spread min-max)\n")
    print(markdown_table(
        ["pass", "form", "time (s)", "spread (s)", "tokens/s", "speed-up vs recurrent"],
        [[r["pass"], r["form"], f"{r['median_s']:.4f}", f"{r['min_s']:.4f}-{r['max_s']:.4f}",
          f"{r['tokens_per_s']:,.0f}", f"{r['speedup_vs_recurrent']:.1f}x"] for r in rows]))
    print(f"\nmax |y_conv - y_recurrent| / max |y_recurrent| = {gap:.2e}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
