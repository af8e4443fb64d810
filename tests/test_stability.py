"""Long-sequence stability (project issue 3): for every parallel-trainable op, the float32 chunk form on one
sequence of 4096 steps with realistic inputs stays finite (outputs, final state, gradients) and within 1e-3
relative of the float64 reference loop. Inputs and comparison are benchmarks/stability.py's, which runs 16384."""
import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "stability.py"
spec = importlib.util.spec_from_file_location("stability", PATH)
stability = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stability)

T = 4096  # the benchmark's 16384 takes ~45 s here, too long for the test suite
OPS = list(stability.cases(1))
CASES = [(name, bias) for bias in stability.DECAY_BIASES for name in OPS
         if bias == 0 or name not in stability.NO_DECAY]


@pytest.mark.slow
@pytest.mark.parametrize("name, decay_bias", CASES)
def test_float32_chunk_form_matches_float64_loop(name, decay_bias):
    case, inputs = stability.cases(T, decay_bias)[name]
    row = stability.check(name, case, inputs)
    assert row["finite"]
    assert row["output_rel_error"] < 1e-3 and row["state_rel_error"] < 1e-3, row
