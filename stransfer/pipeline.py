"""One content image through an engine, with the colour handling every engine shares."""

from __future__ import annotations

import torch

from stransfer import color
from stransfer.engines import Engine, Styles
from stransfer.events import EventCallback, ignore


def stylize(engine: Engine, content: torch.Tensor, styles: Styles, preserve_color: str = "none",
            on_event: EventCallback = ignore) -> torch.Tensor:
    """`histogram` recolours the style images to this content's colour statistics before stylising (their
    targets are then this image's alone); `luminance` keeps the stylised luminance and puts the content's
    chroma back afterwards."""
    if preserve_color == "histogram":
        styles = engine.prepare([color.match_color(s, content) for s in styles.images])
    out = engine.stylize(content, styles, on_event)
    if preserve_color == "luminance":
        out = color.keep_luminance(out, content)
    return out
