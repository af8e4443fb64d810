"""Data-parallel training under torchrun (2 CPU processes, gloo) against one process on the same global batch."""
import csv
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from rnnzoo.train import TrainConfig, train

# Run by each rank: train, then save this rank's final weights so the test can compare the ranks.
RANK_SCRIPT = """
import json, os, sys
import torch
from rnnzoo.train import TrainConfig, train
cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
result = train(cfg, progress=False)
torch.save(result.model.state_dict(), os.path.join(cfg.out_dir, f"rank{os.environ['RANK']}.pt"))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_losses(out_dir) -> list[float]:
    with open(os.path.join(out_dir, "metrics.csv"), newline="") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_two_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text("".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(120)))
    # bptt > seq_len: each update runs the model over two segments before one backward, under DDP too.
    settings = dict(data=str(data), mixer="lstm", d_model=16, n_layers=2, steps=6, batch_size=4, seq_len=8,
                    bptt=12, warmup_steps=2, eval_every=0, log_every=1, save_every=3, seed=3)
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(script), json.dumps(dict(settings, out_dir=str(ddp_dir)))],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rank0 = torch.load(ddp_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_dir / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    single = train(TrainConfig(**settings, out_dir=str(tmp_path / "single")), progress=False)
    ddp_losses = train_losses(ddp_dir)
    assert len(ddp_losses) == len(single.history) == 6
    for a, b in zip(ddp_losses, (row["train_loss"] for row in single.history)):
        assert abs(a - b) < 1e-5
    for name, w in single.model.state_dict().items():
        torch.testing.assert_close(rank0[name], w, atol=1e-5, rtol=1e-4)
