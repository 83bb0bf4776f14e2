"""3x3 convolutions, oneDNN's direct against Winograd F(4x4, 3x3) (stransfer/winograd.py), fp32, on the CPU:
per VGG16 layer shape, then per engine pass.

    python benchmarks/winograd.py [--repeats 3] [--gatys-size 512] [--size 1024] [--channels 64,128,256,512]

Layer rows: one convolution of C channels to C at the side VGG16 gives it for a --gatys-size image, forward
alone and forward + backward to its input (what a Gatys evaluation runs). Pass rows: a Gatys evaluation (VGG16
to relu4_3, Gram and content losses, backward to the pixels) and an AdaIN image at --size (encoder to relu4_1
and the decoder), each with every convolution direct and with the engines' choice (stransfer.winograd.adopt).
Random weights: they do not change the speed. Outputs are compared too. About 2 minutes on 2 AVX2-only cores.

Two settings of stransfer/winograd.py came from it. min_channels: on AVX2 code paths every VGG width gains
(64 channels 1.4x, 512 channels 2.2-2.8x; a Gatys evaluation at 512 px 1.8x, an AdaIN image at 1024 px 1.7x),
while on AVX-512 ones oneDNN's direct kernels keep up at 64 channels (a Gatys evaluation ran 0.88x as fast with
those layers converted, 1.44x without them). CHUNK_FLOATS: 32 MB copies ran no faster than 8 MB ones, and the
README's main job at fp32 peaked 0.3 GB higher with them.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable

import torch
import torch.nn.functional as F

from stransfer import losses, winograd
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from layout import AdainPass
from timing import cpu_name, ms_per_call

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# The side of the first layer of each width in VGG16, relative to the image.
SIDE_DIVISOR = {64: 1, 128: 2, 256: 4, 512: 8}


def layer_pass(conv: torch.nn.Module, x: torch.Tensor, backward: bool) -> Callable[[], None]:
    def run() -> None:
        if backward:
            xx = x.detach().requires_grad_(True)
            conv(xx).sum().backward()
        else:
            with torch.no_grad():
                conv(x)

    return run


def gatys_evaluation(net: VGGFeatures, size: int) -> Callable[[], torch.Tensor]:
    objective = losses.StyleObjective.parse("gram", STYLE_LAYERS)
    gen = torch.Generator().manual_seed(0)
    style, photo = (torch.rand(1, 3, size, size, generator=gen) for _ in range(2))
    with torch.no_grad():
        targets = objective.targets(net(style, objective.taps))
        content = net(photo, ["relu3_3"])

    def run() -> torch.Tensor:
        x = photo.clone().requires_grad_(True)
        feats = net(x.contiguous(memory_format=torch.channels_last), {*STYLE_LAYERS, "relu3_3"})
        (losses.content_loss(feats, content) + objective(feats, targets, None)).backward()
        return x.grad

    return run


def inference(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gatys-size", type=int, default=512)
    parser.add_argument("--size", type=int, default=1024, help="AdaIN image side")
    parser.add_argument("--channels", default="64,128,256,512")
    args = parser.parse_args()
    runtime = make_runtime("cpu", "fp32")
    device = runtime.device
    torch.manual_seed(0)
    print(f"# winograd: {cpu_name()}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"torch {torch.__version__}, fp32\n")
    print("| convolution | direct ms | winograd ms | speed-up | forward + backward: direct ms | winograd ms "
          "| speed-up | max relative difference |")
    print("|---|---|---|---|---|---|---|---|")
    for channels in (int(c) for c in args.channels.split(",")):
        side = args.gatys_size // SIDE_DIVISOR.get(channels, 8)
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).requires_grad_(False)
        fast = winograd.WinogradConv2d(conv)
        x = torch.randn(1, channels, side, side).contiguous(memory_format=torch.channels_last)
        cells = []
        for backward in (False, True):
            direct = ms_per_call(layer_pass(conv, x, backward), device, args.repeats)
            wino = ms_per_call(layer_pass(fast, x, backward), device, args.repeats)
            cells.append(f"{direct:.0f} | {wino:.0f} | {direct / wino:.2f}x")
        with torch.no_grad():
            diff = relative_difference(fast(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
        print(f"| {channels} -> {channels} at {side}x{side} | {' | '.join(cells)} | {diff:.1e} |", flush=True)

    print("\n| pass | all direct ms | engines' choice ms | speed-up | max relative difference |")
    print("|---|---|---|---|---|")
    vgg = VGGFeatures("vgg16", deepest="relu4_3").to(memory_format=torch.channels_last)
    adain_net = AdainPass().requires_grad_(False).to(memory_format=torch.channels_last)  # frozen, as loaded
    image = torch.rand(1, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    cases = [(f"gatys evaluation {args.gatys_size} px", vgg, lambda net: gatys_evaluation(net, args.gatys_size)),
             (f"adain image {args.size} px", adain_net, lambda net: lambda: inference(net, image))]
    for label, net, make in cases:
        direct_run, fast_run = make(net), make(winograd.adopt(net, runtime))  # adopt converts a copy
        direct = ms_per_call(direct_run, device, args.repeats)
        fast = ms_per_call(fast_run, device, args.repeats)
        diff = relative_difference(fast_run(), direct_run())
        print(f"| {label} | {direct:.0f} | {fast:.0f} | {direct / fast:.2f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
