"""AdaIN speed: ms per image at 512, 1024 and 2048 px (fp32, bf16), style encoding timed separately, and
training steps per second.

    python benchmarks/adain_speed.py [--device auto] [--repeats 3] [--train-steps 5]

Uses the real VGG16 encoder (fetched into the cache on first use) and a random-weight decoder: weights do not
change the speed. Alpha 1 is the paper's path; any alpha below 1 also carries the content skips, so it is timed
at 0.5 too. About 10 minutes on 2 AVX2-only cores, most of it the 2048 px rows.
"""

from __future__ import annotations

import platform

import torch

from stransfer import weights
from stransfer.device import make_runtime
from stransfer.engines.adain import AdaIN
from stransfer.engines.decoder import Decoder, encoder_from
from stransfer.train.adain import AdainTask, AdainTrainConfig
from stransfer.train.loop import place, place_loss_network
from timing import ms_per_call, speed_options


def main() -> None:
    args, device, precisions = speed_options(__doc__)
    state = weights.resolve("vgg16")[0]
    torch.manual_seed(0)
    decoder = Decoder("vgg16").eval().requires_grad_(False)  # frozen, as a loaded decoder is
    print(f"# adain speed: device {device}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"torch {torch.__version__}")
    print("| size | alpha | " + " | ".join(f"{p} ms/image (style encoding) " for p in precisions) + " |")
    print("|---|---|" + "---|" * len(precisions))
    for size in args.sizes:
        for alpha in (1.0, 0.5):
            cells = []
            for precision in precisions:
                runtime = make_runtime(args.device, precision)
                style = torch.rand(1, 3, size, size)
                engine = AdaIN(encoder_from("vgg16", state), decoder, runtime, alpha=alpha)
                content, styles = torch.rand(1, 3, size, size), engine.prepare([style])
                style_ms = ms_per_call(lambda: engine.style_targets(engine.prepare([style]), size), runtime.device,
                                       args.repeats)
                engine.style_targets(styles, size)
                image_ms = ms_per_call(lambda: engine.stylize(content, styles), runtime.device, args.repeats)
                cells.append(f"{image_ms:.0f} ({style_ms:.0f})")
            print(f"| {size} | {alpha:g} | " + " | ".join(cells) + " |", flush=True)

    cfg = AdainTrainConfig()
    print(f"\ntraining (batch {cfg.batch_size} pairs of {cfg.crop_size} px crops):")
    print("| " + " | ".join(f"{p} steps/s" for p in precisions) + " |")
    print("|" + "---|" * len(precisions))
    cells = []
    for precision in precisions:
        runtime = make_runtime(args.device, precision, seed=0)
        task = AdainTask(cfg, runtime, place_loss_network(encoder_from("vgg16", state), runtime), [], [], [], [])
        place(task.model, runtime)
        opt = torch.optim.Adam(task.model.parameters(), lr=cfg.learning_rate)
        batch = tuple(torch.rand(count, 3, cfg.crop_size, cfg.crop_size, device=runtime.device).to(
            memory_format=torch.channels_last) for count in (cfg.batch_size, cfg.batch_size - task.identity_items()))

        def step() -> None:
            opt.zero_grad()
            task.loss(batch, task.model)[0].backward()
            opt.step()

        cells.append(f"{1000 / ms_per_call(step, runtime.device, args.train_steps):.2f}")
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
