"""Shared fixtures: tiny images made on the fly, a random-weight VGG16, an isolated weights cache, and the
helpers that run the command line in-process."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stransfer import weights
from stransfer.backbone import VGGFeatures
from stransfer.engines.johnson import JohnsonArch, TransformerNet

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (-n N) each worker, and what it starts, takes its share of the cores: threads beyond
    the cores spin against each other and slow every test."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def exit_code(*args: object) -> int:
    """Run `stransfer ARGS` through the real entry point in this process; its exit code."""
    from stransfer.cli import main  # here, so the modules' own tests collect even when the CLI cannot import

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    return done.value.code


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run `stransfer ARGS` through the real entry point; return (exit code, stdout, stderr)."""
    code = exit_code(*args)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The one `error:` line a failed command must print, and nothing else (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error:")
    return lines[0]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's real cache, or picks up their weights override."""
    home = tmp_path_factory.mktemp("stransfer-home")
    monkeypatch.setenv("STRANSFER_HOME", str(home))
    monkeypatch.delenv("STRANSFER_VGG_WEIGHTS", raising=False)
    return home


def gradient_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A small RGB picture with structure (gradients + a square + noise), so features are not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / max(width - 1, 1)
    g = y / max(height - 1, 1)
    b = ((x // 4 + y // 4) % 2).astype(np.float32) * 0.5
    arr = np.stack([r, g, b], axis=2)
    arr[height // 4: height // 2, width // 4: width // 2] = [0.9, 0.1, 0.2]
    arr = np.clip(arr + rng.normal(0, 0.05, arr.shape), 0, 1)
    return Image.fromarray((arr * 255).astype(np.uint8), "RGB")


@pytest.fixture
def make_image(tmp_path: Path):
    """make_image("a.png", 40, 30) -> path of a freshly written structured image."""

    def make(name: str, width: int = 48, height: int = 32, seed: int = 0, **save_options) -> Path:
        path = tmp_path / name
        gradient_image(width, height, seed).save(path, **save_options)
        return path

    return make


@pytest.fixture(scope="session")
def random_vgg16() -> VGGFeatures:
    torch.manual_seed(0)
    return VGGFeatures("vgg16")


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory: pytest.TempPathFactory, random_vgg16: VGGFeatures) -> Path:
    """A features-only VGG16 state dict with random weights, in the cache's own format."""
    path = tmp_path_factory.mktemp("weights") / "vgg16-random.pth"
    torch.save({k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}, path)
    return path


@pytest.fixture
def tiny_johnson(isolated_home: Path) -> Path:
    """A tiny random Johnson network installed as NAME 'tiny' in $STRANSFER_HOME/models."""
    arch = JohnsonArch(width=4, residual_blocks=1)
    torch.manual_seed(0)
    path = isolated_home / "models" / "tiny.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    weights.save_model(path, "johnson", TransformerNet(arch).state_dict(), arch=dataclasses.asdict(arch),
                       style="tiny", style_image="tiny.jpg", backbone="vgg16", train_config={}, steps=1, record={})
    return path


@pytest.fixture
def tiny_run(make_image, random_weights_file) -> list:
    """Arguments for a 32 px, 3-iteration Gatys run on a random-weight backbone."""
    style = make_image("style.png", 40, 40, seed=7)
    return ["-s", style, "--size", "32", "--iterations", "3", "--vgg-weights", random_weights_file,
            "--device", "cpu"]


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder nobody can write to. Root ignores permission bits, so as root it is a read-only tmpfs mount."""
    import os
    import subprocess

    path = tmp_path / "readonly"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.fail("running as root and cannot mount a read-only tmpfs to test a read-only folder")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def log_losses(run: Path, key: str = "total") -> dict[int, float]:
    """Each logged step's total loss in a run folder (or the loss logged as `key`, e.g. a critic's)."""
    import json

    return {r["step"]: r[key] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())}


def run_in_process(*args: object) -> None:
    """`stransfer ARGS` in this process, which must succeed; the process keeps its own thread count. (A run
    here skips the seconds a fresh process spends importing torch.)"""
    threads = torch.get_num_threads()
    try:
        code = exit_code(*args)
    finally:
        torch.set_num_threads(threads)
    assert code == 0, args


def assert_kill_and_resume_continue_the_curve(tmp_path: Path, train_args: list[str], steps: int, vgg: Path,
                                              kill_after: int = 10, keys: tuple[str, ...] = ("total",)) -> None:
    """`stransfer train ARGS --steps STEPS` run whole, and again in a process killed with SIGKILL past step
    `kill_after`, then resumed: the resumed run's losses equal the whole run's, step for step, and only it writes
    its model. `keys`: the logged losses compared (a task with a critic adds the critic's, so both networks'
    curves must continue). Only the killed run needs a process of its own."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", *map(str, train_args), "--steps", str(steps)]
    whole = tmp_path / "whole"
    run_in_process(*args, "--run-dir", whole, "-o", tmp_path / "whole.pth")
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "stransfer", *args, "--run-dir", str(cut), "-o",
                             str(tmp_path / "cut.pth")], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (cut / "log.jsonl").exists() and max(log_losses(cut), default=0) >= kill_after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(log_losses(cut)) < steps and not (tmp_path / "cut.pth").exists()
    run_in_process("train", train_args[0], "--resume", cut, "--threads", "1", "--vgg-weights", vgg)
    assert sorted(log_losses(cut)) == list(range(1, steps + 1))  # steps past the checkpoint were dropped, then redone
    for key in keys:
        resumed, reference = log_losses(cut, key), log_losses(whole, key)
        for step in range(1, steps + 1):
            assert resumed[step] == pytest.approx(reference[step], rel=1e-5), (key, step)
    assert (tmp_path / "cut.pth").exists()
