"""Long-sequence stability of the parallel-trainable ops (project issue 3): the chunk form in float32 against the
float64 reference loop on one long sequence with realistic inputs.

    .venv/bin/python benchmarks/stability.py              # T = 16384, B = H = 1, K = V = 8, chunk_size 64
    .venv/bin/python benchmarks/stability.py --T 2048     # a quicker run

Inputs are drawn once in float64 and cast, so both runs see the same numbers. q, k, v, r ~ N(0, 1). Every
log-decay is logsigmoid of an N(b, 1) pre-activation (the mLSTM's forget gate is that pre-activation), with b = 0
(a decay of about 0.45 per step, short memory) and b = 4 (about 0.97, long memory, like xLSTM's forget-gate
bias). The delta family uses unit-norm keys and beta = sigmoid(N(0, 1)); RWKV-7 uses a = -kappa and
b = kappa * sigmoid(N(0, 1)) per channel, for a unit-norm kappa.

The error of a tensor is max |x32 - x64| / max |x64| over the whole sequence, for the output and for the final
state; for scan_log_space, whose output is log h, it is max |log h32 - log h64|, the relative error of h itself.
"finite" means that the float32 output, final state and the gradient of a weighted sum of both hold no inf or
NaN. Writes benchmarks/results/stability.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_results  # noqa: E402

from rnnzoo.ops.delta import delta_product, delta_rule, gated_delta_rule  # noqa: E402
from rnnzoo.ops.linear_attention import gla, linear_attention, simple_gla  # noqa: E402
from rnnzoo.ops.mlstm import mlstm  # noqa: E402
from rnnzoo.ops.rwkv import rwkv6, rwkv7  # noqa: E402
from rnnzoo.ops.scan import scan, scan_log_space  # noqa: E402

DECAY_BIASES = (0.0, 4.0)
NO_DECAY = ("linear_attention", "delta_rule")  # inputs and results do not depend on the decay bias
Case = Callable[..., tuple]  # case(inputs, all of one dtype, mode) -> (output, final state) as the op returns it


def cases(T: int, decay_bias: float = 0.0, B: int = 1, H: int = 1, K: int = 8, V: int = 8, n_h: int = 2,
          seed: int = 0) -> dict[str, tuple[Case, dict[str, torch.Tensor]]]:
    """Each op's call and its float64 inputs, by name; every log-decay is logsigmoid(decay_bias + N(0, 1))."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def unit(*shape):
        return F.normalize(randn(*shape), dim=-1)

    def decay(*shape):
        return F.logsigmoid(decay_bias + randn(*shape))

    def beta(*shape):
        return torch.sigmoid(randn(*shape))

    kappa = unit(B, T, H, K)
    return {
        "scan": (lambda x, mode: scan(x["a"], x["b"], mode=mode),
                 {"a": decay(B, T, K).exp(), "b": randn(B, T, K)}),
        "scan_log_space": (lambda x, mode: scan_log_space(x["log_a"], x["log_b"], mode=mode),
                           {"log_a": decay(B, T, K), "log_b": decay(B, T, K) + randn(B, T, K)}),
        "linear_attention": (lambda x, mode: linear_attention(x["q"], x["k"], x["v"], mode=mode),
                             {"q": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V)}),
        "simple_gla": (lambda x, mode: simple_gla(x["q"], x["k"], x["v"], x["g"], mode=mode),
                       {"q": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V),
                        "g": decay(B, T, H)}),
        "gla": (lambda x, mode: gla(x["q"], x["k"], x["v"], x["g"], mode=mode),
                {"q": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V), "g": decay(B, T, H, K)}),
        "delta_rule": (lambda x, mode: delta_rule(x["q"], x["k"], x["v"], x["beta"], mode=mode),
                       {"q": unit(B, T, H, K), "k": unit(B, T, H, K), "v": randn(B, T, H, V), "beta": beta(B, T, H)}),
        "gated_delta_rule": (lambda x, mode: gated_delta_rule(x["q"], x["k"], x["v"], x["g"], x["beta"], mode=mode),
                             {"q": unit(B, T, H, K), "k": unit(B, T, H, K), "v": randn(B, T, H, V),
                              "g": decay(B, T, H), "beta": beta(B, T, H)}),
        "delta_product": (lambda x, mode: delta_product(x["q"], x["k"], x["v"], x["beta"], x["g"], mode=mode),
                          {"q": unit(B, T, H, K), "k": unit(B, T, n_h, H, K), "v": randn(B, T, n_h, H, V),
                           "beta": beta(B, T, n_h, H), "g": decay(B, T, H)}),
        "rwkv6": (lambda x, mode: rwkv6(x["r"], x["k"], x["v"], x["w"], x["u"], mode=mode),
                  {"r": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V), "w": decay(B, T, H, K),
                   "u": randn(H, K)}),
        "rwkv7": (lambda x, mode: rwkv7(x["r"], x["w"], x["k"], x["v"], x["a"], x["b"], mode=mode),
                  {"r": randn(B, T, H, K), "w": decay(B, T, H, K), "k": unit(B, T, H, K), "v": randn(B, T, H, V),
                   "a": -kappa, "b": kappa * beta(B, T, H, K)}),
        "mlstm": (lambda x, mode: mlstm(x["q"], x["k"], x["v"], x["i"], x["f"], mode=mode),
                  {"q": randn(B, T, H, K), "k": randn(B, T, H, K), "v": randn(B, T, H, V), "i": randn(B, T, H),
                   "f": decay_bias + randn(B, T, H)}),
    }


def flat(result) -> list[torch.Tensor]:
    """(output, state) -> [output, *state tensors], whether the state is one tensor or a tuple of them."""
    out, state = result
    return [out, *(state if isinstance(state, tuple) else (state,))]


def rel_error(got: torch.Tensor, want: torch.Tensor, log_space: bool = False) -> float:
    err = (got.double() - want).abs().max().item()
    return err if log_space else err / max(want.abs().max().item(), 1e-30)


def check(name: str, case: Case, inputs: dict[str, torch.Tensor]) -> dict:
    """float32 chunk form against the float64 loop on one op: errors of the output and final state, finiteness."""
    want = flat(case(inputs, "recurrent"))
    x32 = {key: t.float().requires_grad_() for key, t in inputs.items()}
    got = flat(case(x32, "chunk"))
    gen = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=gen)).sum() for t in got)
    grads = torch.autograd.grad(loss, list(x32.values()))
    log_space = name == "scan_log_space"
    return {"op": name,
            "output_rel_error": rel_error(got[0], want[0], log_space),
            "state_rel_error": max(rel_error(g, w, log_space) for g, w in zip(got[1:], want[1:])),
            "finite": all(bool(torch.isfinite(t).all()) for t in (*got, *grads))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=16384)
    args = ap.parse_args()
    torch.set_num_threads(1)  # B = H = 1, K = V = 8: more threads only add overhead to such tiny ops
    rows = []
    for decay_bias in DECAY_BIASES:
        for name, (case, inputs) in cases(args.T, decay_bias).items():
            if decay_bias == 0 or name not in NO_DECAY:
                rows.append({"decay_bias": decay_bias, **check(name, case, inputs)})
    path = write_results("stability" + ("" if args.T == 16384 else f"_T{args.T}"),
                         {"T": args.T, "B": 1, "H": 1, "K": 8, "V": 8, "chunk_size": 64, "rows": rows})
    print(f"T = {args.T}, float32 chunk form against the float64 loop\n")
    print(markdown_table(["op", "decay bias", "max rel error (output)", "max rel error (state)", "finite"],
                         [[r["op"], r["decay_bias"], f"{r['output_rel_error']:.2e}", f"{r['state_rel_error']:.2e}",
                           r["finite"]] for r in rows]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
