"""Closed-form training of an echo state network, and the LMU's FFT convolution against its loop.

    .venv/bin/python benchmarks/esn_fit.py            # N in {200, 500, 1000}, 3 repeats
    .venv/bin/python benchmarks/esn_fit.py --quick    # N in {200, 500}, 1 repeat, smaller LMU

ESN: ``fit_readout`` on 10^5 steps of one-step-ahead prediction of a sum of sines (B = 1, d_model = 1), total
wall and CPU time (the two differ on a shared machine), and the wall time of the reservoir run alone (the rest
is the float64 normal equations, the solve and the NRMSE pass).
LMU: forward + backward of the memory op alone and of the whole mixer, mode 'conv' against 'recurrent', at
T in {1024, 4096}.
Writes benchmarks/results/esn_lmu.json (esn_lmu_quick.json with --quick) and prints markdown tables.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, time_interleaved, time_it, write_results  # noqa: E402

import rnnzoo  # noqa: E402
from rnnzoo.ops.lmu import lmu_memory  # noqa: E402
from rnnzoo.ops.reservoir import esn  # noqa: E402

STEPS = 100_000


def esn_rows(sizes: list[int], repeats: int) -> list[dict]:
    t = torch.arange(STEPS + 1, dtype=torch.float32)
    s = torch.sin(0.21 * t) + 0.5 * torch.sin(0.047 * t + 1.0)
    x, y = s[:-1].reshape(1, STEPS, 1), s[1:].reshape(1, STEPS, 1)
    rows = []
    for N in sizes:
        mixer = rnnzoo.build_mixer("esn", 1, n_reservoir=N, seed=0)
        result, cpu = {}, []

        def fit():
            t0 = time.process_time()
            result["nrmse"] = mixer.fit_readout(x, y, ridge=1e-8, washout=100)
            cpu.append(time.process_time() - t0)

        def reservoir():
            esn(x @ mixer.W_in.T + mixer.b, mixer.W, mixer.leak)

        fit_t = time_it(fit, repeats=repeats, warmup=0)
        res_t = time_it(reservoir, repeats=repeats, warmup=0)
        rows.append({"N": N, "steps": STEPS, "fit": fit_t, "fit_cpu_s": statistics.median(cpu), "reservoir": res_t,
                     "nrmse": result["nrmse"]})
    return rows


def lmu_rows(B: int, d: int, lengths: list[int], repeats: int) -> list[dict]:
    """Forward + backward of the memory op alone (u (B, T, H) -> m) and of the whole mixer, conv vs recurrent."""
    rows = []
    for T in lengths:
        torch.manual_seed(0)
        x = torch.randn(B, T, d)
        mixers = {mode: rnnzoo.build_mixer("lmu", d, mode=mode) for mode in ("conv", "recurrent")}
        mixers["recurrent"].load_state_dict(mixers["conv"].state_dict())
        m = mixers["conv"]
        u = torch.randn(B, T, m.n_channels, requires_grad=True)

        def memory_step(mode):
            def run():
                u.grad = None
                lmu_memory(u, m.A_bar, m.B_bar, mode=mode)[0].pow(2).mean().backward()
            return run

        def mixer_step(mixer):
            def run():
                mixer.zero_grad(set_to_none=True)
                mixer(x)[0].pow(2).mean().backward()
            return run

        for what, fns in (("memory op", {mode: memory_step(mode) for mode in mixers}),
                          ("mixer", {mode: mixer_step(mixer) for mode, mixer in mixers.items()})):
            times = time_interleaved(fns, repeats=repeats)
            rows.append({"what": what, "B": B, "T": T, "d_model": d, "n_channels": m.n_channels,
                         "memory_size": m.memory_size, **times,
                         "speedup": times["recurrent"]["median_s"] / times["conv"]["median_s"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes, repeats = ([200, 500], 1) if args.quick else ([200, 500, 1000], 3)
    B, d, lmu_repeats = (4, 64, 3) if args.quick else (8, 128, 5)
    esn = esn_rows(sizes, repeats)
    lmu = lmu_rows(B, d, [1024, 4096], lmu_repeats)
    config = {"esn_steps": STEPS, "esn_sizes": sizes, "esn_repeats": repeats, "lmu_B": B, "lmu_d_model": d,
              "lmu_repeats": lmu_repeats}
    path = write_results("esn_lmu" + ("_quick" if args.quick else ""), {"config": config, "esn_fit": esn, "lmu": lmu})
    print(f"ESN fit_readout on {STEPS:,} steps, B=1, d_model=1 (median of {repeats}; torch threads: "
          f"{torch.get_num_threads()})\n")
    print(markdown_table(
        ["N", "fit_readout (s)", "spread (s)", "CPU time (s)", "of which reservoir (s)", "train NRMSE"],
        [[r["N"], f"{r['fit']['median_s']:.2f}", f"{r['fit']['min_s']:.2f}-{r['fit']['max_s']:.2f}",
          f"{r['fit_cpu_s']:.2f}",
          f"{r['reservoir']['median_s']:.2f}", f"{r['nrmse']:.2e}"] for r in esn]))
    print(f"\nLMU forward+backward, B={B}, d_model={d}, mode conv (FFT) vs recurrent (loop) (median of "
          f"{lmu_repeats})\n")
    print(markdown_table(
        ["T", "timed", "H x q", "conv (s)", "recurrent (s)", "recurrent / conv"],
        [[r["T"], r["what"], f"{r['n_channels']} x {r['memory_size']}", f"{r['conv']['median_s']:.3f}",
          f"{r['recurrent']['median_s']:.3f}", f"{r['speedup']:.1f}"] for r in lmu]))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
