"""Wall-clock timing shared by the speed benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def ms_per_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean milliseconds of `fn` over `repeats` calls after one warm-up, waiting for the GPU where there is one."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats * 1000
