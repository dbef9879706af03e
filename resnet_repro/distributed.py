"""Multi-process training wiring (torchrun): this process's rank, its share of each batch,
wrapping the model in DistributedDataParallel, and the reductions of per-epoch totals.

Scaling rule: the global batch is ``config.batch_size`` whatever the world size; each rank
takes a contiguous 1/world_size slice of every global batch of the epoch's permutation, and the
learning rate follows the config unchanged. Data order and augmentation draws are the same for
any world size; BN statistics are per rank (or synchronized with ``sync_bn`` on CUDA) and the
gradient reduction order differs, so runs with different world sizes agree to float tolerance
per step, not bitwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from resnet_repro.config import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run directly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """The rank, world size and local rank torchrun sets in the environment."""
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and evaluates."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of ``n`` images."""
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def device(self, device: torch.device) -> torch.device:
        """On CUDA each rank trains on its local GPU; elsewhere the device is shared."""
        if device.type == "cuda" and self.world_size > 1:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def wrap(self, model: nn.Module, device: torch.device, *, sync_bn: bool) -> nn.Module:
        """``model`` in DistributedDataParallel (joining the process group if needed), with
        BN synchronized across ranks when ``sync_bn``."""
        import torch.distributed as torch_dist
        from torch.nn.parallel import DistributedDataParallel

        if not torch_dist.is_initialized():
            torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if sync_bn:
            if device.type != "cuda":
                raise ConfigError("sync_bn needs CUDA: torch's SyncBatchNorm does not run on CPU")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over ranks (itself with one process)."""
        if self.world_size > 1:
            import torch.distributed as torch_dist

            torch_dist.all_reduce(values)
        return values

    def max(self, values: Tensor) -> Tensor:
        """``values`` maximized over ranks (itself with one process)."""
        if self.world_size > 1:
            import torch.distributed as torch_dist

            torch_dist.all_reduce(values, op=torch_dist.ReduceOp.MAX)
        return values
