"""Speed of the parallel-trainable ops and mixers (project issue 3), in three parts:

    ops     each op's chunk form against its own reference loop, forward+backward, with the chunk form's
            achieved GFLOP/s against a large torch.matmul measured in the same run
    min     minGRU / minLSTM: parallel mode against their sequential mode and against torch.nn.GRU / LSTM
    stream  every registered mixer: step() latency and state size after prefixes of growing length

    .venv/bin/python benchmarks/ops_speed.py                 # full sizes, sized for ~20 min on 2 cores
    .venv/bin/python benchmarks/ops_speed.py --only ops      # one part: ops, min or stream
    .venv/bin/python benchmarks/ops_speed.py --quick         # tiny sizes on 1 thread, under a minute
    .venv/bin/python benchmarks/ops_speed.py --only stream --mixers transformer titans --tag memory

Writes benchmarks/results/ops_speed[_quick][_PART][_TAG].json and prints the markdown tables. Every time is the median
of the repeats with the spread (min-max); peers are measured in the same run and reported as ratios.
"""
from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_size_options, markdown_table, set_threads, time_interleaved, time_it,  # noqa: E402
                    write_results)

from rnnzoo.errors import RnnzooError  # noqa: E402
from rnnzoo.mixers import available_mixers, build_mixer, flatten_state  # noqa: E402
from rnnzoo.ops.delta import delta_product, delta_rule, gated_delta_rule  # noqa: E402
from rnnzoo.ops.linear_attention import gla, linear_attention, simple_gla  # noqa: E402
from rnnzoo.ops.linear_attention.chunk import sub_chunk_size  # noqa: E402
from rnnzoo.ops.mlstm import mlstm  # noqa: E402
from rnnzoo.ops.rwkv import rwkv6, rwkv7  # noqa: E402
from rnnzoo.ops.scan import scan, scan_log_space  # noqa: E402

SIZES = {
    "full": {
        "ops": {"B": 4, "T": 2048, "H": 4, "K": 64, "V": 64, "n_h": 2, "repeats": 3, "ref_limit_s": 30.0,
                "matmul_n": 2048},
        "min": {"B": 16, "d": 256, "Ts": (256, 1024, 4096), "repeats": 3},
        "stream": {"d": 256, "prefixes": (256, 4096, 65536), "chunk": 4096, "cap": 16384, "cap_limit_s": 60.0,
                   "steps": 200, "repeats": 3},
    },
    "quick": {
        "ops": {"B": 2, "T": 256, "H": 2, "K": 32, "V": 32, "n_h": 2, "repeats": 3, "ref_limit_s": 0.3,
                "matmul_n": 512},
        "min": {"B": 4, "d": 32, "Ts": (64, 256), "repeats": 3},
        "stream": {"d": 64, "prefixes": (64, 256, 2048), "chunk": 256, "cap": 512, "cap_limit_s": 0.5,
                   "steps": 20, "repeats": 3},
    },
}

# (label, op, names of its tensor arguments in order); the inputs come from ``op_inputs``
OPS: list[tuple[str, Callable, tuple[str, ...]]] = [
    ("scan", scan, ("a", "b")),
    ("scan_log_space", scan_log_space, ("log_a", "log_b")),
    ("linear_attention", linear_attention, ("q", "k", "v")),
    ("simple_gla", simple_gla, ("q", "k", "v", "g")),
    ("gla", gla, ("q", "k", "v", "g")),
    ("gla, g = logsigmoid/16", gla, ("q", "k", "v", "g")),
    ("delta_rule", delta_rule, ("q", "k", "v", "beta")),
    ("gated_delta_rule", gated_delta_rule, ("q", "k", "v", "g", "beta")),
    ("delta_product", delta_product, ("q", "k", "v", "beta", "g")),
    ("rwkv6", rwkv6, ("r", "k", "v", "w", "u")),
    ("rwkv7", rwkv7, ("r", "w", "k", "v", "a", "b")),
    ("mlstm", mlstm, ("q", "k", "v", "i", "f")),
]

PEERS_ELSEWHERE = ("Measured elsewhere, not in this run (../shared/BENCHMARKS.md, same sizes, 2 cores): "
                   "flash-linear-attention 0.6.0 pure-torch chunked simple-GLA 0.224 s and recurrent GLA 10.1 s; "
                   "mlstm-kernels 2.0.6 native chunkwise mLSTM 0.208 s; torch.matmul 2048 x 2048 103 GFLOP/s.")


def log_decay(*shape: int) -> torch.Tensor:
    """-exp(N(-0.5, 1)): per-channel log-decays as RWKV-6 forms them (-exp of a learnt value), mean -1."""
    return -torch.exp(torch.randn(*shape) - 0.5)


def op_inputs(label: str, B: int, T: int, H: int, K: int, V: int, n_h: int) -> dict[str, torch.Tensor]:
    """Random inputs of one op shaped and scaled as the mixers feed it, every tensor a leaf that needs grad."""
    torch.manual_seed(0)
    n = torch.randn
    if label == "scan":
        # a GRU-like update: h_t = (1 - z_t) h_{t-1} + b_t
        x = {"a": torch.sigmoid(n(B, T, H * K)), "b": n(B, T, H * K)}
    elif label == "scan_log_space":
        # minGRU's log(1 - z) and log(z h~), with h~ = sigmoid(.) on the negative branch of g
        z = n(B, T, H * K)
        x = {"log_a": F.logsigmoid(-z), "log_b": F.logsigmoid(z) + F.logsigmoid(n(B, T, H * K))}
    elif label == "linear_attention":
        # the mixer's default feature map elu + 1 makes q and k positive
        x = {"q": F.elu(n(B, T, H, K)) + 1, "k": F.elu(n(B, T, H, K)) + 1, "v": n(B, T, H, V)}
    elif label == "simple_gla":
        x = {"q": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V), "g": F.logsigmoid(n(B, T, H))}
    elif label == "gla":
        x = {"q": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V), "g": log_decay(B, T, H, K)}
    elif label == "gla, g = logsigmoid/16":
        # the GLA mixer's own gate, log alpha = logsigmoid(.) / 16: weak decay
        x = {"q": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V), "g": F.logsigmoid(n(B, T, H, K)) / 16}
    elif label in ("delta_rule", "gated_delta_rule"):
        x = {"q": F.normalize(n(B, T, H, K), dim=-1), "k": F.normalize(n(B, T, H, K), dim=-1), "v": n(B, T, H, V),
             "beta": torch.sigmoid(n(B, T, H)), "g": F.logsigmoid(n(B, T, H))}
    elif label == "delta_product":
        x = {"q": F.normalize(n(B, T, H, K), dim=-1), "k": F.normalize(n(B, T, n_h, H, K), dim=-1),
             "v": n(B, T, n_h, H, V), "beta": torch.sigmoid(n(B, T, n_h, H)), "g": F.logsigmoid(n(B, T, H))}
    elif label == "rwkv6":
        x = {"r": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V), "w": log_decay(B, T, H, K),
             "u": n(H, K)}
    elif label == "rwkv7":
        # a = -kappa_hat, b = kappa_hat * lr: the transition is diag(exp(w)) - lr kappa_hat kappa_hat^T
        kappa, lr = F.normalize(n(B, T, H, K), dim=-1), torch.sigmoid(n(B, T, H, K))
        x = {"r": n(B, T, H, K), "w": log_decay(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V),
             "a": -kappa, "b": kappa * lr}
    elif label == "mlstm":
        # gate pre-activations ~ N(0, 1), the forget gate with xLSTM's positive bias
        x = {"q": n(B, T, H, K), "k": n(B, T, H, K), "v": n(B, T, H, V), "i": n(B, T, H), "f": n(B, T, H) + 3}
    else:
        raise KeyError(label)
    return {name: t.detach().requires_grad_() for name, t in x.items()}


def gla_sub_chunked(g: torch.Tensor, C: int) -> bool:
    """Whether ``gla`` builds its scores by sub-chunks (some chunk decays by more than log(float max) / 3)
    rather than in one matmul: the test chunk_gla makes, repeated here only to label the row and count FLOPs."""
    B, T, H, K = g.shape
    chunk_sums = F.pad(g.detach(), (0, 0, 0, 0, 0, -T % C)).reshape(B, -1, C, H, K).sum(2)  # (B, n, H, K)
    return bool(-chunk_sums.min() > math.log(torch.finfo(g.dtype).max) / 3)


def chunk_flops(label: str, B: int, T: int, H: int, K: int, V: int, C: int, n_h: int,
                sub_chunked: bool) -> float | None:
    """FLOPs of one forward pass of the chunk form, from the matmuls and sum-of-product reductions the code
    issues (masked upper triangles included, 2 FLOPs per multiply-add); exp, masks, gates and cumsums are not
    counted. Per token and head, with chunk C, sub-chunk c = sub_chunk_size(C) and nb = C / c sub-chunks:

        scan                  3 log2(C) + 2 per channel: log2(C) doublings (2 for B + A*shift(B), 1 for
                              A*shift(A)), then B + A*start; the scan of the T/C chunk ends (~1/C more) is left out
        linear_attention,     2C(K+V) + 4KV: QK^T and (QK^T)V inside a chunk, K^T V and Q S across chunks
        simple_gla
        mlstm                 2C(K+V) + 4KV + 4K + C (the normaliser's reads as well)
        gla                   2C(K+V) + 4KV, + 3cK when sub-chunked (the (c, c, K) product-sum of each sub-chunk)
        delta_rule,           C(5K+3V) + 6KV: KK^T, QK^T, the triangular solve for [U | W] (C^2 (V+K) per chunk),
        gated_delta_rule      then per chunk W S, Q S, A U and K^T U
        delta_product         n_h times the delta rule's count (a delta rule over n_h micro-steps per token)
        rwkv6                 2C(K+V) + 3cK + 2 nb^3 K / C + 4KV
        rwkv7                 C(11K+7V) + 12cK + 4 nb^3 K / C + 6KV + 2K^2 + 2K^2 V / C: four decayed-score
                              matrices, a solve of width V+K, three (C, C) products, the (K, K) chunk map

    The matmul terms agree with torch.utils.flop_counter.FlopCounterMode on these ops, which leaves out the
    triangular solves and the elementwise product-sums. scan_log_space returns None: logaddexp is transcendental
    work, and a FLOP count would be guesswork.
    Forward+backward is taken as 3x the forward (each product's backward is two products of its size).
    """
    c = sub_chunk_size(C)
    nb = C // c
    if label == "scan":
        return B * T * H * K * (3 * math.log2(C) + 2)
    if label == "scan_log_space":
        return None
    if label in ("linear_attention", "simple_gla"):
        per = 2 * C * (K + V) + 4 * K * V
    elif label.startswith("gla"):
        per = 2 * C * (K + V) + 4 * K * V + (3 * c * K if sub_chunked else 0)
    elif label == "mlstm":
        per = 2 * C * (K + V) + 4 * K * V + 4 * K + C
    elif label in ("delta_rule", "gated_delta_rule"):
        per = C * (5 * K + 3 * V) + 6 * K * V
    elif label == "delta_product":
        per = n_h * (C * (5 * K + 3 * V) + 6 * K * V)
    elif label == "rwkv6":
        per = 2 * C * (K + V) + 3 * c * K + 2 * nb ** 3 * K / C + 4 * K * V
    elif label == "rwkv7":
        per = C * (11 * K + 7 * V) + 12 * c * K + 4 * nb ** 3 * K / C + 6 * K * V + 2 * K * K + 2 * K * K * V / C
    else:
        raise KeyError(label)
    return B * T * H * per


def fwd_bwd(op: Callable, x: dict[str, torch.Tensor], names: tuple[str, ...], mode: str) -> Callable[[], None]:
    """One training step of the op alone: output, a scalar loss, backward to every input."""
    args = [x[name] for name in names]

    def run():
        for t in args:
            t.grad = None
        o = op(*args, mode=mode)[0]
        o.pow(2).mean().backward()
    return run


def matmul_rate(n: int) -> dict:
    """The measured rate of one large fp32 torch.matmul, the physical reference for the chunk forms."""
    torch.manual_seed(0)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_it(lambda: a @ b, repeats=5)
    return {"n": n, **t, "gflops": 2 * n ** 3 / t["median_s"] / 1e9}


def op_rows(B: int, T: int, H: int, K: int, V: int, n_h: int, repeats: int, ref_limit_s: float) -> list[dict]:
    """Chunk form (``repeats`` runs) and reference loop (one run) of every op. The loop is first timed at T / 4;
    when 4x that exceeds ``ref_limit_s``, the figure is that time scaled by 4 rather than a run at T."""
    rows = []
    for label, op, names in OPS:
        x = op_inputs(label, B, T, H, K, V, n_h)
        C = min(inspect.signature(op).parameters["chunk_size"].default, T)
        sub_chunked = label.startswith("gla") and gla_sub_chunked(x["g"], C)
        chunk = time_it(fwd_bwd(op, x, names, "chunk"), repeats=repeats)
        short = time_it(fwd_bwd(op, op_inputs(label, B, T // 4, H, K, V, n_h), names, "recurrent"),
                        repeats=1, warmup=0)
        if 4 * short["median_s"] > ref_limit_s:
            ref = {k: 4 * short[k] for k in ("median_s", "min_s", "max_s")} | {"repeats": 1, "timed_at_T": T // 4,
                                                                                "scaled": 4}
        else:
            ref = time_it(fwd_bwd(op, x, names, "recurrent"), repeats=1, warmup=0) | {"timed_at_T": T, "scaled": 1}
        fwd = chunk_flops(label, B, T, H, K, V, C, n_h, sub_chunked)
        rows.append({"op": label, "chunk_size": C, "sub_chunked": sub_chunked, "chunk": chunk, "reference": ref,
                     "speedup": ref["median_s"] / chunk["median_s"], "tokens_per_s": B * T / chunk["median_s"],
                     "flops_fwd_bwd": None if fwd is None else 3 * fwd,
                     "gflops": None if fwd is None else 3 * fwd / chunk["median_s"] / 1e9})
    return rows


def train_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run():
        module.zero_grad(set_to_none=True)
        y = module(x)[0]
        y.pow(2).mean().backward()
    return run


def step_loop(mixer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """The paper's sequential mode: one step() per token, projections included, then the backward."""
    def run():
        mixer.zero_grad(set_to_none=True)
        state, ys = None, []
        for x_t in x.unbind(1):
            y_t, state = mixer.step(x_t, state)
            ys.append(y_t)
        torch.stack(ys, dim=1).pow(2).mean().backward()
    return run


def min_rows(B: int, d: int, Ts: tuple[int, ...], repeats: int) -> list[dict]:
    """minGRU / minLSTM: the parallel modes vs the sequential mode (projections of the whole sequence at once,
    then the loop), the step loop (same weights) and the torch.nn peer, interleaved per repeat."""
    rows = []
    for name, peer_cls in (("mingru", nn.GRU), ("minlstm", nn.LSTM)):
        torch.manual_seed(0)
        mixers = {mode: build_mixer(name, d, mode=mode) for mode in ("parallel", "parallel_log", "sequential")}
        for mixer in mixers.values():
            mixer.load_state_dict(mixers["parallel"].state_dict())
        peer = peer_cls(d, d, batch_first=True)
        for T in Ts:
            x = torch.randn(B, T, d)
            t = time_interleaved({**{mode: train_step(m, x) for mode, m in mixers.items()},
                                  "step_loop": step_loop(mixers["sequential"], x), "torch": train_step(peer, x)},
                                 repeats)
            rows.append({"mixer": name, "peer": f"torch.nn.{peer_cls.__name__}", "B": B, "T": T, "d": d, **t,
                         "vs_sequential": t["sequential"]["median_s"] / t["parallel"]["median_s"],
                         "vs_step_loop": t["step_loop"]["median_s"] / t["parallel"]["median_s"],
                         "vs_peer": t["torch"]["median_s"] / t["parallel"]["median_s"],
                         "tokens_per_s": B * T / t["parallel"]["median_s"]})
    return rows


def state_bytes(state) -> int:
    return sum(t.numel() * t.element_size() for t in flatten_state(state))


@torch.no_grad()
def stream_rows(d: int, prefixes: tuple[int, ...], chunk: int, cap: int, cap_limit_s: float, steps: int,
                repeats: int, mixers: list[str] | None = None) -> list[dict]:
    """For every registered mixer (batch 1): the state after each prefix, built by forward over random input in
    pieces of ``chunk`` tokens, then the latency of ``steps`` step() calls from it and its size in bytes. A
    prefix beyond ``cap`` is cut to ``cap`` when the forward so far projects it past ``cap_limit_s``. The
    attention mixers keep every key in blocks of ``block_size`` tokens, so their bytes and their step time grow
    with the prefix. ``mixers`` restricts the run to those names."""
    rows = []
    for name in mixers or available_mixers():
        torch.manual_seed(0)
        # attention keeps every key: give its cache room for the longest prefix and the timed steps after it
        options = {"max_len": max(prefixes) + steps + 1} if name in ("transformer", "hopfield") else {}
        try:
            mixer = build_mixer(name, d, **options).eval()
        except RnnzooError as e:
            rows.append({"mixer": name, "skipped": f"build_mixer({name!r}, {d}) failed: {e}"})
            continue
        if not mixer.causal:
            rows.append({"mixer": name, "skipped": "not causal, no step()"})
            continue
        x_t = torch.randn(1, d)
        state, done, forward_s, points = None, 0, 0.0, []
        for T in prefixes:
            target = T
            if done and T > cap > done and forward_s / done * (T - done) > cap_limit_s:
                target = cap
            t0 = time.perf_counter()
            while done < target:
                piece = min(chunk, target - done)
                state = mixer(torch.randn(1, piece, d), state)[1]
                done += piece
            forward_s += time.perf_counter() - t0

            def run(start=state):
                s = start
                for _ in range(steps):
                    s = mixer.step(x_t, s)[1]
            t = time_it(run, repeats=repeats)
            points.append({"T": T, "reached_T": target, "state_bytes": state_bytes(state),
                           "step_ms": 1e3 * t["median_s"] / steps,
                           "spread_ms": [1e3 * t["min_s"] / steps, 1e3 * t["max_s"] / steps]})
            if target != T:
                break
        rows.append({"mixer": name, "forward_tokens_per_s": done / forward_s, "points": points,
                     "bytes_constant": len({p["state_bytes"] for p in points}) == 1})
        print(f"stream {name}: " + ", ".join(f"T={p['reached_T']} {p['step_ms']:.2f} ms" for p in points), flush=True)
    return rows


def print_ops(rows: list[dict], mm: dict, cfg: dict, quick: bool) -> None:
    B, T, H, K, V = (cfg[k] for k in "BTHKV")
    print(f"Ops, forward+backward, fp32, B={B} T={T} H={H} K={K} V={V} (delta_product n_h={cfg['n_h']}): chunk "
          f"form median of {cfg['repeats']} (spread min-max), reference loop 1 run. torch.matmul "
          f"{mm['n']}x{mm['n']} fp32 in this run: {mm['gflops']:.1f} GFLOP/s "
          f"(spread {2 * mm['n'] ** 3 / mm['max_s'] / 1e9:.1f}-{2 * mm['n'] ** 3 / mm['min_s'] / 1e9:.1f}).\n")
    table = []
    for r in rows:
        c, ref = r["chunk"], r["reference"]
        notes = []
        if r["op"].startswith("gla"):
            notes.append("sub-chunked scores" if r["sub_chunked"] else "one-matmul scores")
        if ref["scaled"] != 1:
            notes.append(f"reference timed at T={ref['timed_at_T']}, scaled x{ref['scaled']}")
        flops = r["flops_fwd_bwd"]
        table.append([r["op"], r["chunk_size"], f"{c['median_s']:.3f}", f"{c['min_s']:.3f}-{c['max_s']:.3f}",
                      f"{r['tokens_per_s']:,.0f}", f"{ref['median_s']:.2f}", f"{r['speedup']:.1f}x",
                      "yes" if r["speedup"] >= 20 else "no",
                      "n/a" if flops is None else f"{flops / 1e9:.3g}",
                      "n/a" if flops is None else f"{r['gflops']:.1f}",
                      "n/a" if flops is None else f"{100 * r['gflops'] / mm['gflops']:.0f}%", "; ".join(notes)])
    print(markdown_table(["op", "C", "chunk (s)", "spread (s)", "tokens/s", "reference (s)", "speed-up",
                          ">= 20x", "GFLOP", "GFLOP/s", "of matmul", "notes"], table))
    print("\nGFLOP: the chunk form's forward+backward count (3x the forward; formulas in chunk_flops). "
          "Inputs: q, k L2-normalised for the delta family; log-decays -exp(N(-0.5, 1)) for gla and rwkv, "
          "logsigmoid(N(0, 1)) for simple_gla and the gated delta ops; beta in (0, 1); mlstm i ~ N(0, 1), "
          "f ~ N(3, 1).")
    if not quick:
        print("\n" + PEERS_ELSEWHERE)


def print_min(rows: list[dict], cfg: dict) -> None:
    print(f"\nminGRU / minLSTM, forward+backward, B={cfg['B']} d={cfg['d']}: parallel (blocked scan, linear "
          "space), parallel_log (the paper's log-space scan), sequential (projections at once, then the loop), "
          "step loop (one step() per token: the paper's sequential mode) and torch.nn, same weights, "
          f"interleaved, median of {cfg['repeats']} (spread min-max)\n")

    def cell(t):
        return f"{t['median_s']:.3f} ({t['min_s']:.3f}-{t['max_s']:.3f})"
    table = [[r["mixer"], r["T"], cell(r["parallel"]), cell(r["parallel_log"]), cell(r["sequential"]),
              cell(r["step_loop"]), f"{r['vs_sequential']:.1f}x", f"{r['vs_step_loop']:.1f}x", r["peer"],
              cell(r["torch"]), f"{r['vs_peer']:.1f}x", f"{r['tokens_per_s']:,.0f}"] for r in rows]
    print(markdown_table(["mixer", "T", "parallel (s)", "parallel_log (s)", "sequential (s)", "step loop (s)",
                          "vs sequential", "vs step loop", "peer", "peer (s)", "vs peer", "parallel tokens/s"],
                         table))
    print("\nTarget: parallel >= 10x sequential at T=1024.")


def print_stream(rows: list[dict], cfg: dict) -> None:
    prefixes = cfg["prefixes"]
    print(f"\nStreaming, d_model={cfg['d']}, batch 1: step() latency (median of {cfg['repeats']} runs of "
          f"{cfg['steps']} steps) and state size after a prefix of T tokens (forward in pieces of "
          f"{cfg['chunk']}, no grad)\n")
    table, capped = [], False
    for r in rows:
        if "skipped" in r:
            table.append([r["mixer"]] + [""] * (2 * len(prefixes) + 1) + [r["skipped"]])
            continue
        by_T = {p["T"]: p for p in r["points"]}
        cells_ms, cells_bytes = [], []
        for T in prefixes:
            p = by_T.get(T)
            mark = "" if p is None or p["reached_T"] == T else f" (T={p['reached_T']})"
            capped = capped or bool(mark)
            cells_ms.append("" if p is None else f"{p['step_ms']:.3f}{mark}")
            cells_bytes.append("" if p is None else f"{p['state_bytes']:,}{mark}")
        table.append([r["mixer"], *cells_ms, *cells_bytes, "yes" if r["bytes_constant"] else "NO",
                      f"{r['forward_tokens_per_s']:,.0f} tokens/s forward"])
    print(markdown_table(["mixer", *(f"ms/step T={T}" for T in prefixes), *(f"bytes T={T}" for T in prefixes),
                          "bytes constant", "notes"], table))
    if capped:
        print(f"\n(T=...) marks a prefix capped at {cfg['cap']} tokens: forward over the full prefix projected "
              f"past {cfg['cap_limit_s']:g} s.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_options(ap)
    ap.add_argument("--only", choices=("ops", "min", "stream"), help="run one part")
    ap.add_argument("--mixers", nargs="+", choices=available_mixers(), help="stream: these mixers only")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args()
    set_threads(args)
    sizes = SIZES["quick" if args.quick else "full"]
    parts = (args.only,) if args.only else ("ops", "min", "stream")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    payload, seconds, start = {"config": {p: sizes[p] for p in parts}}, {}, time.perf_counter()
    name = ("ops_speed" + ("_quick" if args.quick else "") + (f"_{args.only}" if args.only else "")
            + (f"_{args.tag}" if args.tag else ""))

    def finish(part: str, t0: float) -> Path:
        """Record the part's time and rewrite the results file, so a long run stopped later keeps what it has."""
        seconds[part] = time.perf_counter() - t0
        return write_results(name, dict(payload, seconds=seconds))

    if "ops" in parts:
        t0 = time.perf_counter()
        mm = matmul_rate(sizes["ops"]["matmul_n"])
        cfg = {k: v for k, v in sizes["ops"].items() if k != "matmul_n"}
        payload["matmul"], payload["ops"] = mm, op_rows(**cfg)
        print_ops(payload["ops"], mm, sizes["ops"], args.quick)
        path = finish("ops", t0)
    if "min" in parts:
        t0 = time.perf_counter()
        payload["min"] = min_rows(**sizes["min"])
        print_min(payload["min"], sizes["min"])
        path = finish("min", t0)
    if "stream" in parts:
        t0 = time.perf_counter()
        payload["stream"] = stream_rows(**sizes["stream"], mixers=args.mixers)
        print_stream(payload["stream"], sizes["stream"])
        path = finish("stream", t0)
    print(f"\n{', '.join(f'{p} {s:.0f} s' for p, s in seconds.items())}; total "
          f"{time.perf_counter() - start:.0f} s. results: {path}")


if __name__ == "__main__":
    main()
