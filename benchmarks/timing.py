"""Timing and options shared by the speed benchmarks."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from stransfer.device import cpu_claims_bf16, cpu_flags, make_runtime, native_bf16


def cpu_kind() -> str:
    """This CPU as one of the machine kinds docs/benchmarks.md states timings for: AVX-512 BF16, AVX2 or other. A chip
    whose bf16 is emulated whatever its flags say (oneDNN capped at AVX2) times as the AVX2 kind."""
    if native_bf16(torch.device("cpu")):
        return "AVX-512 BF16"
    return "AVX2" if "avx2" in cpu_flags() else "other"


def bf16_capped() -> bool:
    """A chip whose flags claim bf16 that runs emulated (oneDNN capped at AVX2): its times are not an AVX2 chip's."""
    return cpu_claims_bf16() and not native_bf16(torch.device("cpu"))


# What makes an AVX-512 chip run the AVX2 code paths in all three of torch's CPU libraries: oneDNN (convolutions),
# ATen's own kernels, and MKL (matrix products). Without the MKL cap the products still run AVX-512, about twice
# as fast, so the Winograd convolutions (stransfer/winograd.py, mostly products) look faster than on AVX2.
AVX2_CAPS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def cpu_name() -> str:
    """The CPU's model name (Linux), and AMX where it has it: chips of one kind differ, so a table says which one
    it came from."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        info = ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    name = names[0] if names else platform.processor() or "unknown CPU"
    name = f"{name} with AMX" if "amx_bf16" in cpu_flags() else name
    if not bf16_capped():
        return name
    missing = [f"{k}={v}" for k, v in AVX2_CAPS.items() if os.environ.get(k) != v]  # MKL ignores "avx2"
    partly = f" (AVX2 code paths only in part: {' '.join(missing)} not set)" if missing else ""
    return f"{name}, bf16 emulated{partly}"


def machine_kind() -> str:
    """The block of docs/benchmarks.md (run_all.py) this machine's numbers belong to: gpu where there is a CUDA
    GPU (the benchmarks' --device auto picks it), else the CPU's kind: avx512-bf16, avx2 or other-cpu. A bf16 chip
    capped at AVX2 is avx2-capped, a block of its own: its times are not an AVX2 chip's."""
    if torch.cuda.is_available():
        return "gpu"
    if bf16_capped():
        return "avx2-capped"
    return {"AVX-512 BF16": "avx512-bf16", "AVX2": "avx2"}.get(cpu_kind(), "other-cpu")


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
    parser.add_argument("--sizes", default="512,1024,2048", help="image sizes to time; empty: training only")
    args = parser.parse_args()
    if args.train_steps < 1 or args.repeats < 1:
        parser.error("--train-steps and --repeats must be at least 1 (they divide the time)")
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    device = make_runtime(args.device).device
    # Emulated bf16 (AVX2-only CPUs, or oneDNN capped below its bf16 kernels) runs 100-400x slower than fp32.
    return args, device, ["fp32", "bf16"] if native_bf16(device) else ["fp32"]


def peak_rss(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of `python -m stransfer ARGS --overwrite` in a fresh process, read with
    wait4 ourselves so the kernel's peak of exactly that child is counted (start-up and image buffers too)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: become the command, its stdout (the paths it wrote) silenced
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os.execve(sys.executable, [sys.executable, "-m", "stransfer", *args, "--overwrite"], env)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(args)}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024
