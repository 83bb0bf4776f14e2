"""The styles of a network that holds several by name (multi-style Johnson, multi-texture): which images a run
may give for them, what a run from such a model (--init) keeps of it, and how --add-style trains new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from stransfer.engines.named import model_styles
from stransfer.errors import UsageError

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def check_styles(paths: list[Path], init: dict[str, Any] | None, add_style: bool,
                 style_weight: tuple[float, ...]) -> None:
    """Style names (the images' stems) must be distinct; --add-style's must be new to the --init model; a run
    continuing a model (--init without --add-style) trains as many styles as it holds, row for row; style_weight
    is one number or one per style trained; a style the model holds must be given in its own row."""
    if len(style_weight) not in (1, len(paths)):
        raise UsageError(f"--style-weight has {len(style_weight)} values for {len(paths)} style image(s): give "
                         "one for every style, or one per style image, in their order")
    names = [p.stem for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"two style images named '{twice[0]}': a style's name is its file name, so they must differ")
    if init is None:
        return
    held = init["styles"]
    if add_style:
        clash = [n for n in names if n in held]
        if clash:
            raise UsageError(f"--init {init['path']} already holds style '{clash[0]}' (its styles: {', '.join(held)})")
    elif len(held) != len(names):
        raise UsageError(f"--init {init['path']} holds {len(held)} styles ({', '.join(held)}) and -s gives "
                         f"{len(names)}: continue a model with one -s per style, in its order, or add styles "
                         "with --add-style")
    else:
        # Row i trains toward the i-th image, so a style given out of order would silently retrain another
        # style's row. A name the model does not hold is allowed: a trained network is a good start for a new style.
        for i, n in enumerate(names):
            if n in held and held[i] != n:
                raise UsageError(f"-s gives '{n}' as style {i + 1}, but --init {init['path']} holds it as style "
                                 f"{held.index(n) + 1}: give its styles in its order ({', '.join(held)})")


def styles_of_init(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """The --init model's styles and their images, which --add-style keeps and -s must give row for row."""
    styles = model_styles(payload, path)
    images = payload.get("style_images") or [payload.get("style_image") or name for name in styles]
    return {"styles": styles, "style_images": [str(i) for i in images]}


class NewRows(nn.Module):
    """--add-style for a network whose styles are rows of tables (conditional norms): the trained network, frozen,
    and beside each of its tables `names` (parameter names, one row per style) `count` new rows, the only weights
    that train, so every style it held renders bit for bit as before (Dumoulin et al. 2017: a style costs 2 x C
    parameters per norm). The new rows start from the mean of the trained ones, a style the network already
    renders, rather than from an identity norm. Called as the network is, with the new styles' rows after its own."""

    def __init__(self, base: nn.Module, names: list[str], count: int) -> None:
        super().__init__()
        self.base, self.names = base.requires_grad_(False), names
        params = dict(base.named_parameters())
        self.new = nn.ParameterDict({self._key(name): nn.Parameter(params[name].detach().new_empty(
            count, *params[name].shape[1:])) for name in names})
        self.restart_new()

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")  # ParameterDict keys cannot hold dots

    def restart_new(self) -> None:
        """New rows from the mean of the base's rows again (after the base's weights were loaded)."""
        params = dict(self.base.named_parameters())
        with torch.no_grad():
            for name in self.names:
                new = self.new[self._key(name)]
                new.copy_(params[name].mean(0, keepdim=True).expand_as(new))

    def tables(self) -> dict[str, torch.Tensor]:
        params = dict(self.base.named_parameters())
        return {name: torch.cat([params[name], self.new[self._key(name)]]) for name in self.names}

    def forward(self, *args: Any) -> Any:
        return torch.func.functional_call(self.base, self.tables(), args)

    def merged_into(self, net: ModuleT) -> ModuleT:
        """`net`, a fresh network of the base's kind with room for every style, given the base's weights and all
        the rows: one network holding the base's styles and the new ones."""
        net.load_state_dict({**self.base.state_dict(), **{name: t.detach() for name, t in self.tables().items()}})
        return net


def one_hot_styles(ids: list[int], offset: int, total: int, device: torch.device) -> torch.Tensor | None:
    """Style weights of each item: one-hot rows over a network's `total` styles, the items' `ids` counted from
    `offset` (the styles an --add-style run trains come after the model's own); None for a one-style network,
    which then runs exactly as a network without style tables does."""
    if total == 1:
        return None
    return F.one_hot(torch.tensor(ids) + offset, total).float().to(device)
