"""benchmarks/speed_all.py's helpers: the time-cap projection, the skip logic of the sweep, and the peak-memory
reading against allocations of known size."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_all.py"
spec = importlib.util.spec_from_file_location("speed_all", PATH)
speed_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(speed_all)

MiB = 2 ** 20
linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, calls glibc")


@settings(max_examples=50, deadline=None)
@given(a=st.floats(1e-6, 10.0), p=st.floats(1.0, 3.0), T0=st.integers(16, 512), k=st.integers(2, 8),
       m=st.integers(2, 16))
def test_projection_recovers_a_power_law(a, p, T0, k, m):
    """Times a T^p at T0 and k T0 project to a (m k T0)^p at m k T0."""
    T1, T = k * T0, m * k * T0
    points = [(T0, a * T0 ** p), (T1, a * T1 ** p)]
    assert math.isclose(speed_all.projected_seconds(points, T), a * T ** p, rel_tol=1e-9)


@settings(max_examples=30, deadline=None)
@given(t0=st.floats(0.01, 10.0), shrink=st.floats(0.1, 1.0), T=st.integers(2048, 65536))
def test_projection_is_at_least_linear(t0, shrink, T):
    """Sub-linear growth between the points (a fixed overhead dominating) still projects linearly from the last."""
    assert math.isclose(speed_all.projected_seconds([(256, t0)], T), t0 * T / 256, rel_tol=1e-9)
    assert math.isclose(speed_all.projected_seconds([(256, t0), (1024, t0 * 4 * shrink)], T),
                        t0 * 4 * shrink * T / 1024, rel_tol=1e-9)


def test_sweep_skips_the_projected_cap_and_everything_after():
    """A module whose step takes T / 1000 s with a 3 s cap: T = 1024 runs (1.02 s), 4096 projects to 4.1 s and is
    skipped, and 16384 is neither measured nor listed; a module that cannot be built is a skipped row."""
    seen = []

    def measure(module, x, first):
        seen.append((x.shape[1], first))
        return {"seconds": x.shape[1] / 1000}
    rows = speed_all.sweep(["torch.nn.LSTM", "no_such_mixer_xyz"], 4, 2, (256, 1024, 4096, 16384), 3.0, measure)
    assert seen == [(256, True), (1024, False)]
    points = rows[0]["points"]
    assert [p["T"] for p in points] == [256, 1024, 4096]
    assert "skipped" in points[2] and "4 s > 3 s" in points[2]["skipped"]
    assert rows[1]["points"] == [] and "no_such_mixer_xyz" in rows[1]["skipped"]


@linux_glibc
@pytest.mark.parametrize("mib", [16, 64])
def test_peak_memory_sees_an_allocation_of_known_size(mib):
    def fn():
        torch.ones(mib * MiB // 4)  # float32, every page written
    peak = speed_all.peak_rss_bytes(fn)
    assert (mib - 1) * MiB <= peak < (mib + 8) * MiB, peak / MiB  # the kernel's counters lag by some pages


@linux_glibc
def test_peak_memory_leaves_out_what_existed_before_and_counts_reused_memory():
    held = torch.ones(64 * MiB // 4)  # resident before the call: the baseline, not the step's
    assert speed_all.peak_rss_bytes(lambda: None) < 4 * MiB
    del held  # freed memory goes back, so a new allocation of the same size shows again
    assert 31 * MiB <= speed_all.peak_rss_bytes(lambda: torch.ones(32 * MiB // 4)) < 40 * MiB
