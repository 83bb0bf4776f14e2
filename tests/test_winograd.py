import pytest
import torch
from torch import nn

from stransfer import winograd
from stransfer.device import Runtime, make_runtime


def frozen_conv(c_in: int, c_out: int, padding: int, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(c_in, c_out, 3, padding=padding).requires_grad_(False)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_same_convolution_as_torch_at_sizes_that_are_not_whole_tiles(padding, layout):
    conv = frozen_conv(5, 7, padding)
    x = torch.randn(2, 5, 13, 10).contiguous(memory_format=layout)  # 13 and 10 leave partial 4x4 blocks
    y = winograd.WinogradConv2d(conv)(x)
    expected = conv(x)
    assert y.shape == expected.shape
    assert relative_error(y, expected) < 1e-5


def test_the_input_gradient_is_torchs():
    conv = frozen_conv(6, 4, padding=1)
    fast = winograd.WinogradConv2d(conv)
    upstream = torch.randn(1, 4, 11, 9)
    grads = []
    for layer in (conv, fast):
        x = torch.randn(1, 6, 11, 9, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        (layer(x) * upstream).sum().backward()
        grads.append(x.grad)
    assert relative_error(grads[1], grads[0]) < 1e-5


def test_an_image_in_many_chunks_is_the_image_in_one(monkeypatch):
    conv = frozen_conv(3, 3, padding=1)
    x = torch.randn(1, 3, 40, 24)
    whole = winograd.WinogradConv2d(conv)(x)
    monkeypatch.setattr(winograd, "CHUNK_FLOATS", 1)  # one row of tiles at a time: 10 chunks
    chunked = winograd.WinogradConv2d(conv)(x)
    assert relative_error(chunked, whole) < 1e-5  # the same up to the matrix products' rounding
    assert relative_error(chunked, conv(x)) < 1e-5


@pytest.mark.parametrize("padding", [0, 1])
def test_fresh_memory_full_of_nans_never_reaches_the_output(monkeypatch, padding):
    """Uninitialised memory (a reused block) holds anything: every output is written, and whatever the tiles
    read past the image is zero."""
    new_empty = torch.Tensor.new_empty

    def full_of_nans(self: torch.Tensor, *size: int, **kwargs: object) -> torch.Tensor:
        return new_empty(self, *size, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch.Tensor, "new_empty", full_of_nans)
    monkeypatch.setattr(winograd, "CHUNK_FLOATS", 1)  # every chunk has its own top and bottom edges
    conv = frozen_conv(3, 4, padding)
    x = torch.randn(1, 3, 15, 10)
    y = winograd.WinogradConv2d(conv)(x)
    assert not y.isnan().any()
    assert relative_error(y, conv(x)) < 1e-5


def test_a_bf16_region_still_convolves_in_fp32():
    conv = frozen_conv(4, 4, padding=1)
    x = torch.randn(1, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = winograd.WinogradConv2d(conv)(x)
    assert y.dtype == torch.float32
    assert relative_error(y, conv(x)) < 1e-5


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_adopt_converts_the_wide_frozen_3x3_layers_of_a_copy(monkeypatch):
    monkeypatch.setattr(winograd, "min_channels", lambda: 8)
    torch.manual_seed(0)
    net = Net().requires_grad_(False)
    fast = winograd.adopt(net, make_runtime("cpu", "fp32"))
    kinds = [type(m).__name__ for m in fast.body]
    # 3 -> 8 is too narrow and the 1x1 is not 3x3; the zero-padded and the reflection-padded 8 -> 8 convert.
    assert kinds == ["Conv2d", "ReLU", "WinogradConv2d", "ReLU", "ReflectionPad2d", "WinogradConv2d", "Conv2d"]
    assert all(isinstance(m, nn.Conv2d) for m in (net.body[2], net.body[5]))  # the caller's network is untouched
    x = torch.randn(1, 3, 18, 14)
    assert relative_error(fast(x), net(x)) < 1e-5


@pytest.mark.parametrize("runtime", [Runtime(torch.device("cpu"), "bf16"), Runtime(torch.device("meta"))])
def test_adopt_leaves_bf16_and_other_devices_alone(monkeypatch, runtime):
    monkeypatch.setattr(winograd, "min_channels", lambda: 1)
    net = Net().requires_grad_(False)
    assert winograd.adopt(net, runtime) is net


def test_adopt_leaves_trainable_layers_alone(monkeypatch):
    monkeypatch.setattr(winograd, "min_channels", lambda: 1)
    net = Net()  # its weights want gradients, which the fast layer does not give
    assert winograd.adopt(net, make_runtime("cpu", "fp32")) is net


def test_gatys_runs_the_wide_layers_of_vgg16_by_winograd_in_fp32(random_vgg16, monkeypatch):
    from stransfer.engines.gatys import Gatys, GatysConfig

    monkeypatch.setattr(winograd, "min_channels", lambda: 256)
    engine = Gatys(GatysConfig(), make_runtime("cpu", "fp32"), random_vgg16)
    kinds = [type(m).__name__ for m in engine.backbone.layers if not isinstance(m, (nn.ReLU, nn.MaxPool2d))]
    # conv1_1 .. conv3_1 have a side under 256 channels; from conv3_2 on every layer converts.
    assert kinds[:5] == ["Conv2d"] * 5 and kinds[5:] == ["WinogradConv2d"] * (len(kinds) - 5)
    assert not any(isinstance(m, winograd.WinogradConv2d) for m in random_vgg16.modules())
    x = torch.rand(1, 3, 40, 40)
    expected = random_vgg16(x, ["relu4_3"])["relu4_3"]
    assert relative_error(engine.backbone(x, ["relu4_3"])["relu4_3"], expected) < 1e-4
