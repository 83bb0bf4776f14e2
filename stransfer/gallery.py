"""Contact sheets: rows of content images, a column group per style, one captioned cell per engine or setting."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from stransfer.api import Stylizer
from stransfer.config import from_text
from stransfer.device import Runtime
from stransfer.drawing import BACKGROUND, INK, MUTED, font
from stransfer.engines import ENGINES
from stransfer.errors import UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.images import fit_long_side, resize, to_pil



@dataclass(frozen=True)
class Cell:
    image: torch.Tensor | None  # None: nothing to show (e.g. no trained model for this style)
    caption: str


def _thumbnail(image: torch.Tensor, side: int) -> Image.Image:
    h, w = fit_long_side(image.shape[-2], image.shape[-1], side)
    return to_pil(resize(image.float(), (h, w)))


def sheet(contents: list[tuple[str, torch.Tensor]], styles: list[tuple[str, torch.Tensor]],
          cells: list[list[list[Cell]]], cell: int = 256, title: str = "") -> Image.Image:
    """cells[row][style][k]: the k-th result for content `row` and style `style`. Thumbnails of the contents
    head the rows and of the styles the column groups; every cell is captioned."""
    per_style = max((len(group) for row in cells for group in row), default=1)
    gap, caption_h, header_font, caption_font = 8, 22, font(16), font(13)
    title_h = 30 if title else 0
    header_h = cell + caption_h
    width = cell + gap + len(styles) * (per_style * (cell + gap) + gap)
    height = title_h + header_h + gap + len(contents) * (cell + caption_h + gap)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    def paste_centred(img: Image.Image, x: int, y: int, w: int, h: int) -> None:
        canvas.paste(img, (x + (w - img.width) // 2, y + (h - img.height) // 2))

    if title:
        draw.text((gap, 6), title, fill=INK, font=header_font)
    top = title_h
    for s, (name, image) in enumerate(styles):
        x = cell + gap + s * (per_style * (cell + gap) + gap)
        group_w = per_style * (cell + gap) - gap
        paste_centred(_thumbnail(image, cell), x, top, group_w, cell)
        draw.text((x, top + cell + 3), f"style: {name}", fill=INK, font=header_font)
    for r, (name, image) in enumerate(contents):
        y = title_h + header_h + gap + r * (cell + caption_h + gap)
        paste_centred(_thumbnail(image, cell), 0, y, cell, cell)
        draw.text((2, y + cell + 3), name, fill=INK, font=caption_font)
        for s, group in enumerate(cells[r]):
            x0 = cell + gap + s * (per_style * (cell + gap) + gap)
            for k, item in enumerate(group):
                x = x0 + k * (cell + gap)
                if item.image is None:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=MUTED)
                else:
                    paste_centred(_thumbnail(item.image, cell), x, y, cell, cell)
                draw.text((x + 2, y + cell + 3), item.caption, fill=INK if item.image is not None else MUTED,
                          font=caption_font)
    return canvas


def settings(methods: str, sweep: str | None) -> list[tuple[str, dict[str, Any]]]:
    """--methods gatys,adain -> one (engine, {}) per cell; --sweep alpha=0.25,1 -> one (engine, setting) each, the
    values read as the setting's type."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        if m not in ENGINES:
            raise UsageError(f"--methods: unknown engine '{m}' (known: {', '.join(ENGINES)})")
    if sweep is None:
        return [(m, {}) for m in names]
    key, _, values = sweep.partition("=")
    if len(names) != 1 or not values:
        raise UsageError("--sweep KEY=V1,V2 needs exactly one engine in --methods")
    key = key.strip()
    return [(names[0], {key: from_text(ENGINES[names[0]].config_type, key, v)}) for v in values.split(",")]


def run(contents: list[tuple[str, torch.Tensor]], styles: list[tuple[str, torch.Tensor]],
        cell_settings: list[tuple[str, dict[str, Any]]], runtime: Runtime, vgg_weights: Path | None = None,
        on_event: EventCallback = ignore) -> list[list[list[Cell]]]:
    """Every content through every (engine, setting) per style, timed; an engine whose trained model for a
    style is missing (johnson uses the model named after the style) gets an empty, captioned cell."""
    cells: list[list[list[Cell]]] = [[[] for _ in styles] for _ in contents]
    for column, (style_name, style_rgb) in enumerate(styles):
        for method, overrides in cell_settings:
            label = method + "".join(f" {k} {v}" for k, v in overrides.items())
            own_style = ENGINES[method].style_input in ("images", "either")
            try:
                stylizer = Stylizer(method, style_rgb if own_style else None, runtime=runtime, vgg_weights=vgg_weights,
                                    on_event=on_event, **({} if own_style else {"model": style_name}), **overrides)
            except WeightsError:
                for row in cells:
                    row[column].append(Cell(None, f"{label}: no model"))
                continue
            for row, (_, content_rgb) in zip(cells, contents):
                start = time.perf_counter()
                out = stylizer.stylize_tensor(content_rgb, on_event)
                row[column].append(Cell(out, f"{label} · {time.perf_counter() - start:.1f} s"))
    return cells
