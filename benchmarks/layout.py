"""Memory layout per engine: ms per network pass, contiguous (NCHW) against channels-last (NHWC), fp32.

    python benchmarks/layout.py [--device auto] [--repeats 3] [--gatys-size 512] [--size 1024]

Rows: a Gatys evaluation (VGG16 to relu4_3 forward, Gram losses, backward to the pixels), a Johnson image
(shipped architecture) and an AdaIN image (encoder to relu4_1 and the decoder, style encoding apart).
Weights do not change the speed, so the networks carry random weights. The engines use the faster layout.
About 1.5 minutes on 2 AVX2-only cores.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable

import torch

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from stransfer.engines.adain import Decoder
from stransfer.engines.johnson import JohnsonArch, TransformerNet
from stransfer.train.johnson import JohnsonTrainConfig
from timing import cpu_kind, ms_per_call

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def gatys_evaluation(device: torch.device, size: int) -> Callable[[torch.memory_format], Callable[[], None]]:
    net = VGGFeatures("vgg16", deepest="relu4_3").to(device)
    objective = losses.StyleObjective.parse("gram", STYLE_LAYERS)
    with torch.no_grad():
        targets = objective.targets(net(torch.rand(1, 3, size, size, device=device), objective.taps))
        content = net(torch.rand(1, 3, size, size, device=device), ["relu3_3"])
    x = torch.rand(1, 3, size, size, device=device, requires_grad=True)

    def with_layout(layout: torch.memory_format) -> Callable[[], None]:
        net.to(memory_format=layout)

        def run() -> None:
            feats = net(x.contiguous(memory_format=layout), {*STYLE_LAYERS, "relu3_3"})
            (losses.content_loss(feats, content) + objective(feats, targets, None)).backward()

        return run

    return with_layout


def feed_forward(net: torch.nn.Module, device: torch.device,
                 size: int) -> Callable[[torch.memory_format], Callable[[], None]]:
    net = net.to(device).eval()
    x = torch.rand(1, 3, size, size, device=device)

    def with_layout(layout: torch.memory_format) -> Callable[[], None]:
        net.to(memory_format=layout)

        def run() -> None:
            with torch.no_grad():
                net(x.contiguous(memory_format=layout))

        return run

    return with_layout


class AdainPass(torch.nn.Module):
    """Encoder to relu4_1 and the decoder, as one AdaIN image at alpha 1 minus the statistics (negligible)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = VGGFeatures("vgg16", deepest="relu4_1")
        self.decoder = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x, ["relu4_1"])["relu4_1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gatys-size", type=int, default=512)
    parser.add_argument("--size", type=int, default=1024, help="Johnson and AdaIN image side")
    args = parser.parse_args()
    device = make_runtime(args.device).device
    torch.manual_seed(0)
    shipped = JohnsonArch(width=JohnsonTrainConfig().width, residual_blocks=JohnsonTrainConfig().residual_blocks)
    cases = [(f"gatys evaluation {args.gatys_size} px", gatys_evaluation(device, args.gatys_size)),
             (f"johnson image {args.size} px", feed_forward(TransformerNet(shipped), device, args.size)),
             (f"adain image {args.size} px", feed_forward(AdainPass(), device, args.size))]
    print(f"# layout: {device}, {torch.get_num_threads()} threads, {platform.machine()} ({cpu_kind()}), "
          f"torch {torch.__version__}, fp32\n")
    print("| pass | contiguous ms | channels-last ms | speed-up |")
    print("|---|---|---|---|")
    for label, with_layout in cases:
        plain = ms_per_call(with_layout(torch.contiguous_format), device, args.repeats)
        last = ms_per_call(with_layout(torch.channels_last), device, args.repeats)
        print(f"| {label} | {plain:.0f} | {last:.0f} | {plain / last:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
