"""stransfer: neural style transfer and texture synthesis, every engine on one VGG backbone.

The Python API is `stylize`, `Stylizer`, `texture` and `TextureMaker` (see stransfer.api); the command line is
`stransfer`."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Stylizer", "TextureMaker", "stylize", "texture", "__version__"]


def __getattr__(name: str) -> Any:
    # The API is imported on first use, so a module that needs none of the engines (the training loop, the
    # weights cache) does not load them all.
    if name in __all__:
        from stransfer import api

        return getattr(api, name)
    raise AttributeError(f"module 'stransfer' has no attribute {name!r}")
