"""Training images: folder listing, a fixed held-out split, and batches that depend only on (seed, step)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from stransfer.errors import InputError, UsageError
from stransfer.images import load_image, resize, resize_long_side

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
HELD_OUT_EVERY = 20  # one image in 20 never trains: previews and evaluation come from these


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"{folder}: no images found")
    return files


def is_held_out(path: Path) -> bool:
    """A fixed split by file name, so it survives resumes, machines and added files."""
    return zlib.crc32(path.name.encode()) % HELD_OUT_EVERY == 0


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    train = [p for p in files if not is_held_out(p)]
    held = [p for p in files if is_held_out(p)]
    if not train:
        raise UsageError("every training image fell in the held-out split; add more images")
    return train, held


def random_crop(image: torch.Tensor, size: int, generator: torch.Generator, max_zoom: float = 1.25) -> torch.Tensor:
    """Resize so the short side is size x U(1, max_zoom), then crop a size x size square at random."""
    h, w = image.shape[-2:]
    zoom = 1.0 + (max_zoom - 1.0) * torch.rand((), generator=generator).item()
    scale = size * zoom / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    image = F.interpolate(image, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top = int(torch.randint(0, nh - size + 1, (), generator=generator))
    left = int(torch.randint(0, nw - size + 1, (), generator=generator))
    return image[..., top: top + size, left: left + size].clamp(0, 1)


class CropSampler:
    """Batch number `step` is a pure function of (seed, step): a resumed run sees exactly the batches the
    uninterrupted run would have, with no sampler state to save. Ranks of a distributed run get disjoint
    streams by offsetting the seed.

    Each image is decoded once and kept in memory as 8-bit pixels, shrunk to the largest size a crop can
    need: decoding every crop's JPEG each step would cost a large share of the step."""

    MAX_ZOOM = 1.25

    def __init__(self, files: list[Path], size: int, seed: int, rank: int = 0) -> None:
        self.files, self.size, self.seed, self.rank = files, size, seed, rank
        self.bad: set[Path] = set()
        self.cache: dict[Path, torch.Tensor] = {}

    def _load(self, path: Path) -> torch.Tensor:
        if path not in self.cache:
            rgb = load_image(path).rgb
            short = min(rgb.shape[-2:])
            keep = math.ceil(self.size * self.MAX_ZOOM)
            if short > keep:
                rgb = resize(rgb, (round(rgb.shape[-2] * keep / short), round(rgb.shape[-1] * keep / short)))
            self.cache[path] = rgb.mul(255).round().to(torch.uint8)
        return self.cache[path].float() / 255

    def batch(self, step: int, batch_size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 7919 + self.rank * 104_729)
        crops = []
        while len(crops) < batch_size:
            path = self.files[int(torch.randint(0, len(self.files), (), generator=g))]
            if path in self.bad:
                continue
            try:
                crops.append(random_crop(self._load(path), self.size, g, self.MAX_ZOOM))
            except InputError:
                self.bad.add(path)  # an unreadable training file is skipped, not fatal
                if len(self.bad) == len(self.files):
                    raise UsageError("no training image could be read") from None
        return torch.cat(crops)


def load_previews(files: list[Path], long_side: int, count: int = 4) -> list[torch.Tensor]:
    """The first `count` readable images of `files`, resized: the fixed inputs of every preview sheet."""
    previews = []
    for path in files:
        try:
            previews.append(resize_long_side(load_image(path).rgb, long_side))
        except InputError:
            continue
        if len(previews) == count:
            break
    return previews


def balanced_choices(count: int, batch_size: int, seed: int, step: int, rank: int = 0) -> list[int]:
    """Which of `count` choices (styles) each item of batch `step` takes: a pure function of (seed, step, rank),
    like the batches, in which every `count` items in a row, counted across batches, hold each choice once, in an
    order shuffled afresh for each such round."""
    choices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        round_, index = divmod(position, count)
        g = torch.Generator().manual_seed(seed * 1_000_003 + round_ * 7919 + rank * 104_729 + 1)
        choices.append(int(torch.randperm(count, generator=g)[index]))
    return choices
