"""Johnson network speed: ms per image at 512, 1024 and 2048 px (fp32, bf16) for the shipped architecture and
the paper's original width, and training steps per second.

    python benchmarks/johnson_speed.py [--device auto] [--repeats 3] [--train-steps 5]

Weights do not change the speed, so random-weight networks of each architecture are timed; the training step
uses the real VGG16 loss network (fetched into the cache on first use) and synthetic crops. About 3 minutes on
2 AVX2-only cores.
"""

from __future__ import annotations

import dataclasses
import platform

import torch

from stransfer import weights
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from stransfer.engines.johnson import JohnsonArch, TransformerNet
from stransfer.train.johnson import JohnsonTrainConfig
from stransfer.train.loop import place_loss_network
from multistyle_speed import step_ms
from timing import ms_per_call, speed_options

SHIPPED = JohnsonArch(width=JohnsonTrainConfig().width, residual_blocks=JohnsonTrainConfig().residual_blocks)
PAPER = JohnsonArch(width=32, residual_blocks=5)


def ms_per_image(net: TransformerNet, size: int, precision: str, device: str, repeats: int) -> float:
    runtime = make_runtime(device, precision)
    net = net.to(runtime.device).eval()
    x = torch.rand(1, 3, size, size, device=runtime.device)

    def run() -> None:
        with torch.no_grad(), runtime.autocast():
            net(x).float().clamp(0, 1)

    return ms_per_call(run, runtime.device, repeats)


def train_steps_per_second(arch: JohnsonArch, precision: str, device: str, steps: int) -> float:
    """The training task's own loss and an Adam step, on synthetic crops and a synthetic style."""
    runtime = make_runtime(device, precision, seed=0)
    cfg = dataclasses.replace(JohnsonTrainConfig(), width=arch.width, residual_blocks=arch.residual_blocks)
    backbone = VGGFeatures("vgg16", deepest="relu4_3")
    backbone.load_weights(weights.resolve("vgg16")[0])
    return 1000 / step_ms(1, 0, runtime, place_loss_network(backbone, runtime), steps, cfg)


def main() -> None:
    args, device, precisions = speed_options(__doc__)
    print(f"# johnson speed: device {device}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"torch {torch.__version__}")
    print("| network | size | " + " | ".join(f"{p} ms/image" for p in precisions) + " |")
    print("|---|---|" + "---|" * len(precisions))
    for label, arch in (("shipped", SHIPPED), ("paper", PAPER)):
        torch.manual_seed(0)
        net = TransformerNet(arch)
        name = f"{label} (width {arch.width}, {arch.residual_blocks} blocks)"
        for size in args.sizes:
            cells = [f"{ms_per_image(net, size, p, args.device, args.repeats):.0f}" for p in precisions]
            print(f"| {name} | {size} | " + " | ".join(cells) + " |", flush=True)
    cfg = JohnsonTrainConfig()
    print(f"\ntraining (batch {cfg.batch_size} of {cfg.image_size} px crops, VGG16 loss network):")
    print("| network | " + " | ".join(f"{p} steps/s" for p in precisions) + " |")
    print("|---|" + "---|" * len(precisions))
    for label, arch in (("shipped", SHIPPED), ("paper", PAPER)):
        cells = [f"{train_steps_per_second(arch, p, args.device, args.train_steps):.2f}" for p in precisions]
        print(f"| {label} (width {arch.width}, {arch.residual_blocks} blocks) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
