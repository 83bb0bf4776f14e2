"""Models that hold several named styles (a multi-style Johnson network, a multi-texture generator): the names a
file holds, and the code that picks or blends them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stransfer.errors import ModelError, UsageError


def model_styles(payload: dict[str, Any], path: Path) -> list[str]:
    """The names of the styles a model file holds, in the order of its norm tables' rows."""
    styles = payload.get("styles")
    if styles is None:  # a one-style file from before multi-style models
        return [str(payload.get("style") or path.stem)]
    if (not isinstance(styles, list) or not styles or not all(isinstance(s, str) and s for s in styles)
            or len(set(styles)) != len(styles)):
        raise ModelError(f"{path}: 'styles' must be a list of distinct style names")
    return styles


def style_code(held: list[str], picked: list[str], weights: list[float] | None, model: str) -> torch.Tensor:
    """Weights over a model's styles (`held`) for styles picked by name, blended by `weights` (normalised;
    equal when None). Nothing picked: the one style of a one-style model."""
    listing = ", ".join(held)
    if not picked:
        if len(held) > 1:
            raise UsageError(f"`model` {model} holds {len(held)} styles: pick one with `style` NAME or blend several "
                             f"with `style` A `style` B [`style_blend` 0.7,0.3] ({listing})")
        picked = held
    if weights is not None and len(weights) != len(picked):
        raise UsageError(f"`style_blend` has {len(weights)} weights for {len(picked)} style{'s' * (len(picked) > 1)}")
    code = torch.zeros(len(held))
    for name, weight in zip(picked, weights or [1 / len(picked)] * len(picked)):
        if name not in held:
            hint = ("; the model takes the names of its styles, not style images"
                    if Path(name).suffix or "/" in name else "")
            raise UsageError(f"`model` {model} holds no style '{name}' (its styles: {listing}){hint}")
        code[held.index(name)] += weight
    return code
