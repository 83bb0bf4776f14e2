"""Digests that identify weights: of a file's bytes, and of the tensors themselves whatever file holds them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch

_READ_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_READ_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and float32 bytes: the same weights give the same digest whatever the file."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to(torch.float32).contiguous().cpu()
        h.update(f"{key}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()
