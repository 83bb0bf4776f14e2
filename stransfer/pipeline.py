"""One content image through an engine, with the colour handling every engine shares."""

from __future__ import annotations

import torch

from stransfer import color
from stransfer.engines import Engine, Guide, Styles
from stransfer.events import EventCallback, ignore


def stylize(engine: Engine, content: torch.Tensor, styles: Styles, preserve_color: str = "none",
            on_event: EventCallback = ignore, guide: Guide | None = None) -> torch.Tensor:
    """`histogram` recolours the style images to this content's colour statistics before stylising (their
    targets are then this image's alone); `luminance` keeps the stylised luminance and puts the content's
    chroma back afterwards. A `guide` (a video frame after the first) goes to an engine that refines."""
    if preserve_color == "histogram":
        styles = engine.prepare([color.match_color(s, content) for s in styles.images])
    if guide is not None:
        out = engine.refine(content, styles, guide, on_event)  # type: ignore[attr-defined]
    else:
        out = engine.stylize(content, styles, on_event)
    if preserve_color == "luminance":
        out = color.keep_luminance(out, content)
    return out
