"""One content image through an engine, with the colour handling every engine shares."""

from __future__ import annotations

import torch

from stransfer import color
from stransfer.engines import Engine
from stransfer.events import EventCallback, ignore


def stylize(engine: Engine, content: torch.Tensor, preserve_color: str = "none",
            styles: list[torch.Tensor] | None = None, on_event: EventCallback = ignore) -> torch.Tensor:
    """`histogram` recolours the style images to this content's colour statistics before stylising;
    `luminance` keeps the stylised luminance and puts the content's chroma back afterwards."""
    if preserve_color == "histogram":
        out = engine.stylize(content, on_event, styles=[color.match_color(s, content) for s in styles or []])
    else:
        out = engine.stylize(content, on_event)
    if preserve_color == "luminance":
        out = color.keep_luminance(out, content)
    return out
