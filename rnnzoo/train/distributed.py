"""Data-parallel training under torchrun: one process per device, each on its own rows of the global batch.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. With WORLD_SIZE > 1 the trainer
joins the process group (gloo on CPU, nccl on CUDA) and wraps the model in DistributedDataParallel, which
averages the gradients of all ranks during backward, so every rank takes the same optimizer step. Without
torchrun (or with one process) every helper here does nothing, so the same code runs either way.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rnnzoo.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # this process started the process group, so it also ends it

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, logs and saves; the others wait for it at a barrier."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistContext:
    """Join torchrun's process group when WORLD_SIZE > 1; on CUDA, rank r uses cuda:LOCAL_RANK."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} was asked for but CUDA is not available; use device=cpu")
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be ints; launch with torchrun, "
                          "which sets them") from None
    if world_size <= 1:
        return DistContext(0, 1, device, owns_group=False)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, device, owns_group)


def shutdown(ctx: DistContext, clean: bool) -> None:
    """Leave the process group. ``clean``: every rank got here normally, so they can meet once more first.

    DistributedDataParallel sits in reference cycles, so its reducer (which holds the group) outlives the
    training function until the garbage collector runs, and gloo aborts the process when that happens after
    the group is gone. Collecting first frees it while the group is still alive.
    """
    if ctx.owns_group and dist.is_initialized():
        if clean:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    if not ctx.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def mean_over_ranks(value: float, ctx: DistContext) -> float:
    """The mean of a per-rank number (each rank holds an equal share of the global batch)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.item() / ctx.world_size


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when it is true on some rank (so all ranks stop at the same step)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([int(flag)], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_from_main(value: float, ctx: DistContext) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(t, src=0)
    return t.item()


def gather_rows(tensors: list[torch.Tensor], ctx: DistContext) -> list[torch.Tensor]:
    """Each tensor's rows from every rank, joined along dim 0 in rank order: the global batch's rows."""
    if not ctx.enabled:
        return list(tensors)
    out = []
    for t in tensors:
        parts = [torch.empty_like(t) for _ in range(ctx.world_size)]
        dist.all_gather(parts, t.contiguous())
        out.append(torch.cat(parts, dim=0))
    return out


def rank_rows(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's rows of a tensor that holds the global batch (the inverse of ``gather_rows``)."""
    b = t.shape[0] // ctx.world_size
    return t[ctx.rank * b:(ctx.rank + 1) * b]
