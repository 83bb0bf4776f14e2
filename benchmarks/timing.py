"""Timing and options shared by the speed benchmarks."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from stransfer.device import bf16_supported, make_runtime


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


def speed_options(doc: str) -> tuple[argparse.Namespace, torch.device, list[str]]:
    """The options every feed-forward speed benchmark takes; also the device and the precisions it can time."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--sizes", default="512,1024,2048")
    args = parser.parse_args()
    device = make_runtime(args.device).device
    return args, device, ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]
