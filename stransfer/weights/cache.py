"""stransfer's per-user folder and the verified backbone cache in it: fetched once, hash-checked on every use."""

from __future__ import annotations

import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stransfer.errors import WeightsError
from stransfer.events import EventCallback, Note, SourceFailed, ignore
from stransfer.fileio import atomic_write
from stransfer.weights.download import SourceUnavailable, network_timeout
from stransfer.weights.hashes import sha256_file, tensor_digest
from stransfer.weights.sources import SOURCES, load_features_file


def stransfer_home() -> Path:
    """$STRANSFER_HOME, else the platform's per-user cache folder."""
    env = os.environ.get("STRANSFER_HOME")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stransfer"


def cache_path(arch: str) -> Path:
    return stransfer_home() / f"{arch}-features.pth"


def _record_path(arch: str) -> Path:
    return stransfer_home() / f"{arch}-features.json"


@dataclass(frozen=True)
class CacheEntry:
    arch: str
    path: Path
    source: str
    size: int
    verified: bool


def cache_entry(arch: str) -> CacheEntry | None:
    """The cached features of `arch`, checked against the sha256 recorded when they were written."""
    path, record_path = cache_path(arch), _record_path(arch)
    if not path.exists():
        return None
    try:
        record = json.loads(record_path.read_text())
        verified = record.get("sha256") == sha256_file(path)
        source = str(record.get("source", "unknown"))
    except (OSError, ValueError, AttributeError):
        verified, source = False, "unknown"
    return CacheEntry(arch, path, source, path.stat().st_size, verified)


def _write_cache(arch: str, state: Mapping[str, torch.Tensor], source: str) -> Path:
    path = cache_path(arch)
    with atomic_write(path) as f:
        torch.save(dict(state), f)
    record = {"arch": arch, "source": source, "sha256": sha256_file(path), "tensor_digest": tensor_digest(state),
              "format": "torchvision features state dict, float32"}
    with atomic_write(_record_path(arch), "w") as f:
        json.dump(record, f, indent=2)
    return path


@dataclass(frozen=True)
class FetchResult:
    path: Path
    source: str
    already_cached: bool


def fetch(arch: str = "vgg16", force: bool = False, on_event: EventCallback = ignore,
          sources: list[Any] | None = None) -> FetchResult:
    """Make sure verified features of `arch` are in the cache, trying each source in order."""
    if arch not in SOURCES:
        raise WeightsError(f"unknown backbone '{arch}' (known: {', '.join(SOURCES)})")
    entry = cache_entry(arch)
    if entry and entry.verified and not force:
        return FetchResult(entry.path, entry.source, already_cached=True)
    if entry and not entry.verified:
        on_event(Note(f"cached {arch} weights at {entry.path} fail verification; fetching them again"))
    timeout = network_timeout()
    failures = []
    home = stransfer_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsError(f"cannot create the weights cache {home}: {e.strerror or e}") from None
    for source in sources if sources is not None else SOURCES[arch]:
        with tempfile.TemporaryDirectory(dir=home, prefix=".fetch-") as workdir:
            try:
                state = source.fetch(Path(workdir), arch, on_event, timeout)
            except SourceUnavailable as e:
                failures.append(f"{source.label}: {e}")
                on_event(SourceFailed(source.label, str(e)))
                continue
            except (OSError, tarfile.TarError, EOFError) as e:  # disk full, damaged archive
                failures.append(f"{source.label}: {type(e).__name__}: {e}")
                on_event(SourceFailed(source.label, str(e)))
                continue
        try:
            path = _write_cache(arch, state, source.label)
        except OSError as e:
            raise WeightsError(f"cannot write the weights cache {cache_path(arch)}: {e.strerror or e}") from None
        return FetchResult(path, source.label, already_cached=False)
    raise WeightsError(f"could not fetch {arch} weights; tried " + "; ".join(failures))


def resolve(arch: str = "vgg16", explicit: Path | str | None = None,
            on_event: EventCallback = ignore) -> tuple[dict[str, torch.Tensor], str]:
    """Backbone features for a run: --vgg-weights, else $STRANSFER_VGG_WEIGHTS, else the cache, else fetch."""
    given = explicit or os.environ.get("STRANSFER_VGG_WEIGHTS")
    if given:
        path = Path(given).expanduser()
        return load_features_file(path, arch), str(path)
    result = fetch(arch, on_event=on_event)
    return load_features_file(result.path, arch), f"{result.path} (from {result.source})"
