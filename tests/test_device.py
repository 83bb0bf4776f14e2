from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

from stransfer.device import EMULATED_BF16_BELOW, GLIBC_MALLOC_ENV, make_runtime, resolve_device
from stransfer.errors import UsageError

from conftest import cli


def test_cpu_runtime_fp32_autocast_is_a_no_op():
    rt = make_runtime("cpu", "fp32")
    conv = torch.nn.Conv2d(3, 4, 3)
    with rt.autocast():
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32


def test_bf16_autocasts_convolutions_on_cpu():
    rt = make_runtime("cpu", "bf16")
    conv = torch.nn.Conv2d(3, 4, 3)
    with rt.autocast():
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16


@pytest.mark.parametrize(("cuda", "mps", "expected"), [(True, True, "cuda"), (True, False, "cuda"),
                                                       (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_a_usage_error():
    with pytest.raises(UsageError, match="no CUDA device"):
        make_runtime("cuda")


def test_bad_values_are_usage_errors():
    with pytest.raises(UsageError, match="`precision` must be one of auto, fp32, bf16"):
        make_runtime("cpu", "fp8")
    with pytest.raises(UsageError, match="^'threads' must be >= 1"):
        make_runtime("cpu", threads=0)
    with pytest.raises(UsageError, match="`device` must be one of"):
        make_runtime("tpu")


def test_seed_makes_generators_repeat():
    a = torch.rand(4, generator=make_runtime("cpu", seed=3).generator())
    b = torch.rand(4, generator=make_runtime("cpu", seed=3).generator())
    c = torch.rand(4, generator=make_runtime("cpu", seed=4).generator())
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("flags", "expected"), [({"avx2", "fma"}, "fp32"), ({"avx2", "avx512f"}, "fp32"),
                                                  ({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16")])
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected):
    """auto is bf16 only where the CPU runs it natively; AVX2-only CPUs would emulate it 400x slower."""
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: flags)
    monkeypatch.setattr("stransfer.device.cpu_bf16_speedup", lambda: 2.0)
    assert make_runtime("cpu", "auto").precision == expected
    assert make_runtime("cpu", "fp32").precision == "fp32"


NATIVE_BF16 = ("precision bf16 (auto: native bf16 on this cpu; its flags claim bf16, and a bf16 matmul timed 2x as "
               "fast as fp32)")


@pytest.mark.parametrize(("flags", "expected"), [({"avx2", "fma"}, "precision fp32 (auto: no native bf16 on this cpu)"),
                                                  ({"avx512_bf16"}, NATIVE_BF16)])
def test_verbose_says_once_which_precision_auto_chose_and_why(monkeypatch, capsys, make_image, tiny_run, tmp_path,
                                                             flags, expected):
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: flags)
    monkeypatch.setattr("stransfer.device.cpu_bf16_speedup", lambda: 2.0)
    out = tmp_path / "out.png"
    code, _, err = cli(capsys, "stylize", make_image("c.png", 32, 32), "-o", out, *tiny_run, "--verbose")
    assert code == 0 and out.exists()
    assert err.count("precision") == 1 and expected in " ".join(err.split())
    code, _, err = cli(capsys, "stylize", make_image("d.png", 32, 32), "-o", tmp_path / "d_out.png", *tiny_run,
                       "--precision", "fp32")
    assert code == 0 and "precision" not in err


def test_auto_precision_times_bf16_where_the_flags_claim_it(monkeypatch):
    """Flags can claim bf16 that runs emulated; then the timed matmul decides, and --verbose says so."""
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    monkeypatch.setattr("stransfer.device.cpu_bf16_speedup", lambda: 0.01)
    runtime = make_runtime("cpu", "auto")
    assert runtime.precision == "fp32" and "timed 0.01x as fast as fp32" in runtime.describe()
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr("stransfer.device.cpu_bf16_speedup", lambda: pytest.fail("timed without the flags"))
    assert make_runtime("cpu", "auto").precision == "fp32"


def test_a_busy_machine_does_not_turn_native_bf16_into_fp32(monkeypatch):
    """Native bf16 timed slower than fp32 by a loaded machine is still native: only emulation's 50-100x miss
    turns auto to fp32, so two runs side by side resolve it alike."""
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    monkeypatch.setattr("stransfer.device.cpu_bf16_speedup", lambda: 0.6)
    assert make_runtime("cpu", "auto").precision == "bf16"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="ONEDNN_MAX_CPU_ISA=AVX2 is an x86 cap")
def test_a_cpu_capped_below_its_bf16_kernels_times_bf16_slower():
    """The real probe, on a CPU whose bf16 is emulated whatever its flags say: oneDNN capped at AVX2."""
    probe = "from stransfer.device import cpu_bf16_speedup; print(cpu_bf16_speedup())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < EMULATED_BF16_BELOW  # emulated: 0.01-0.02x


FAULTS_PROBE = """
import resource, torch
from stransfer.device import make_runtime
make_runtime("cpu")
for _ in range(5):  # the heap settles in the first few blocks (alignment leaves holes)
    torch.ones((64 << 20) // 4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones((64 << 20) // 4)  # 64 MB, over glibc's largest mmap threshold; freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_cpu_runtime_makes_malloc_reuse_freed_blocks_unless_the_user_set_glibcs_own():
    def page_faults(**env: str) -> int:
        base = {k: v for k, v in os.environ.items() if k not in GLIBC_MALLOC_ENV}
        run = subprocess.run([sys.executable, "-c", FAULTS_PROBE], env={**base, **env}, capture_output=True,
                             text=True, check=True)
        return int(run.stdout.split()[-1])

    pages = (64 << 20) // 4096
    assert page_faults(MALLOC_MMAP_MAX_="65536") >= 5 * pages  # glibc's default: a fresh mapping every time
    assert page_faults() < pages  # stransfer's: the settled heap's pages serve all five
