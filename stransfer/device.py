"""The device manager: which device, which precision, how many threads, which seed."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from stransfer.config import check
from stransfer.errors import UsageError

DEVICE_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
MAX_THREADS = 1024  # far past any machine's cores; torch itself overflows near 2**31
MAX_SEED = 2**63 - 1  # torch's seeds are 64-bit; this leaves room for the offsets Runtime.generator adds


@dataclass(frozen=True)
class Runtime:
    """Where and how to compute; engines take device and precision only from here."""

    device: torch.device
    precision: str = "fp32"
    seed: int | None = None
    why: str = "asked for"  # how the precision was chosen, for --verbose

    def describe(self) -> str:
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        return f"device {self.device}, precision {self.precision} ({self.why}){threads}"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast for the forward passes when asked; fp32 otherwise."""
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator from the run's seed, so noise is the same on every device."""
        g = torch.Generator()
        g.manual_seed((self.seed if self.seed is not None else torch.initial_seed()) + offset)
        return g


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("`device` cuda: no CUDA device is available here (try `device` cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UsageError("`device` mps: no Apple GPU (MPS) is available here (try `device` cpu)")
    if name not in DEVICE_NAMES:
        raise UsageError(f"`device` must be one of {', '.join(DEVICE_NAMES)} (got {name!r})")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPU autocast runs bf16 everywhere (emulated on old CPUs: correct but slow); MPS has it from macOS 14.
    return device.type in ("cpu", "mps")


# Emulated bf16 runs at a small fraction of fp32's speed and native bf16 faster than it, so the line sits far
# below 1: the timed product is short enough for a busy machine to blur a native ratio below 1 (a line at 1.0
# made auto flip between runs), so only a clear miss means emulated.
EMULATED_BF16_BELOW = 0.25


def native_bf16(device: torch.device) -> bool:
    """bf16 that runs in hardware (so it is faster, not just emulated): Ampere+ GPUs, and CPUs whose flags
    (/proc/cpuinfo; elsewhere we do not guess) claim bf16 instructions (`cpu_claims_bf16`) and whose bf16
    matmul is not timed emulation-slow (`cpu_bf16_speedup`)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_claims_bf16() and cpu_bf16_speedup() >= EMULATED_BF16_BELOW
    return False


def cpu_claims_bf16() -> bool:
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache  # process-wide: a few milliseconds where bf16 is native, under a second where it is not
def cpu_bf16_speedup(side: int = 256, repeats: int = 5) -> float:
    """fp32 matmul time over bf16's on this CPU, best of a few. Flags can lie: with oneDNN capped below its bf16
    kernels (ONEDNN_MAX_CPU_ISA), a chip whose flags claim bf16 emulates it, far slower than fp32."""
    a, b = torch.rand(side, side), torch.rand(side, side)
    operands = ((a, b), (a.bfloat16(), b.bfloat16()))
    best = [float("inf")] * len(operands)
    for attempt in range(repeats + 1):  # the first pays for choosing and building the kernels
        for i, (x, y) in enumerate(operands):  # interleaved, so a busy machine slows both alike
            start = time.perf_counter()
            torch.mm(x, y)
            if attempt:
                best[i] = min(best[i], time.perf_counter() - start)
    return best[0] / best[1]


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none). Where the bf16 ones are missing,
    autocast emulates bf16 matmul far slower than fp32, so auto must never pick it."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


# glibc's malloc serves each block over 32 MB (every feature map of VGG's first blocks from 512 px up) with a
# fresh mmap and unmaps it on free, so every pass faults in, and the kernel zeroes, gigabytes of new pages. From
# the heap, never trimmed, the same pages serve pass after pass: every engine runs faster, for a higher peak
# (freed blocks leave holes that a slightly larger block does not fit) that the engines' tiling budgets count.
# benchmarks/allocator.py measures both.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
GLIBC_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


@functools.cache  # process-wide: once is enough, however many runtimes are made
def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (no mmap per block, no trimming); True if it took.
    Leaves the allocator alone where it is not glibc, or where the user set glibc's own MALLOC_* variables."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in GLIBC_MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc only: M_MMAP_MAX and M_TRIM_THRESHOLD are its numbers
    except (OSError, AttributeError):
        return False
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, -1) == 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def make_runtime(
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    seed: int | None = None,
) -> Runtime:
    dev = resolve_device(device)
    if dev.type == "cpu":
        reuse_freed_memory()
    if precision not in PRECISIONS:
        raise UsageError(f"`precision` must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    why = "asked for"
    if precision == "auto":
        # bf16 only where the hardware runs it natively: there it is faster at the same quality
        # (benchmarks/gatys_quality_speed.py, johnson_speed.py, adain_speed.py); emulated, far slower.
        precision = "bf16" if native_bf16(dev) else "fp32"
        why = f"auto: {'native' if precision == 'bf16' else 'no native'} bf16 on this {dev.type}"
        if dev.type == "cpu" and cpu_claims_bf16():
            why += f"; its flags claim bf16, and a bf16 matmul timed {cpu_bf16_speedup():.2g}x as fast as fp32"
    if precision == "bf16" and not bf16_supported(dev):
        raise UsageError(f"`precision` bf16 is not supported on {dev.type} here (use fp32)")
    if threads is not None:
        torch.set_num_threads(check("threads", threads, ge=1, le=MAX_THREADS, integer=True))
    if seed is not None:
        seed_everything(check("seed", seed, ge=0, le=MAX_SEED, integer=True))
    return Runtime(device=dev, precision=precision, seed=seed, why=why)
