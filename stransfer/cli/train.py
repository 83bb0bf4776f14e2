"""`stransfer train johnson|adain`: flags in; stransfer.train checks them, writes the run folder and trains."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stransfer import console, distributed
from stransfer import train as training
from stransfer.cli.options import (ConfigOpt, Device, DeviceOpt, Precision, PrecisionOpt, ThreadsOpt, VggWeightsOpt,
                                   given)
from stransfer.device import make_runtime
from stransfer.errors import UsageError

RunDirOpt = Annotated[Path | None, typer.Option(
    "--run-dir", help="Run folder: checkpoints, log.jsonl, previews (default runs/<task>-<name>).")]
ResumeOpt = Annotated[Path | None, typer.Option(
    "--resume", help="Continue the run in this folder from its last checkpoint; other inputs come from it.")]
StepsOpt = Annotated[int | None, typer.Option(help="Total optimiser steps (on --resume: extend to this).")]
InitOpt = Annotated[str | None, typer.Option(
    "--init", help="Start from this trained model (NAME or .pth): its weights, a fresh optimiser; the new model's "
                   "record keeps the lineage.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Model file to write, e.g. weights/NAME.pth.")]
Float = Annotated[float | None, typer.Option()]
LearningRateOpt = Annotated[float | None, typer.Option(help="Adam learning rate.")]
LrDecayOpt = Annotated[float | None, typer.Option(
    help="Inverse-time decay: lr / (1 + decay * step).")]
CheckpointOpt = Annotated[int | None, typer.Option(help="Steps between checkpoints.")]
PreviewOpt = Annotated[int | None, typer.Option(help="Steps between preview sheets.")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the data order and initial weights.")]


def _train(kind: str, inputs: training.Inputs, flags: dict[str, Any], config: Path | None,
           run_dir: Path | None, resume: Path | None, init: str | None, device: Any, precision: Any,
           threads: int | None, vgg_weights: Path | None, add_style: bool = False) -> None:
    world = distributed.init()
    if resume is not None and init is not None:
        raise UsageError("--init starts a new run; --resume continues one: give one of them")
    if resume is None:
        runtime = {"device": device.value, "precision": make_runtime(device.value, precision.value).precision}
        run_dir = training.start(kind, inputs, given(training.config_type(kind), f"train {kind}", **flags),
                                 config, init, run_dir, runtime, world, add_style)
    else:
        run_dir = resume
    with console.ProgressRenderer() as render:
        result = training.run(run_dir, resume is not None, render, steps=flags["steps"] if resume else None,
                              device=device.value if resume and device.value != "auto" else None,
                              threads=threads, vgg_weights=vgg_weights, world=world)
    world.shutdown()
    if world.is_main:
        console.stdout.print(f"{kind}: {result.steps} steps in {result.seconds / 60:.1f} min; run folder {run_dir}")


def johnson(
    style: Annotated[list[Path] | None, typer.Option(
        "--style", "-s", help="Style image; repeat it for one network holding several styles.")] = None,
    add_style: Annotated[list[Path] | None, typer.Option(
        "--add-style", help="Add this style to the --init model, training only its norm parameters (repeatable).")]
    = None,
    data: Annotated[Path | None, typer.Option(help="Folder of content photos (searched recursively).")] = None,
    out: OutOpt = None, run_dir: RunDirOpt = None, resume: ResumeOpt = None, init: InitOpt = None,
    config: ConfigOpt = None, steps: StepsOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of the square training crops.")] = None,
    style_size: Annotated[int | None, typer.Option(help="Long side of the style image for its Grams.")] = None,
    learning_rate: LearningRateOpt = None, lr_decay: LrDecayOpt = None,
    content_weight: Float = None,
    style_weight: Annotated[str | None, typer.Option(
        help="Style weight: one number, or one per style in the order of -s or --add-style, e.g. 2,4,1.")] = None,
    style_loss: Annotated[str | None, typer.Option(help="Style loss, as for stylize -m gatys.")] = None,
    tv_weight: Float = None,
    width: Annotated[int | None, typer.Option(help="Channels of the first layer (32 in the paper).")] = None,
    residual_blocks: Annotated[int | None, typer.Option(help="Residual blocks (5 in the paper).")] = None,
    checkpoint_every: CheckpointOpt = None, preview_every: PreviewOpt = None, seed: SeedOpt = None,
    device: DeviceOpt = Device["auto"], precision: PrecisionOpt = Precision["auto"], threads: ThreadsOpt = None,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Train a Johnson feed-forward network for one style or several, or add styles to a trained one (resumable;
    torchrun for several processes)."""
    if style and add_style:
        raise UsageError("-s trains a network's styles, --add-style adds styles to the --init model: give one")
    _train("johnson", {"style": style or add_style, "data": data, "out": out}, dict(
        steps=steps, batch_size=batch_size, image_size=image_size, style_size=style_size,
        learning_rate=learning_rate, lr_decay=lr_decay, content_weight=content_weight, style_weight=style_weight,
        style_loss=style_loss, tv_weight=tv_weight, width=width, residual_blocks=residual_blocks,
        checkpoint_every=checkpoint_every, preview_every=preview_every, seed=seed),
        config, run_dir, resume, init, device, precision, threads, vgg_weights, bool(add_style))


def adain(
    content_data: Annotated[Path | None, typer.Option(help="Folder of content photos (searched recursively).")]
    = None,
    style_data: Annotated[Path | None, typer.Option(help="Folder of artworks (searched recursively).")] = None,
    out: OutOpt = None, run_dir: RunDirOpt = None, resume: ResumeOpt = None, init: InitOpt = None,
    config: ConfigOpt = None, steps: StepsOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Content/style pairs per step.")] = None,
    crop_size: Annotated[int | None, typer.Option(help="Side of the square training crops.")] = None,
    learning_rate: LearningRateOpt = None,
    lr_decay: LrDecayOpt = None,
    content_weight: Float = None, style_weight: Float = None,
    style_loss: Annotated[str | None, typer.Option(
        help="Style loss, as for stylize -m gatys (default meanstd, the paper's).")] = None,
    identity_weight: Annotated[float | None, typer.Option(
        help="Weight of rebuilding a quarter of each batch from its own features (alpha 0); 0 turns it off.")]
    = None,
    swap_fraction: Annotated[float | None, typer.Option(
        help="Share of the stylised items trained on style-swap's features instead of AdaIN's (for -m swap).")]
    = None,
    checkpoint_every: CheckpointOpt = None, preview_every: PreviewOpt = None, seed: SeedOpt = None,
    device: DeviceOpt = Device["auto"], precision: PrecisionOpt = Precision["auto"], threads: ThreadsOpt = None,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Train the AdaIN decoder for this project's encoder (resumable; torchrun for several processes)."""
    _train("adain", {"content_data": content_data, "style_data": style_data, "out": out}, dict(
        steps=steps, batch_size=batch_size, crop_size=crop_size, learning_rate=learning_rate, lr_decay=lr_decay,
        content_weight=content_weight, style_weight=style_weight, style_loss=style_loss,
        identity_weight=identity_weight, swap_fraction=swap_fraction,
        checkpoint_every=checkpoint_every, preview_every=preview_every, seed=seed),
        config, run_dir, resume, init, device, precision, threads, vgg_weights)
