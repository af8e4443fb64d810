"""Training throughput of the classic mixers' fast paths against torch.nn used directly, and of the reference
loops; generation latency per character.

    .venv/bin/python benchmarks/classic_speed.py            # B=16, T=1024, d=256, as in ../shared/BENCHMARKS.md
    .venv/bin/python benchmarks/classic_speed.py --quick    # smaller, for a smoke run

Writes benchmarks/results/classic_speed.json and prints markdown tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, time_interleaved, time_it, write_results  # noqa: E402

import rnnzoo  # noqa: E402
from rnnzoo.convert import from_torch  # noqa: E402
from rnnzoo.models import LanguageModel  # noqa: E402

TORCH_PEERS = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def train_step(module: nn.Module, x: torch.Tensor):
    def run():
        module.zero_grad(set_to_none=True)
        y = module(x)[0]
        y.float().pow(2).mean().backward()
    return run


def throughput_rows(B: int, T: int, d: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(B, T, d)
    rows = []
    for name in ("elman", "lstm", "gru", "jordan", "indrnn"):
        if name in TORCH_PEERS:
            peer = TORCH_PEERS[name](d, d, batch_first=True)
            fused = from_torch(peer).layers[0]
            reference = from_torch(peer).layers[0]
            reference.mode = "reference"
            # the peer and the fused path alternate within each repeat, so their ratio is fair
            pair = time_interleaved({"peer": train_step(peer, x), "fused": train_step(fused, x)}, repeats)
            rows.append({"mixer": name, "impl": f"torch.nn.{TORCH_PEERS[name].__name__}", **pair["peer"]})
            rows.append({"mixer": name, "impl": "rnnzoo fused", **pair["fused"],
                         "ratio_vs_torch": pair["peer"]["median_s"] / pair["fused"]["median_s"]})
            rows.append({"mixer": name, "impl": "rnnzoo reference",
                         **time_it(train_step(reference, x), repeats=max(1, repeats // 2))})
            rows[-1]["ratio_vs_torch"] = pair["peer"]["median_s"] / rows[-1]["median_s"]
        else:
            mixer = rnnzoo.build_mixer(name, d, mode="reference")
            rows.append({"mixer": name, "impl": "rnnzoo reference",
                         **time_it(train_step(mixer, x), repeats=max(1, repeats // 2))})
    for r in rows:
        r["tokens_per_s"] = B * T / r["median_s"]
    return rows


@torch.no_grad()
def generation_rows(d: int, n_layers: int, steps: int) -> list[dict]:
    rows = []
    for name in ("elman", "lstm", "gru", "jordan", "indrnn"):
        torch.manual_seed(0)
        model = LanguageModel(65, mixer=name, d_model=d, n_layers=n_layers).eval()
        token = torch.zeros(1, dtype=torch.long)

        def run():
            state = None
            tok = token
            for _ in range(steps):
                logits, state = model.step(tok, state)
                tok = logits.argmax(-1)
        t = time_it(run, repeats=3)
        rows.append({"mixer": name, "d_model": d, "n_layers": n_layers, "params": model.num_parameters(),
                     "ms_per_char": 1e3 * t["median_s"] / steps, "spread_ms": [1e3 * t["min_s"] / steps,
                                                                              1e3 * t["max_s"] / steps]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    B, T, d, repeats = (4, 128, 64, 3) if args.quick else (16, 1024, 256, 5)
    thr = throughput_rows(B, T, d, repeats)
    gen = generation_rows(d, 2, 100 if args.quick else 500)
    path = write_results("classic_speed" + ("_quick" if args.quick else ""),
                         {"config": {"B": B, "T": T, "d_model": d, "repeats": repeats}, "throughput": thr,
                          "generation": gen})
    print(f"Training throughput, forward+backward, B={B} T={T} d={d} (median of {repeats}; spread min-max)\n")
    print(markdown_table(
        ["mixer", "implementation", "tokens/s", "time (s)", "spread (s)", "vs torch.nn"],
        [[r["mixer"], r["impl"], f"{r['tokens_per_s']:,.0f}", f"{r['median_s']:.3f}",
          f"{r['min_s']:.3f}-{r['max_s']:.3f}", f"{r['ratio_vs_torch']:.2f}" if "ratio_vs_torch" in r else ""]
         for r in thr]))
    print(f"\nGeneration latency per character (B=1, LanguageModel d={d}, 2 layers, step())\n")
    print(markdown_table(["mixer", "params", "ms/char", "spread (ms)"],
                         [[r["mixer"], f"{r['params']:,}", f"{r['ms_per_char']:.3f}",
                           f"{r['spread_ms'][0]:.3f}-{r['spread_ms'][1]:.3f}"] for r in gen]))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
