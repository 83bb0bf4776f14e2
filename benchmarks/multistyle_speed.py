"""Johnson training step cost for one style, several styles in one network, and a style added by its norm
parameters only (--add-style): what a multi-style training run will take, per step, beside a one-style one.

    python benchmarks/multistyle_speed.py [--device auto] [--styles 8] [--steps 5] [--threads N]

The shipped architecture and training config (width 16, 5 blocks, batch 4 of 256 px crops), the real VGG16 loss
network (fetched into the cache on first use), synthetic crops and synthetic style images; the styles of each
batch are chosen as training chooses them (every item its own style, balanced across steps). About 1.5 minutes
on 2 AVX2-only cores.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from stransfer import weights
from stransfer.backbone import VGGFeatures
from stransfer.device import make_runtime
from stransfer.train.data import balanced_choices
from stransfer.train.johnson import JohnsonTask, JohnsonTrainConfig
from stransfer.train.loop import place, place_loss_network
from timing import ms_per_call


def step_ms(styles: int, frozen: int, runtime, backbone: VGGFeatures, steps: int,
            cfg: JohnsonTrainConfig = JohnsonTrainConfig()) -> float:
    """ms per optimiser step of a task training `styles` styles beside `frozen` frozen ones (--add-style)."""
    images = [torch.rand(1, 3, 320, 400, generator=torch.Generator().manual_seed(i)) for i in range(styles)]
    names = [f"frozen{i}" for i in range(frozen)]
    task = JohnsonTask(cfg, runtime, backbone, images, [Path(f"style{i}.jpg") for i in range(styles)], [], [],
                       frozen=(names, [f"{n}.jpg" for n in names]) if frozen else None)
    net = place(task.model, runtime).train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=cfg.learning_rate)
    crops = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=runtime.device).to(
        memory_format=torch.channels_last)
    step = [0]

    def one() -> None:
        ids = balanced_choices(styles, cfg.batch_size, cfg.seed, step[0])
        step[0] += 1
        opt.zero_grad(set_to_none=True)
        task.loss((crops, ids), net)[0].backward()
        opt.step()

    return ms_per_call(one, runtime.device, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--styles", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    runtime = make_runtime(args.device, args.precision, args.threads, seed=0)
    backbone = VGGFeatures("vgg16", deepest="relu4_3")
    backbone.load_weights(weights.resolve("vgg16")[0])
    backbone = place_loss_network(backbone, runtime)
    cfg = JohnsonTrainConfig()
    print(f"# johnson training step: device {runtime.device} {runtime.precision}, {torch.get_num_threads()} threads, "
          f"{platform.machine()}, torch {torch.__version__}; width {cfg.width}, {cfg.residual_blocks} blocks, "
          f"batch {cfg.batch_size} of {cfg.image_size} px")
    print("| network | ms/step | steps/s | vs one style |")
    print("|---|---|---|---|")
    rows = [("one style", 1, 0), (f"{args.styles} styles, one network", args.styles, 0),
            (f"--add-style: 1 new beside {args.styles} frozen", 1, args.styles)]
    base = None
    for label, styles, frozen in rows:
        ms = step_ms(styles, frozen, runtime, backbone, args.steps)
        base = base or ms
        print(f"| {label} | {ms:.0f} | {1000 / ms:.3f} | {ms / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
