"""Export a trained Johnson network for use outside stransfer: TorchScript, or ONNX where `onnx` is installed."""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from stransfer.engines.johnson import InstanceNorm, TransformerNet
from stransfer.errors import OutputError, UsageError
from stransfer.fileio import atomic_write

FORMATS = ("torchscript", "onnx")
ONNX_PACKAGES = ("onnx", "onnxscript")  # the `onnx` extra: torch's ONNX exporter needs both


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
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--format onnx needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}: "
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
