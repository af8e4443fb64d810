"""Speed of Mamba's selective scan and Mamba-2's SSD, the ops and the whole layers, against their reference loops.

    .venv/bin/python benchmarks/ssm_speed.py            # B=4, T=2048, d_model=256 (d_inner 512), 2 threads
    .venv/bin/python benchmarks/ssm_speed.py --quick    # tiny sizes, 1 thread, seconds

Forward+backward of each fast form (``mode="chunk"``) and of its reference loop (``mode="recurrent"``), timed
interleaved so that a slow phase of the machine hits both alike, with the fast form's GFLOP/s against a
2048x2048 torch.matmul measured in the same run. One more row times Mamba's scan written the time-parallel way
(every state materialised, rnnzoo.ops.scan's chunked doubling scan), the design the fast form chose not to use.
Writes benchmarks/results/ssm_speed[_quick].json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, time_interleaved, write_results  # noqa: E402
from ops_speed import matmul_rate  # noqa: E402

from rnnzoo.mixers import build_mixer  # noqa: E402
from rnnzoo.ops.scan import scan  # noqa: E402
from rnnzoo.ops.ssm import selective_scan, ssd  # noqa: E402

SIZES = {"full": dict(B=4, T=2048, d_model=256, N1=16, N2=64, P=64, repeats=3, threads=2, matmul_n=2048),
         "quick": dict(B=2, T=128, d_model=32, N1=4, N2=8, P=16, repeats=2, threads=1, matmul_n=256)}


def selective_materialised(u, delta, A, B, C):
    """The time-parallel form: every (B, T, D, N) transition and state written out, one parallel scan."""
    delta = F.softplus(delta)
    a = torch.exp(delta.unsqueeze(-1) * A)  # (B, T, D, N)
    b = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (B, T, D, N)
    h, h_T = scan(a.flatten(2), b.flatten(2), mode="chunk")  # (B, T, D*N)
    return (h.unflatten(2, a.shape[2:]) * C.unsqueeze(2)).sum(-1), h_T


def step_of(fn: Callable, leaves: list[torch.Tensor]) -> Callable[[], None]:
    def run():
        for t in leaves:
            t.grad = None
        y = fn()[0]
        y.pow(2).mean().backward()
    return run


def op_cases(B, T, d_model, N1, N2, P):
    """(label, {form: training step}, forward FLOPs of the fast form)."""
    gen = torch.Generator().manual_seed(0)
    D = 2 * d_model

    def leaf(*shape, scale=1.0, shift=0.0):
        return (scale * torch.randn(*shape, generator=gen) + shift).requires_grad_()

    u, delta, Bm, Cm = leaf(B, T, D), leaf(B, T, D, shift=-4.0), leaf(B, T, N1), leaf(B, T, N1)
    A = (-torch.arange(1, N1 + 1.0).repeat(D, 1)).requires_grad_()  # Mamba's S4D-real initialisation
    sel = [u, delta, A, Bm, Cm]
    # per (b, t, d, n): delta A, exp (1 each), delta u B (1), the state update (2), the readout (2)
    sel_flops = 7 * B * T * D * N1
    H = D // P
    x, dt_raw, B2, C2 = leaf(B, T, H, P), leaf(B, T, H, shift=-4.0), leaf(B, T, 1, N2), leaf(B, T, 1, N2)
    A2 = (-torch.linspace(1, 16, H)).requires_grad_()
    ssd_leaves = [x, dt_raw, A2, B2, C2]
    C = 64
    # the chunked linear-attention count: C B^T and its product with x inside a chunk, B^T x and C h across
    ssd_flops = B * T * H * (2 * C * (N2 + P) + 4 * N2 * P)
    return [
        ("selective_scan", {
            "chunk": step_of(lambda: selective_scan(u, delta, A, Bm, Cm, delta_softplus=True, mode="chunk"), sel),
            "recurrent": step_of(lambda: selective_scan(u, delta, A, Bm, Cm, delta_softplus=True,
                                                        mode="recurrent"), sel),
            "materialised scan": step_of(lambda: selective_materialised(u, delta, A, Bm, Cm), sel)}, sel_flops,
         f"D={D}, N={N1}"),
        ("ssd", {
            "chunk": step_of(lambda: ssd(x, F.softplus(dt_raw), A2, B2, C2, mode="chunk"), ssd_leaves),
            "recurrent": step_of(lambda: ssd(x, F.softplus(dt_raw), A2, B2, C2, mode="recurrent"), ssd_leaves)},
         ssd_flops, f"H={H}, P={P}, N={N2}, C={C}"),
    ]


def layer_cases(B, T, d_model, N1, N2, P):
    x = torch.randn(B, T, d_model, generator=torch.Generator().manual_seed(1))
    cases = []
    for name, options in (("mamba", {"d_state": N1}), ("mamba2", {"d_state": N2, "head_dim": P})):
        forms = {}
        for mode in ("chunk", "recurrent"):
            torch.manual_seed(0)
            layer = build_mixer(name, d_model, mode=mode, **options)
            forms[mode] = step_of(lambda layer=layer: layer(x), list(layer.parameters()))
        cases.append((f"{name} layer", forms, None, ", ".join(f"{k}={v}" for k, v in options.items())))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes on one thread")
    args = ap.parse_args()
    cfg = SIZES["quick" if args.quick else "full"]
    torch.set_num_threads(cfg["threads"])
    mm = matmul_rate(cfg["matmul_n"])
    sizes = {k: cfg[k] for k in ("B", "T", "d_model", "N1", "N2", "P")}
    rows = []
    for label, forms, flops, shape in op_cases(**sizes) + layer_cases(**sizes):
        t = time_interleaved(forms, repeats=cfg["repeats"])
        fast = t["chunk"]["median_s"]
        row = {"case": label, "shape": shape, "times": t,
               "speedup": {form: t[form]["median_s"] / fast for form in t if form != "chunk"},
               "flops_fwd_bwd": None if flops is None else 3 * flops,
               "gflops": None if flops is None else 3 * flops / fast / 1e9}
        rows.append(row)
        print(f"{label}: " + ", ".join(f"{form} {v['median_s']:.3f}s" for form, v in t.items()), flush=True)

    def spread(v):
        return f"{v['median_s']:.3f} ({v['min_s']:.3f}-{v['max_s']:.3f})"

    print(f"\nB={cfg['B']}, T={cfg['T']}, d_model={cfg['d_model']}, {cfg['threads']} threads; forward+backward, "
          f"median (min-max) of {cfg['repeats']}; torch.matmul {cfg['matmul_n']}^2: {mm['gflops']:.1f} GFLOP/s\n")
    print(markdown_table(
        ["case", "shape", "chunk (s)", "recurrent (s)", "speed-up", "materialised scan (s)", "GFLOP/s",
         "of matmul"],
        [[r["case"], r["shape"], spread(r["times"]["chunk"]), spread(r["times"]["recurrent"]),
          f"{r['speedup']['recurrent']:.1f}x",
          spread(r["times"]["materialised scan"]) if "materialised scan" in r["times"] else "",
          "" if r["gflops"] is None else f"{r['gflops']:.2f}",
          "" if r["gflops"] is None else f"{r['gflops'] / mm['gflops']:.1%}"] for r in rows]))
    path = write_results("ssm_speed" + ("_quick" if args.quick else ""), {"config": cfg, "matmul": mm, "rows": rows})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
