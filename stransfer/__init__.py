"""stransfer: neural style transfer with Gatys, Johnson and AdaIN engines on one VGG backbone.

The Python API is `stylize`, `Stylizer` and `texture` (see stransfer.api); the command line is `stransfer`."""

__version__ = "0.1.0"

from stransfer.api import Stylizer, stylize, texture  # noqa: E402

__all__ = ["Stylizer", "stylize", "texture", "__version__"]
