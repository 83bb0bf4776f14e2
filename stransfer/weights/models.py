"""The project's own model files: where `--model NAME` looks, and how a model is written and read back."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from stransfer.errors import ModelError
from stransfer.fileio import atomic_write, file_problem
from stransfer.weights.cache import stransfer_home
from stransfer.weights.safeload import load_untrusted

MODEL_FORMAT = "stransfer-model"
MODEL_FORMAT_VERSION = 1
# Version 2: a johnson model holding several styles (norm parameters styles x C, a `styles` list). Only such
# files are written as version 2, so every other model stays readable by stransfer from before it.
MULTISTYLE_FORMAT_VERSION = 2
READABLE_VERSIONS = (MODEL_FORMAT_VERSION, MULTISTYLE_FORMAT_VERSION)
# This project's models are a few MB; a file far larger is not what it claims to be.
MAX_MODEL_BYTES = 256 << 20
# The repository root when running from a clone; in an installed wheel it is site-packages, holding neither.
SOURCE_TREE = Path(__file__).resolve().parents[2]


def _shipped_models_dir() -> Path:
    """The models released with stransfer, kept in the repository's top-level weights/. pyproject.toml maps that
    folder onto the package stransfer.shipped, so a wheel or editable install carries them as package data; a
    clone run without installing has no such package and finds weights/ beside its own sources."""
    try:
        # pip installs packages as plain files, so the resource is a real folder.
        return Path(str(resources.files("stransfer.shipped")))
    except ModuleNotFoundError:
        return SOURCE_TREE / "weights"


SHIPPED_MODELS = _shipped_models_dir()


def model_dirs() -> list[Path]:
    """Where `--model NAME` looks: the shipped models, then $STRANSFER_HOME/models (where a user keeps models
    they trained or were given)."""
    return [SHIPPED_MODELS, stransfer_home() / "models"]


def find_model(name_or_path: str | Path) -> Path:
    """A path as given, else NAME.pth in the model folders."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".pth" or path.exists() or len(path.parts) > 1:
        problem = file_problem(path, MAX_MODEL_BYTES)
        if problem:
            raise ModelError(f"{path}: {problem}")
        return path
    for folder in model_dirs():
        candidate = folder / f"{name_or_path}.pth"
        if candidate.exists():  # load_model says what is wrong with it, should it be no model file at all
            return candidate
    known = sorted({p.stem for d in model_dirs() if d.is_dir() for p in d.glob("*.pth")})
    raise ModelError(f"no model named '{name_or_path}' (known: {', '.join(known) or 'none'}; "
                     f"or give a path to a .pth file)")


def style_thumbnail(style_image: str) -> str:
    """Where to look at a model's style: the shipped example image, when its licence let it ship."""
    shipped = SOURCE_TREE / "examples" / Path(style_image).name
    return str(shipped) if shipped.is_file() else f"{Path(style_image).name} (not shipped: licence unknown)"


def save_model(path: Path, engine: str, state_dict: Mapping[str, torch.Tensor],
               format_version: int = MODEL_FORMAT_VERSION, **identity: Any) -> Path:
    """A model file that rebuilds from itself: engine, format version, architecture, config, record."""
    payload = {"format": MODEL_FORMAT, "format_version": format_version, "engine": engine,
               **identity, "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def load_model(path: Path, engine: str | None) -> dict[str, Any]:
    """Read a model file (tensors only, no code); refuse one for another engine (None: any) or format version.
    Every refusal is a ModelError: the --model the user gave cannot be used (exit code 2)."""
    payload = load_untrusted(path, MAX_MODEL_BYTES, ModelError, "model file")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: not a stransfer model file")
    if payload.get("format_version") not in READABLE_VERSIONS:
        raise ModelError(f"{path}: model format version {payload.get('format_version')} is not supported "
                         f"(this stransfer reads versions {' and '.join(map(str, READABLE_VERSIONS))})")
    if engine is not None and payload.get("engine") != engine:
        raise ModelError(f"{path}: is a model for the '{payload.get('engine')}' engine, not '{engine}'")
    return payload
