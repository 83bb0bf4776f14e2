"""What the server offers, read once at start: the models `stransfer models` lists and the styles they were trained
on, with a thumbnail where the style's image ships (examples/). Requests name models and styles from here only,
never a path, so no request makes the server read a file of its choosing."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from stransfer import images, weights
from stransfer.errors import StransferError
from stransfer.weights.models import SOURCE_TREE

THUMBNAIL_SIDE = 160  # CSS pixels in the page's style grid are 80: sharp on a 2x screen


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    """A Pillow image as the bytes of a file (PNG keeps alpha; JPEG for thumbnails)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {"compress_level": 3}))
    return buffer.getvalue()


@dataclass(frozen=True)
class Model:
    name: str
    engine: str
    styles: tuple[str, ...]  # the styles a Johnson model holds, by name; an AdaIN decoder holds none


@dataclass
class Style:
    """A style by name: the models trained on it and, where it ships, its image (for engines that take images)."""

    name: str
    image: Path | None
    models: list[str] = field(default_factory=list)
    thumbnail: bytes | None = None


def _model_styles(payload: dict) -> list[tuple[str, str]]:
    """(style name, its image's file name) for each style a model file holds."""
    names = payload.get("styles") or ([payload["style"]] if payload.get("style") else [])
    files = payload.get("style_images") or ([payload["style_image"]] if payload.get("style_image") else [])
    return [(str(name), str(files[i]) if i < len(files) else "") for i, name in enumerate(names)]


class Catalogue:
    """The readable models in `weights.model_dirs()` and the styles named in them; unreadable files are left out."""

    def __init__(self) -> None:
        self.models: dict[str, Model] = {}
        self.styles: dict[str, Style] = {}
        self._images: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        for folder in weights.model_dirs():
            for path in sorted(folder.glob("*.pth")) if folder.is_dir() else []:
                self._add(path)

    def _add(self, path: Path) -> None:
        if path.stem in self.models:  # the shipped folder comes first, as for --model NAME
            return
        try:
            payload = weights.load_model(path, None)
        except StransferError:
            return
        held = _model_styles(payload)
        self.models[path.stem] = Model(path.stem, str(payload.get("engine")), tuple(name for name, _ in held))
        for name, file in held:
            example = SOURCE_TREE / "examples" / Path(file).name if file else None
            style = self.styles.setdefault(name, Style(name, None))
            style.models.append(path.stem)
            if style.image is None and example is not None and example.is_file():
                style.image = example
                style.thumbnail = self._thumbnail(example)

    @staticmethod
    def _thumbnail(path: Path) -> bytes | None:
        try:
            rgb = images.resize_long_side(images.load_image(path).rgb, THUMBNAIL_SIDE)
        except StransferError:
            return None
        return encode(images.to_pil(rgb), "JPEG")

    def style_image(self, name: str) -> torch.Tensor:
        """A shipped style's image as RGB (1, 3, H, W), read on first use and kept."""
        with self._lock:
            if name not in self._images:
                path = self.styles[name].image
                assert path is not None, name
                self._images[name] = images.load_image(path).rgb
            return self._images[name]

    def describe(self) -> dict:
        return {
            "models": [{"name": m.name, "engine": m.engine, "styles": list(m.styles)} for m in self.models.values()],
            "styles": [{"name": s.name, "image": s.image is not None, "models": s.models,
                        "thumbnail": f"/thumbnails/{s.name}.jpg" if s.thumbnail else None}
                       for s in self.styles.values()],
        }
