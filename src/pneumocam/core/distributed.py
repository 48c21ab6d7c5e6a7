"""Running under torchrun: which process this is, and the few collectives training needs (torch.distributed).

`torchrun --nproc-per-node N -m pneumocam train ...` starts N processes with RANK / WORLD_SIZE set; each holds the
whole model and reads the whole (small) index, trains on its share of every global batch inside
DistributedDataParallel (gloo on CPU, nccl on CUDA), and rank 0 alone writes the run folder. Without torchrun
(WORLD_SIZE unset or 1) every call here is a no-op, so single-process code paths are unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from pneumocam.core.errors import SettingError


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def part(self, n: int) -> np.ndarray:
        """This process's indices of n items: contiguous, near-equal parts in rank order."""
        return np.array_split(np.arange(n), self.world)[self.rank]

    def gather(self, local: np.ndarray) -> np.ndarray:
        """Each process's rows of `part(n)`, concatenated in rank order (so in item order) on every process."""
        if not self.active:
            return local
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, np.asarray(local))
        return np.concatenate(parts)

    def broadcast(self, value):
        """Rank 0's value on every process."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around the module that trains (gradients averaged over processes)."""
        if not self.active:
            return module
        return torch.nn.parallel.DistributedDataParallel(module)

    def to_dict(self) -> dict:
        return {"world_size": self.world, "backend": self.backend}


SINGLE = Distributed()


def init_distributed(device: torch.device) -> Distributed:
    """The process group torchrun describes in the environment (joined once), or SINGLE outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        # One GPU per process: NCCL refuses two ranks on one device, and an ordinal past the last GPU fails deep
        # inside CUDA; say so before joining the group.
        local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= gpus:
            raise SettingError(
                "device",
                f"is cuda under torchrun with local rank {local_rank}, but this machine has {gpus} GPU(s): start "
                f"at most {gpus} process(es) per node (--nproc-per-node {gpus}), or train on the CPU (--device cpu)",
            )
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Distributed(torch.distributed.get_rank(), torch.distributed.get_world_size(), backend)
