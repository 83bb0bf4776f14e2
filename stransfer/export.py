"""Export a trained Johnson network for use outside stransfer: TorchScript, or ONNX where `onnx` is installed."""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from stransfer.engines import pad_to_multiple
from stransfer.engines.johnson import InstanceNorm, TransformerNet, load_transformer, style_code
from stransfer.errors import OutputError, UsageError
from stransfer.fileio import atomic_write
from stransfer.weights import find_model

FORMATS = ("torchscript", "onnx")
ONNX_PACKAGES = ("onnx", "onnxscript")  # the `onnx` extra: torch's ONNX exporter needs both


def plain_copy(net: TransformerNet) -> nn.Module:
    """A one-style network with stock InstanceNorm2d layers (the style tables and tiling hooks of ours are not
    scriptable), computing what `net` computes."""
    if net.styles != 1:
        raise UsageError(f"the network holds {net.styles} styles: bake one first (TransformerNet.baked)")
    out = PlainNet(copy.deepcopy(net.net))
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, InstanceNorm):
                plain = nn.InstanceNorm2d(child.num_features, affine=True)
                plain.load_state_dict({"weight": child.weight[0], "bias": child.bias[0]})
                setattr(module, name, plain)
    return out.eval().requires_grad_(False)


class PlainNet(nn.Module):
    """TransformerNet's pass for one style, without the style mixing TorchScript cannot compile."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.net(pad_to_multiple(x, 4, minimum=16))[..., :h, :w]


def export_model(model: str, output: Path | None, fmt: str, overwrite: bool = False, styles: Sequence[str] = (),
                 style_blend: Sequence[float] | None = None) -> Path:
    """Export a Johnson model file (NAME or path). A model holding several styles is exported with one style or
    a blend of several baked in (`styles` by name, weighted by `style_blend`), as `-s` picks them for stylize;
    the default file name then carries the styles."""
    from stransfer.api import parse_blend

    net, payload = load_transformer(find_model(model))
    code = style_code(payload["styles"], list(styles), parse_blend(style_blend), model)
    suffix = f"_{'+'.join(styles)}" if styles and len(payload["styles"]) > 1 else ""
    target = output or Path(f"{Path(model).stem}{suffix}.{'pt' if fmt == 'torchscript' else 'onnx'}")
    return export(net.baked(code), target, fmt, overwrite)


def export(net: TransformerNet, path: Path, fmt: str, overwrite: bool = False) -> Path:
    """Write a one-style network (TransformerNet.baked makes one of a model holding several) as `fmt`."""
    if fmt not in FORMATS:
        raise UsageError(f"`format` must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass `overwrite` to replace it)")
    model = plain_copy(net)
    if fmt == "torchscript":
        with warnings.catch_warnings(), atomic_write(path) as f:
            warnings.simplefilter("ignore", FutureWarning)  # recent torch calls TorchScript deprecated; it runs
            torch.jit.save(torch.jit.script(model), f)
        return path
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"`format` onnx needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}: "
                         "pip install 'stransfer[onnx]'")
    import onnx

    example = torch.rand(1, 3, 256, 256)
    with tempfile.TemporaryDirectory() as staging, warnings.catch_warnings():
        # torch's dynamo exporter converts dynamic_axes itself and warns that it might not; it does here.
        warnings.filterwarnings("ignore", message=".*dynamic_axes.*")
        staged = Path(staging) / "model.onnx"
        # A path, not a file object: the dynamo exporter (torch's default since 2.9) takes only paths, and
        # writes the weights beside the graph; onnx.load joins them into the one file we ship.
        torch.onnx.export(model, (example,), staged, input_names=["image"], output_names=["stylized"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "stylized": {0: "batch", 2: "height", 3: "width"}}, verbose=False)
        data = onnx.load(staged).SerializeToString()
    with atomic_write(path) as f:
        f.write(data)
    return path
