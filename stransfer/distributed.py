"""Scale-out under torchrun: rank and world size from the environment, one device per rank, gathered results.
Without torchrun (WORLD_SIZE unset or 1) every call here is a no-op on a world of one."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from stransfer.device import Runtime


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (run records and checkpoints, so no shared filesystem is needed)."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_counts(self, results: list[Any]) -> Counter[str]:
        counts: Counter[str] = Counter({"written": 0, "skipped": 0, "failed": 0})
        for part in self.gather(Counter(r.status for r in results)):
            counts.update(part)
        return counts

    def shutdown(self) -> None:
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def init() -> World:
    """Join the process group torchrun describes: nccl on CUDA, gloo on CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return World(rank, size, local_rank)


def runtime_for(runtime: Runtime, world: World) -> Runtime:
    """Each rank of a multi-GPU run takes its own GPU."""
    if world.size > 1 and runtime.device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        return dataclasses.replace(runtime, device=torch.device("cuda", world.local_rank))
    return runtime
