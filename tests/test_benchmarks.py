"""The benchmark scripts drive the library's own tasks; these keep them in step with it (a benchmark that no
longer runs measures nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from stransfer.device import Runtime
from stransfer.train.johnson import JohnsonTrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from multistyle_speed import step_ms  # noqa: E402
from run_all import johnson_styles  # noqa: E402
from timing import AVX2_CAPS, cpu_name, machine_kind  # noqa: E402


@pytest.mark.parametrize("styles, frozen", [(1, 0), (3, 0), (1, 2)])
def test_johnson_training_step_benchmark_runs_a_real_step(random_vgg16, styles, frozen):
    """One style (johnson_speed), several in one network, and --add-style (multistyle_speed)."""
    cfg = JohnsonTrainConfig(width=4, residual_blocks=1, image_size=32, style_size=32, batch_size=2)
    ms = step_ms(styles, frozen, Runtime(torch.device("cpu")), random_vgg16, 1, cfg)
    assert ms > 0


def test_run_all_scores_each_style_of_a_multistyle_model(tmp_path):
    """run_all writes a quality section per style of a model file holding several, one for a one-style file."""
    from test_multistyle import two_style_model

    two_style_model(tmp_path / "multi.pth", names=("wave", "udnie"))
    assert johnson_styles(tmp_path / "multi.pth") == ["wave", "udnie"]
    two_style_model(tmp_path / "one.pth", names=("udnie",))
    assert johnson_styles(tmp_path / "one.pth") == ["udnie"]


def fake_cpu(monkeypatch, flags: set[str], bf16_speedup: float | None) -> None:
    """A CPU with these flags whose timed bf16 matmul runs at this fraction of fp32's speed."""
    monkeypatch.setattr("stransfer.device.cpu_flags", lambda: flags)
    monkeypatch.setattr("stransfer.device.cpu_bf16_speedup", lambda: bf16_speedup)
    monkeypatch.setattr("timing.cpu_flags", lambda: flags)


@pytest.mark.parametrize(("flags", "speedup", "kind"), [({"avx2"}, None, "avx2"),
                                                        ({"avx2", "avx512_bf16", "amx_bf16"}, 2.0, "avx512-bf16"),
                                                        ({"avx2", "avx512_bf16", "amx_bf16"}, 0.01, "avx2-capped")])
def test_a_bf16_chip_capped_at_avx2_writes_no_readme_block(monkeypatch, flags, speedup, kind):
    """run_all.py rewrites the README block of machine_kind(); a capped chip's times are not an AVX2 chip's."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    fake_cpu(monkeypatch, flags, speedup)
    assert machine_kind() == kind


def test_a_capped_chip_names_the_caps_it_lacks(monkeypatch):
    """Benchmark headers say when an AVX-512 chip runs AVX2 code paths only in part (MKL's products uncapped)."""
    fake_cpu(monkeypatch, {"avx2", "avx512_bf16"}, 0.01)
    for name, value in AVX2_CAPS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
    assert cpu_name().endswith("bf16 emulated (AVX2 code paths only in part: MKL_ENABLE_INSTRUCTIONS=AVX2 not set)")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "avx2")  # MKL reads only the upper-case name: still uncapped
    assert cpu_name().endswith("(AVX2 code paths only in part: MKL_ENABLE_INSTRUCTIONS=AVX2 not set)")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert cpu_name().endswith("bf16 emulated")
