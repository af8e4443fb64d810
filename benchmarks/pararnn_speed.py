"""ParaGRU solved by Newton's method over the sequence against its own sequential loop (the same weights), with
torch.nn.GRU (dense recurrence, oneDNN kernel) of the same width for orientation.

    .venv/bin/python benchmarks/pararnn_speed.py                # T in {1024, 4096, 16384}
    .venv/bin/python benchmarks/pararnn_speed.py --quick        # T in {256, 1024}, for a smoke run
    .venv/bin/python benchmarks/pararnn_speed.py --threads 1    # pin torch's thread count

Two sizes: B=8, H=256 (the issue's), and B=1, H=64, where one step of the loop is so small that the loop's cost
is all per-operation overhead. Both directions are timed: forward only (no autograd) and forward+backward.
Also reported: Newton's iterations and last step, the residual max |h_t - f(h_{t-1}, x_t)| of its solution and
its largest difference from the loop's. Writes benchmarks/results/pararnn_speed.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, time_interleaved, write_results  # noqa: E402

from rnnzoo.mixers.pararnn import ParaGRU  # noqa: E402
from rnnzoo.ops.pararnn.naive import gru_cell  # noqa: E402

SIZES = [(8, 256), (1, 64)]  # (B, H)


def forward_only(module: nn.Module, x: torch.Tensor):
    def run():
        with torch.no_grad():
            module(x)
    return run


def forward_backward(module: nn.Module, x: torch.Tensor):
    def run():
        module.zero_grad(set_to_none=True)
        module(x)[0].pow(2).mean().backward()
    return run


@torch.no_grad()
def accuracy(newton: ParaGRU, sequential: ParaGRU, x: torch.Tensor) -> dict:
    """Newton's diagnostics on x, its residual as a solution of the recurrence and its distance to the loop."""
    h, _ = newton(x)
    info = newton.last_info
    xz, xr, xc = newton.in_proj(x).chunk(3, dim=-1)  # (B, T, H) each
    prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)  # (B, T, H)
    residual = (h - gru_cell(prev, xz, xr, xc, *newton.u)).abs().max().item()
    return {"iterations": info.iterations, "last_step": info.step, "converged": info.converged,
            "residual": residual, "max_diff_vs_loop": (h - sequential(x)[0]).abs().max().item()}


def bench(B: int, H: int, T: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    newton = ParaGRU(H, mode="newton")
    sequential = ParaGRU(H, mode="sequential")
    sequential.load_state_dict(newton.state_dict())
    peer = nn.GRU(H, H, batch_first=True)
    x = torch.randn(B, T, H)
    acc = accuracy(newton, sequential, x)
    rows = []
    for direction, make in (("forward", forward_only), ("forward+backward", forward_backward)):
        t = time_interleaved({"loop": make(sequential, x), "newton": make(newton, x), "torch": make(peer, x)},
                             repeats)
        rows.append({"B": B, "H": H, "T": T, "direction": direction, "loop": t["loop"], "newton": t["newton"],
                     "torch_gru": t["torch"], "speedup": t["loop"]["median_s"] / t["newton"]["median_s"], **acc})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lengths, repeats = ((256, 1024), 2) if args.quick else ((1024, 4096, 16384), 3)
    rows = [row for B, H in SIZES for T in lengths for row in bench(B, H, T, repeats)]
    path = write_results("pararnn_speed" + ("_quick" if args.quick else ""),
                         {"config": {"sizes": SIZES, "T": list(lengths), "repeats": repeats}, "rows": rows})
    print(f"ParaGRU: Newton-parallel vs its sequential loop, seconds per call (median of {repeats}), "
          f"{torch.get_num_threads()} thread(s); torch.nn.GRU of the same width for orientation\n")
    print(markdown_table(
        ["B", "H", "T", "pass", "loop (s)", "newton (s)", "speedup", "nn.GRU (s)", "iters", "last step",
         "residual", "max diff"],
        [[r["B"], r["H"], r["T"], r["direction"], f"{r['loop']['median_s']:.3f}", f"{r['newton']['median_s']:.3f}",
          f"{r['speedup']:.2f}x", f"{r['torch_gru']['median_s']:.3f}",
          r["iterations"] if r["converged"] else f"{r['iterations']} (fell back)", f"{r['last_step']:.1e}",
          f"{r['residual']:.1e}", f"{r['max_diff_vs_loop']:.1e}"] for r in rows]))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
