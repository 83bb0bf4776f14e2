from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

from stransfer import weights
from stransfer.device import make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.engines.johnson import JohnsonArch, JohnsonConfig, TransformerNet, UpsampleConv, load_transformer
from stransfer.errors import UsageError, WeightsError


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (5, 9), (64, 2)])
def test_any_input_size_gives_the_same_output_size(size):
    net = TransformerNet(JohnsonArch(width=4, residual_blocks=1)).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, *size)).shape == (1, 3, *size)


def test_architecture_follows_the_paper():
    net = TransformerNet(JohnsonArch(width=8, residual_blocks=3))
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 3 + 3 * 2 + 2
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == 3 + 3 * 2 + 2 + 1
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert sum(isinstance(m, UpsampleConv) for m in net.modules()) == 2
    wide = TransformerNet(JohnsonArch(width=32, residual_blocks=5))
    assert 1.6e6 < sum(p.numel() for p in wide.parameters()) < 1.8e6  # the paper's network


def save_tiny_model(path, arch=JohnsonArch(width=4, residual_blocks=1), engine="johnson"):
    torch.manual_seed(0)
    net = TransformerNet(arch)
    weights.save_model(path, engine, net.state_dict(), arch=dataclasses.asdict(arch), style="tiny",
                       style_image="tiny.jpg", backbone="vgg16", train_config={}, steps=1, record={})
    return net


def test_model_file_round_trip_and_identity_checks(tmp_path):
    path = tmp_path / "tiny.pth"
    net = save_tiny_model(path)
    loaded, payload = load_transformer(path)
    assert payload["style"] == "tiny" and payload["format_version"] == weights.MODEL_FORMAT_VERSION
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))

    other = tmp_path / "other.pth"
    save_tiny_model(other, engine="adain")
    with pytest.raises(WeightsError, match="'adain' engine, not 'johnson'"):
        load_transformer(other)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pth")
    with pytest.raises(WeightsError, match="version 99"):
        load_transformer(tmp_path / "future.pth")
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightsError, match="not a readable model file"):
        load_transformer(tmp_path / "cut.pth")


def test_engine_clamps_and_refuses_style_images(tmp_path):
    path = tmp_path / "tiny.pth"
    save_tiny_model(path)
    spec = ENGINES["johnson"]
    engine = spec.build(JohnsonConfig(model=str(path)), make_runtime("cpu"), EngineInputs())
    out = engine.stylize(torch.rand(1, 3, 30, 41), engine.prepare([]))
    assert out.shape == (1, 3, 30, 41) and 0 <= out.min() and out.max() <= 1
    with pytest.raises(UsageError, match="takes no style image"):
        engine.prepare([torch.rand(1, 3, 8, 8)])


def test_model_names_resolve_in_the_model_folders(isolated_home):
    folder = isolated_home / "models"
    folder.mkdir()
    save_tiny_model(folder / "mine.pth")
    assert weights.find_model("mine") == folder / "mine.pth"
    with pytest.raises(WeightsError, match="no model named 'nope'"):
        weights.find_model("nope")


def test_torchscript_export_matches_pytorch(tmp_path, capsys):
    from conftest import cli

    path = tmp_path / "tiny.pth"
    save_tiny_model(path, JohnsonArch(width=8, residual_blocks=2))
    net, _ = load_transformer(path)
    code, stdout, err = cli(capsys, "export", path, "-o", tmp_path / "tiny.pt")
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # recent torch calls TorchScript deprecated
        scripted = torch.jit.load(tmp_path / "tiny.pt")
    for size in [(64, 64), (37, 53)]:  # any size, padding included
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net(x), atol=1e-4, rtol=0)
    code, _, err = cli(capsys, "export", path, "-o", tmp_path / "tiny.pt")
    assert code == 1 and "--overwrite" in err


def test_onnx_export_needs_onnx_or_matches(tmp_path, capsys):
    """Without the onnx extra: a usage error naming it. With it: a graph that computes what the network does,
    at other sizes and batches than the example it was traced with (run by onnx's reference evaluator)."""
    import importlib.util

    from conftest import cli

    path = tmp_path / "tiny.pth"
    save_tiny_model(path)
    net, _ = load_transformer(path)
    code, stdout, err = cli(capsys, "export", path, "--format", "onnx", "-o", tmp_path / "tiny.onnx")
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript")):
        assert code == 2 and "pip install 'stransfer[onnx]'" in err
        assert not (tmp_path / "tiny.onnx").exists()
        return
    from onnx.reference import ReferenceEvaluator

    assert code == 0, err
    assert stdout.strip() == str(tmp_path / "tiny.onnx") and err == ""
    x = torch.rand(2, 3, 40, 56)
    [got] = ReferenceEvaluator(str(tmp_path / "tiny.onnx")).run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), net(x), atol=1e-4, rtol=0)
