"""torch.distributed glue so one training loop runs on 1 CPU process or N GPU ranks under ``torchrun``.

Nothing here is a home-made engine: ranks come from torchrun's environment, gradients are synchronised by
``DistributedDataParallel``, and metrics by ``all_reduce``. On CPU the backend is ``gloo``, on GPUs ``nccl``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass
class DistributedContext:
    """Rank, world size and device of this process; a single process has rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_environment(cls, device: str = "cpu", timeout_s: int = 300) -> DistributedContext:
        """Join the process group torchrun describes (``WORLD_SIZE`` > 1), or stay single-process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=torch.device(device))
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device.startswith("cuda") and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local)
        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
        return cls(rank, local, world, torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when several ranks train together."""
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training step calls: a DDP wrapper in distributed runs, the model itself otherwise."""
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def average(self, terms: dict[str, float]) -> dict[str, float]:
        """Mean of each metric over ranks (identity in single-process runs)."""
        if not self.active:
            return terms
        keys = sorted(terms)
        values = torch.tensor([terms[k] for k in keys], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(values)
        return {k: float(v) / self.world_size for k, v in zip(keys, values.tolist())}

    def agree(self, flag: bool) -> bool:
        """True on every rank when any rank says True (e.g. "the time budget is spent"), so all stop together."""
        if not self.active:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        """Wait for every rank (no-op in single-process runs)."""
        if self.active:
            torch_dist.barrier()

    def close(self) -> None:
        """Leave the process group."""
        if self.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
