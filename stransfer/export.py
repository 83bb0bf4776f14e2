"""Export a trained Johnson network for use outside stransfer: TorchScript, or ONNX where `onnx` is installed."""

from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from stransfer.engines.johnson import InstanceNorm, TransformerNet
from stransfer.errors import OutputError, UsageError
from stransfer.fileio import atomic_write

FORMATS = ("torchscript", "onnx")


def plain_copy(net: TransformerNet) -> nn.Module:
    """The network with stock InstanceNorm2d layers (the tiling hooks of ours are not scriptable)."""
    out = copy.deepcopy(net).eval()
    for module in list(out.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, InstanceNorm):
                plain = nn.InstanceNorm2d(child.num_features, affine=True)
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)
    return out.requires_grad_(False)


def export(net: TransformerNet, path: Path, fmt: str, overwrite: bool = False) -> Path:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
    model = plain_copy(net)
    if fmt == "torchscript":
        with warnings.catch_warnings(), atomic_write(path) as f:
            warnings.simplefilter("ignore", FutureWarning)  # recent torch calls TorchScript deprecated; it runs
            torch.jit.save(torch.jit.script(model), f)
        return path
    if importlib.util.find_spec("onnx") is None:
        raise UsageError("--format onnx needs the onnx package: pip install onnx")
    example = torch.rand(1, 3, 256, 256)
    with atomic_write(path) as f:
        torch.onnx.export(model, (example,), f, input_names=["image"], output_names=["stylized"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "stylized": {0: "batch", 2: "height", 3: "width"}})
    return path
