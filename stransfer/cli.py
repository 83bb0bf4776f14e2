"""The `stransfer` command: parse flags, build a config and an engine, run it, save. No logic of its own."""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from stransfer import config as config_mod
from stransfer import batch, color, console, distributed, gallery, images, metrics, signals, weights
from stransfer import train as training
from stransfer.device import DEVICE_NAMES, PRECISIONS, make_runtime
from stransfer.engines import ENGINES, EngineInputs
from stransfer.errors import InputError, StransferError, UsageError, WeightsError

EXIT_CODES = (
    "Exit codes: 0 every output written; 1 some input failed (the others were still written) or the run "
    "could not finish (e.g. weights unavailable); 2 usage error (bad flag, config, style or model)."
)

app = typer.Typer(
    help="Neural style transfer: Gatys (optimise pixels), Johnson (feed-forward), AdaIN (arbitrary style).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=EXIT_CODES,
)
weights_app = typer.Typer(help="Pretrained backbone weights: fetch them into the cache, list what is there.",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")
train_app = typer.Typer(help="Train the feed-forward engines: a Johnson network per style, the AdaIN decoder.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

Method = enum.Enum("Method", {name: name for name in ENGINES}, type=str)  # type: ignore[misc]
Device = enum.Enum("Device", {name: name for name in DEVICE_NAMES}, type=str)  # type: ignore[misc]
Precision = enum.Enum("Precision", {name: name for name in PRECISIONS}, type=str)  # type: ignore[misc]
Arch = enum.Enum("Arch", {name: name for name in weights.SOURCES}, type=str)  # type: ignore[misc]
Init = enum.Enum("Init", {n: n for n in ("content", "noise", "style")}, type=str)  # type: ignore[misc]
Optimizer = enum.Enum("Optimizer", {n: n for n in ("lbfgs", "adam")}, type=str)  # type: ignore[misc]
ColorMode = enum.Enum("ColorMode", {n: n for n in color.MODES}, type=str)  # type: ignore[misc]

# Options shared by several commands, defined once.
DeviceOpt = Annotated[Device, typer.Option(help="Where to compute.", rich_help_panel="Runtime")]
PrecisionOpt = Annotated[Precision, typer.Option(
    help="bf16 = autocast for the network passes; auto = bf16 where the hardware runs it natively.",
    rich_help_panel="Runtime")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads (default: torch's choice).",
                                                rich_help_panel="Runtime")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed for reproducible results.", rich_help_panel="Runtime")]
VggWeightsOpt = Annotated[Path | None, typer.Option(
    "--vgg-weights", help="Backbone state dict to use instead of the cache ($STRANSFER_VGG_WEIGHTS).",
    rich_help_panel="Runtime")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="TOML file of engine settings (see configs/); flags override it.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")]
MaxPixelsOpt = Annotated[int, typer.Option(help="Refuse images larger than this (decompression-bomb guard).")]


def _engine_flags(config_type: type, method: str, **flags: Any) -> dict[str, Any]:
    """Flags given on the command line (None = not given), enums reduced to their values; a flag that
    belongs to another engine is a usage error rather than silently ignored."""
    given = {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in flags.items() if v is not None}
    known = {f.name for f in dataclasses.fields(config_type)}
    for key in given:
        if key not in known:
            raise UsageError(f"--{key.replace('_', '-')} does not apply to -m {method}")
    return given


def _parse_scales(text: str | None) -> str | None:
    """"3" -> three scales, each half the next ("0.25,0.5,1.0"); a list passes through."""
    if text is not None and text.strip().isdigit():
        count = int(text)
        if count < 1:
            raise UsageError("--scales must be at least 1")
        return ",".join(str(0.5 ** (count - 1 - i)) for i in range(count))
    return text


MAX_BLEND_WEIGHT = 1e6  # weights are relative; a bound keeps their sum finite
MAX_STYLE_SCALE = 4.0  # a style image 4x the output is already 16x its pixels through VGG


def _parse_blend(text: str | None, count: int) -> list[float] | None:
    if text is None:
        return None
    try:
        weights_ = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise UsageError(f"--style-blend must be numbers separated by commas (got {text!r})") from None
    if len(weights_) != count:
        raise UsageError(f"--style-blend has {len(weights_)} weights for {count} style images")
    config_mod.check("--style-blend", weights_, ge=0.0, le=MAX_BLEND_WEIGHT)
    if sum(weights_) <= 0:
        raise UsageError(f"--style-blend weights must not all be 0 (got {text})")
    return [w / sum(weights_) for w in weights_]


@app.command(epilog=EXIT_CODES)
def stylize(
    content: Annotated[list[str], typer.Argument(
        help="Content images: files, folders, globs, or - to read paths from stdin.", show_default=False)],
    style: Annotated[list[Path] | None, typer.Option("--style", "-s", help="Style image (repeatable).")] = None,
    method: Annotated[Method, typer.Option("--method", "-m", help="Engine.")] = Method["gatys"],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output file (one content file) or folder (mirrors the input folders).")] = Path("."),
    name: Annotated[str, typer.Option(help="Output file name template: {stem}, {style}, {method}, {ext}.")]
    = batch.DEFAULT_NAME,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders.")] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be written; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per file on stdout.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images of equal size per pass (johnson, adain).")] = 1,
    size: Annotated[int, typer.Option(help="Long side of the output in pixels.")] = 512,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = images.DEFAULT_MAX_PIXELS,
    content_weight: Annotated[float | None, typer.Option(help="Weight of the content loss.",
                                                         rich_help_panel="Gatys")] = None,
    style_weight: Annotated[float | None, typer.Option(help="Weight of the style loss.",
                                                       rich_help_panel="Gatys")] = None,
    tv_weight: Annotated[float | None, typer.Option(help="Weight of total variation (smoothness).",
                                                    rich_help_panel="Gatys")] = None,
    content_layers: Annotated[str | None, typer.Option(help="Comma-separated layers, e.g. relu3_3.",
                                                       rich_help_panel="Gatys")] = None,
    style_layers: Annotated[str | None, typer.Option(help="Comma-separated layers, e.g. relu1_2,relu2_2.",
                                                     rich_help_panel="Gatys")] = None,
    style_loss: Annotated[str | None, typer.Option(
        help="Style loss: gram, meanstd, mmd-poly, histogram, mrf, or weighted, e.g. gram:1,histogram:1.",
        rich_help_panel="Gatys")] = None,
    init: Annotated[Init | None, typer.Option(help="Starting image.", rich_help_panel="Gatys")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option(rich_help_panel="Gatys")] = None,
    scales: Annotated[str | None, typer.Option(
        help="Coarse-to-fine scales: a count N (halving each time) or fractions of --size, e.g. 0.25,0.5,1.",
        rich_help_panel="Gatys")] = None,
    iterations: Annotated[str | None, typer.Option(
        help="Function evaluations per scale, coarse to fine (e.g. 150,80,40), or one number for every scale.",
        rich_help_panel="Gatys")] = None,
    save_every: Annotated[int | None, typer.Option(help="Also save every N iterations (0 = never).",
                                                   rich_help_panel="Gatys")] = None,
    style_blend: Annotated[str | None, typer.Option(
        help="Weights of several styles, e.g. 0.7,0.3 (normalised; default equal).", rich_help_panel="Style")]
    = None,
    style_scale: Annotated[float, typer.Option(help="Style image size relative to the output.",
                                               rich_help_panel="Style")] = 1.0,
    mask: Annotated[Path | None, typer.Option(
        help="Mask image: white = first style, black = second style (or the content, with one style).",
        rich_help_panel="Style")] = None,
    preserve_color: Annotated[ColorMode, typer.Option(
        help="luminance: keep the content's colours; histogram: recolour the style to the content first.",
        rich_help_panel="Style")] = ColorMode["none"],
    model: Annotated[str | None, typer.Option(
        help="Trained model: a NAME from `stransfer models` or a .pth path.", rich_help_panel="Johnson / AdaIN")]
    = None,
    alpha: Annotated[float | None, typer.Option(help="Content-style trade-off: 0 content, 1 full style (adain).",
                                                rich_help_panel="Johnson / AdaIN")] = None,
    tile: Annotated[str | None, typer.Option(
        help="Huge images in tiles: auto (when memory requires), off, or a tile side in pixels.",
        rich_help_panel="Johnson / AdaIN")] = None,
    tile_overlap: Annotated[int | None, typer.Option(help="Pixels shared and blended between tiles.",
                                                     rich_help_panel="Johnson / AdaIN")] = None,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    threads: ThreadsOpt = None,
    seed: SeedOpt = None,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Stylise content images: with style images (gatys, adain) or a trained model (johnson)."""
    spec = ENGINES[method.value]
    options = config_mod.build(batch.BatchOptions, None, dict(
        size=size, overwrite=overwrite, skip_existing=skip_existing, max_pixels=max_pixels,
        preserve_color=preserve_color.value, batch_size=batch_size))
    if not spec.batches or preserve_color.value == "histogram":  # one image per pass: nothing to stack
        options = dataclasses.replace(options, batch_size=1)
    runtime = make_runtime(device.value, precision.value, threads, seed)
    cfg = config_mod.build(spec.config_type, config, _engine_flags(
        spec.config_type, spec.name, content_weight=content_weight, style_weight=style_weight,
        tv_weight=tv_weight, content_layers=content_layers, style_layers=style_layers, style_loss=style_loss, init=init,
        optimizer=optimizer, scales=_parse_scales(scales), iterations=iterations, save_every=save_every,
        model=model, alpha=alpha, tile=tile, tile_overlap=tile_overlap))
    style = style or []
    if spec.needs_style and not style:
        raise UsageError(f"-m {spec.name} needs a style image: -s FILE")
    config_mod.check("--style-scale", style_scale, gt=0.0, le=MAX_STYLE_SCALE)
    try:
        styles = [images.load_image(p, max_pixels).rgb for p in style]
    except InputError as e:
        raise UsageError(f"style {e}") from None
    try:
        mask_image = images.load_mask(mask, max_pixels) if mask is not None else None
    except InputError as e:
        raise UsageError(f"mask {e}") from None
    if mask_image is not None and len(style) not in (1, 2):
        raise UsageError(f"--mask takes one or two styles (got {len(style)})")
    if preserve_color.value == "histogram" and not spec.needs_style:
        raise UsageError(f"--preserve-color histogram recolours style images; -m {spec.name} takes none")

    blend = _parse_blend(style_blend, len(style))
    sources = batch.collect(content, recursive, sys.stdin if "-" in content else ())
    for folder in (c for c in content if Path(c).is_dir()):
        if not any(src.is_relative_to(folder) for src, _ in sources):
            raise UsageError(f"{folder}: no images found" + ("" if recursive else " (use --recursive for subfolders)"))
    # Outputs are named before any model loads (so --dry-run is instant): a johnson model by its NAME.
    style_label = "+".join(p.stem for p in style) if style else Path(getattr(cfg, "model", "model")).stem
    items = batch.plan(sources, output, name, style_label, spec.name)
    if len(items) < len(sources):
        console.note(f"{len(sources) - len(items)} inputs left out: they are outputs of this run's other inputs")
    if dry_run:
        for item in items:
            state = "skip (exists)" if skip_existing and item.output.exists() else "write"
            console.stdout.print(f"{item.source} -> {item.output}: {state}")
        raise typer.Exit(0)

    world = distributed.init()
    mine = batch.shard(items, world.rank, world.size)

    def on_result(result: batch.Result) -> None:
        if as_json:
            console.stdout.print_json(data={"input": str(result.source), "output": str(result.output),
                                            "status": result.status, "seconds": result.seconds,
                                            "error": result.error or None}, indent=None)
        elif result.status == "written":
            console.stdout.print(str(result.output))
        if result.status == "failed":
            console.error(result.error)

    stop = threading.Event()
    with console.ProgressRenderer() as render, signals.stop_on_signals(stop) as received:
        engine = spec.build(cfg, distributed.runtime_for(runtime, world), EngineInputs(
            styles=styles, style_names=[p.stem for p in style], style_weights=blend, style_scale=style_scale,
            mask=mask_image, vgg_weights=vgg_weights, on_event=render))
        outcome = batch.run(engine, mine, options, styles, on_result, render, stop)
    counts = world.gather_counts(outcome.results)
    if world.rank == 0 and (len(items) > 1 or received or outcome.fatal):
        console.stderr.print(batch.summary(counts, received[0] if received else None, outcome))
    world.shutdown()
    if received:
        raise typer.Exit(signals.exit_code(received[0]))
    raise typer.Exit(1 if counts["failed"] else 0)


@app.command(epilog=EXIT_CODES)
def texture(
    style: Annotated[list[Path], typer.Option("--style", "-s", help="Style image (repeatable, see --style-blend).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The texture to write.")] = Path("texture.png"),
    size: Annotated[int, typer.Option(help="Side of the square texture in pixels.")] = 512,
    height: Annotated[int | None, typer.Option(help="Height, for a texture that is not square.")] = None,
    style_loss: Annotated[str | None, typer.Option(help="Style loss (default gram:1,histogram:1).")] = None,
    style_blend: Annotated[str | None, typer.Option(help="Weights of several styles, e.g. 0.7,0.3.")] = None,
    style_scale: Annotated[float | None, typer.Option(
        help="Style image size relative to the texture (default 1, or the style's own size if smaller).")] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    threads: ThreadsOpt = None,
    seed: SeedOpt = None,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Synthesise a texture from style images: the Gatys optimiser from noise, with no photo (any size)."""
    from stransfer.engines.gatys import TEXTURE_DEFAULTS, synthesize_texture

    spec = ENGINES["gatys"]
    height = config_mod.check("--height", height or size, ge=16, le=16384)
    config_mod.check("--size", size, ge=16, le=16384)
    config_mod.check("--style-scale", style_scale, gt=0.0, le=MAX_STYLE_SCALE)
    images.check_writable(output, overwrite)
    runtime = make_runtime(device.value, precision.value, threads, 0 if seed is None else seed)
    cfg = config_mod.build(spec.config_type, config, {"style_loss": style_loss}, defaults=TEXTURE_DEFAULTS)
    try:
        styles = [images.load_image(p).rgb for p in style]
    except InputError as e:
        raise UsageError(f"style {e}") from None
    # The style as large as the texture, but never enlarged: a texture bigger than the artwork repeats its
    # strokes at their own size rather than blowing them up.
    scale = style_scale or min(1.0, max(styles[0].shape[-2:]) / max(size, height))
    with console.ProgressRenderer() as render:
        engine = spec.build(cfg, runtime, EngineInputs(
            styles=styles, style_names=[p.stem for p in style], style_weights=_parse_blend(style_blend, len(style)),
            style_scale=scale, vgg_weights=vgg_weights, on_event=render))
        out = synthesize_texture(engine, height, size, render)
    images.save_image(out, output, overwrite=overwrite)
    console.stdout.print(str(output))


@weights_app.command("fetch", epilog=EXIT_CODES)
def weights_fetch(
    arch: Annotated[Arch, typer.Option(help="Backbone architecture.")] = Arch["vgg16"],
    force: Annotated[bool, typer.Option("--force", help="Fetch again even when the cache is verified.")] = False,
) -> None:
    """Download and verify backbone weights into the cache ($STRANSFER_HOME)."""
    with console.ProgressRenderer() as render:
        result = weights.fetch(arch.value, force=force, on_event=render)
    if result.already_cached:
        console.stdout.print(f"{arch.value}: already in the cache and verified: {result.path} "
                             f"(from {result.source}); nothing to do")
    else:
        console.stdout.print(f"{arch.value}: fetched from {result.source}, verified, cached at {result.path}")


@weights_app.command("list")
def weights_list() -> None:
    """Show which backbone weights are cached, where, and whether they verify."""
    console.stdout.print(f"cache: {weights.stransfer_home()}")
    for arch in weights.SOURCES:
        entry = weights.cache_entry(arch)
        if entry is None:
            console.stdout.print(f"{arch}: not cached (stransfer weights fetch --arch {arch})")
        else:
            state = "verified" if entry.verified else "FAILS VERIFICATION (fetch again with --force)"
            console.stdout.print(f"{arch}: {entry.path} {entry.size / 1e6:.1f} MB, {state}, from {entry.source}")


RunDirOpt = Annotated[Path | None, typer.Option(
    "--run-dir", help="Run folder: checkpoints, log.jsonl, previews (default runs/<task>-<name>).")]
ResumeOpt = Annotated[Path | None, typer.Option(
    "--resume", help="Continue the run in this folder from its last checkpoint; other inputs come from it.")]
StepsOpt = Annotated[int | None, typer.Option(help="Total optimiser steps (on --resume: extend to this).")]
InitOpt = Annotated[str | None, typer.Option(
    "--init", help="Start from this trained model (NAME or .pth): its weights, a fresh optimiser; the new model's "
                   "record keeps the lineage.")]


def _train(kind: str, run_dir: Path, resume: bool, steps: int | None, device: str | None, threads: int | None,
           vgg_weights: Path | None, world: distributed.World) -> None:
    with console.ProgressRenderer() as render:
        result = training.run(run_dir, resume, render, steps=steps, device=device, threads=threads,
                              vgg_weights=vgg_weights, world=world)
    world.shutdown()
    if world.is_main:
        console.stdout.print(f"{kind}: {result.steps} steps in {result.seconds / 60:.1f} min; run folder {run_dir}")


@train_app.command("johnson", epilog=EXIT_CODES)
def train_johnson(
    style: Annotated[Path | None, typer.Option("--style", "-s", help="Style image.")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder of content photos (searched recursively).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Model file to write, e.g. weights/NAME.pth.")]
    = None,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = None,
    init: InitOpt = None,
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of the square training crops.")] = None,
    style_size: Annotated[int | None, typer.Option(help="Long side of the style image for its Grams.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    content_weight: Annotated[float | None, typer.Option()] = None,
    style_weight: Annotated[float | None, typer.Option()] = None,
    style_loss: Annotated[str | None, typer.Option(help="Style loss, as for stylize -m gatys.")] = None,
    tv_weight: Annotated[float | None, typer.Option()] = None,
    width: Annotated[int | None, typer.Option(help="Channels of the first layer (32 in the paper).")] = None,
    residual_blocks: Annotated[int | None, typer.Option(help="Residual blocks (5 in the paper).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints.")] = None,
    preview_every: Annotated[int | None, typer.Option(help="Steps between preview sheets.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the data order and initial weights.")] = None,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    threads: ThreadsOpt = None,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Train a Johnson feed-forward network for one style (resumable; torchrun for several processes)."""
    world = distributed.init()
    if resume is not None and init is not None:
        raise UsageError("--init starts a new run; --resume continues one: give one of them")
    if resume is not None:
        _train("johnson", resume, True, steps, device.value if device.value != "auto" else None, threads,
               vgg_weights, world)
        return
    if style is None or data is None or out is None:
        raise UsageError("train johnson needs --style, --data and --out (or --resume RUN_DIR)")
    if not style.is_file():
        raise UsageError(f"style {style}: no such file")
    if not data.is_dir():
        raise UsageError(f"--data {data}: not a folder")
    images.output_format(out.with_suffix(".png"))  # the model path itself only needs to be writable
    flags = _engine_flags(
        training.config_type("johnson"), "johnson", steps=steps, batch_size=batch_size, image_size=image_size,
        style_size=style_size, learning_rate=learning_rate, content_weight=content_weight,
        style_weight=style_weight, style_loss=style_loss, tv_weight=tv_weight, width=width,
        residual_blocks=residual_blocks, checkpoint_every=checkpoint_every, preview_every=preview_every, seed=seed)
    start = training.read_init("johnson", init) if init is not None else None
    cfg = config_mod.build(training.config_type("johnson"), config,
                           training.init_overrides(start, flags) if start else flags)
    if out.exists() and world.is_main:
        raise UsageError(f"{out} already exists: choose another --out or remove it")
    run_dir = run_dir or Path("runs") / f"johnson-{style.stem}"
    if world.is_main:
        training.new_run("johnson", run_dir, cfg,
                         {"style": str(style.resolve()), "data": str(data.resolve()), "out": str(out.resolve())},
                         {"device": device.value, "precision": make_runtime(device.value, precision.value).precision},
                         start)
    _train("johnson", run_dir, False, None, None, threads, vgg_weights, world)


@train_app.command("adain", epilog=EXIT_CODES)
def train_adain(
    content_data: Annotated[Path | None, typer.Option(help="Folder of content photos (searched recursively).")]
    = None,
    style_data: Annotated[Path | None, typer.Option(help="Folder of artworks (searched recursively).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Decoder file to write, e.g. weights/NAME.pth.")]
    = None,
    run_dir: RunDirOpt = None,
    resume: ResumeOpt = None,
    init: InitOpt = None,
    config: ConfigOpt = None,
    steps: StepsOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Content/style pairs per step.")] = None,
    crop_size: Annotated[int | None, typer.Option(help="Side of the square training crops.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    lr_decay: Annotated[float | None, typer.Option(help="Inverse-time decay: lr / (1 + decay * step).")] = None,
    content_weight: Annotated[float | None, typer.Option()] = None,
    style_weight: Annotated[float | None, typer.Option()] = None,
    identity_weight: Annotated[float | None, typer.Option(
        help="Weight of rebuilding a quarter of each batch from its own features (alpha 0); 0 turns it off.")]
    = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints.")] = None,
    preview_every: Annotated[int | None, typer.Option(help="Steps between preview sheets.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the data order and initial weights.")] = None,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    threads: ThreadsOpt = None,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Train the AdaIN decoder for this project's encoder (resumable; torchrun for several processes)."""
    world = distributed.init()
    if resume is not None and init is not None:
        raise UsageError("--init starts a new run; --resume continues one: give one of them")
    if resume is not None:
        _train("adain", resume, True, steps, device.value if device.value != "auto" else None, threads,
               vgg_weights, world)
        return
    if content_data is None or style_data is None or out is None:
        raise UsageError("train adain needs --content-data, --style-data and --out (or --resume RUN_DIR)")
    for flag, folder in (("--content-data", content_data), ("--style-data", style_data)):
        if not folder.is_dir():
            raise UsageError(f"{flag} {folder}: not a folder")
    cfg_type = training.config_type("adain")
    flags = _engine_flags(
        cfg_type, "adain", steps=steps, batch_size=batch_size, crop_size=crop_size, learning_rate=learning_rate,
        lr_decay=lr_decay, content_weight=content_weight, style_weight=style_weight,
        identity_weight=identity_weight, checkpoint_every=checkpoint_every, preview_every=preview_every, seed=seed)
    start = training.read_init("adain", init) if init is not None else None
    cfg = config_mod.build(cfg_type, config, training.init_overrides(start, flags) if start else flags)
    if out.exists() and world.is_main:
        raise UsageError(f"{out} already exists: choose another --out or remove it")
    run_dir = run_dir or Path("runs") / f"adain-{out.stem}"
    if world.is_main:
        training.new_run("adain", run_dir, cfg, {"content_data": str(content_data.resolve()),
                                                 "style_data": str(style_data.resolve()), "out": str(out.resolve())},
                         {"device": device.value, "precision": make_runtime(device.value, precision.value).precision},
                         start)
    _train("adain", run_dir, False, None, None, threads, vgg_weights, world)


@app.command("eval", epilog=EXIT_CODES)
def evaluate(
    target: Annotated[Path, typer.Argument(help="A stylised image, or a manifest CSV (output,style,content) or a "
                                                "folder holding manifest.csv.", show_default=False)],
    style: Annotated[Path | None, typer.Option("--style", "-s", help="The style image (for one output).")] = None,
    content: Annotated[Path | None, typer.Option("--content", "-c", help="The content image (for one output).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per output on stdout.")] = False,
    max_pixels: MaxPixelsOpt = images.DEFAULT_MAX_PIXELS,
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """Score outputs with the reference metric: style distance, content distance, the content's own style
    distance (FACTS.md: Grams of relu1_2..relu4_3, relu3_3 features, VGG16, at the output's resolution)."""
    config_mod.build(batch.BatchOptions, None, {"max_pixels": max_pixels})  # the range stylize's flag has
    if target.suffix.lower() == ".csv" or target.is_dir():
        triples = metrics.read_manifest(target)
    else:
        if style is None or content is None:
            raise UsageError("eval of one image needs --style and --content (or give a manifest)")
        triples = [(target, style, content)]
    with console.ProgressRenderer() as render:
        net = metrics.metric_backbone(weights.resolve("vgg16", vgg_weights, render)[0])
    failed = 0
    for out_path, style_path, content_path in triples:
        try:
            s = metrics.score(net, *(images.load_image(p, max_pixels).rgb for p in (out_path, content_path,
                                                                                     style_path)))
        except InputError as e:
            console.error(str(e))
            failed += 1
            continue
        if as_json:
            console.stdout.print_json(data={"output": str(out_path), "style": str(style_path),
                                            "content": str(content_path), "style_distance": s.style,
                                            "content_distance": s.content, "content_own_style_distance":
                                            s.content_own_style, "style_ratio": s.style_ratio}, indent=None)
        else:
            console.stdout.print(f"{out_path}: style distance {s.style:.4f} (content's own {s.content_own_style:.4f},"
                                 f" ratio {s.style_ratio:.3f}), content distance {s.content:.4f}")
    raise typer.Exit(1 if failed else 0)


@app.command("gallery", epilog=EXIT_CODES)
def gallery_command(
    content: Annotated[list[Path], typer.Option("--content", "-c", help="Content image (repeatable): the rows.")],
    style: Annotated[list[Path], typer.Option("--style", "-s", help="Style image (repeatable): the columns.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The sheet to write (png, jpg, webp).")],
    methods: Annotated[str, typer.Option(help="Engines, one cell each; johnson uses the model named after "
                                              "the style file.")] = "gatys,johnson,adain",
    sweep: Annotated[str | None, typer.Option(
        help="One setting of one engine instead, e.g. alpha=0.25,0.5,1 or style_weight=1,5,20.")] = None,
    size: Annotated[int, typer.Option(help="Long side of each result in pixels.")] = 256,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = images.DEFAULT_MAX_PIXELS,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    vgg_weights: VggWeightsOpt = None,
) -> None:
    """A labelled contact sheet: rows = content, columns = style, a cell per engine (or per setting), with
    timings in the captions."""
    config_mod.build(batch.BatchOptions, None, {"size": size, "max_pixels": max_pixels})  # stylize's ranges
    images.check_writable(output, overwrite)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        if m not in ENGINES:
            raise UsageError(f"--methods: unknown engine '{m}' (known: {', '.join(ENGINES)})")
    settings: list[tuple[str, dict[str, Any]]] = [(m, {}) for m in names]
    if sweep is not None:
        key, _, values = sweep.partition("=")
        if len(names) != 1 or not values:
            raise UsageError("--sweep KEY=V1,V2 needs exactly one engine in --methods")
        settings = [(names[0], {key.strip(): v}) for v in values.split(",")]
    runtime = make_runtime(device.value, precision.value, seed=0)
    try:
        contents = [(p.stem, images.resize_long_side(images.load_image(p, max_pixels).rgb, size)) for p in content]
        styles = [(p.stem, images.load_image(p, max_pixels).rgb) for p in style]
    except InputError as e:
        raise UsageError(str(e)) from None
    cells: list[list[list[gallery.Cell]]] = [[[] for _ in styles] for _ in contents]
    with console.ProgressRenderer() as render:
        for column, (style_name, style_rgb) in enumerate(styles):
            for method, overrides in settings:
                spec = ENGINES[method]
                label = method + "".join(f" {k} {v}" for k, v in overrides.items())
                try:
                    model = {} if spec.needs_style else {"model": style_name}
                    cfg = config_mod.build(spec.config_type, None, {**model, **overrides})
                    engine = spec.build(cfg, runtime, EngineInputs(
                        styles=[style_rgb] if spec.needs_style else [], style_names=[style_name],
                        vgg_weights=vgg_weights, on_event=render))
                except WeightsError:
                    for row in cells:
                        row[column].append(gallery.Cell(None, f"{label}: no model"))
                    continue
                for row, (_, content_rgb) in zip(cells, contents):
                    start = time.perf_counter()
                    out = engine.stylize(content_rgb, render)
                    row[column].append(gallery.Cell(out, f"{label} · {time.perf_counter() - start:.1f} s"))
    sheet = gallery.sheet(contents, styles, cells, cell=size,
                          title=f"stransfer {', '.join(names)} · {size} px · {runtime.device} {runtime.precision}")
    images.save_image(images.pil_to_tensor(sheet), output, overwrite=overwrite)
    console.stdout.print(str(output))


@app.command("export", epilog=EXIT_CODES)
def export_command(
    model: Annotated[str, typer.Argument(help="A Johnson model: NAME from `stransfer models` or a .pth path.",
                                         show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="torchscript, or onnx (needs the onnx package).")]
    = "torchscript",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default NAME.pt/.onnx).")]
    = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export a Johnson network: RGB in [0, 1] of any size in, the stylised image out (clamp it to [0, 1])."""
    from stransfer import export
    from stransfer.engines.johnson import load_transformer

    net, _ = load_transformer(weights.find_model(model))
    target = output or Path(f"{Path(model).stem}.{'pt' if fmt == 'torchscript' else 'onnx'}")
    console.stdout.print(str(export.export(net, target, fmt, overwrite)))


@app.command("models")
def models_list() -> None:
    """List the trained models that --model NAME finds, with their training record."""
    found = False
    for folder in weights.model_dirs():
        for path in sorted(folder.glob("*.pth")) if folder.is_dir() else []:
            found = True
            try:
                payload = weights.load_model(path, None)
            except StransferError as e:
                console.stdout.print(f"{path.stem}: unreadable ({e})")
                continue
            wall_s = sum(stage.get("wall_time_s") or 0 for stage in training.lineage_of(payload))
            style = (f"style {weights.style_thumbnail(payload['style_image'])}" if payload.get("style_image")
                     else "any style (-s)")
            console.stdout.print(
                f"{path.stem}: {payload['engine']}, {path.stat().st_size / 1e6:.1f} MB, {path}; {style}; "
                f"{payload.get('steps', '?')} steps, "
                f"{wall_s / 60:.0f} min on {payload.get('record', {}).get('machine', '?')}")
    if not found:
        console.stdout.print("no trained models found in " + ", ".join(str(d) for d in weights.model_dirs()))


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A library warning not turned into a note where it arose: one line, without the source line Python
    prints under it."""
    console.warn(" ".join(str(message).split()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error becomes one line on stderr and a documented exit code."""
    command = typer.main.get_command(app)
    previous, warnings.showwarning = warnings.showwarning, _warning_line
    try:
        code = command.main(args=argv, prog_name="stransfer", standalone_mode=False)
    except StransferError as e:
        console.error(str(e))
        code = e.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        code = 130
    except Exception as e:  # noqa: BLE001
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # typer/click usage errors
            console.error(f"{e.format_message()} (see --help)")
            code = e.exit_code
        elif os.environ.get("STRANSFER_DEBUG"):
            raise
        else:
            console.error(f"internal error: {type(e).__name__}: {e} (set STRANSFER_DEBUG=1 for a traceback)")
            code = 1
    finally:
        warnings.showwarning = previous
    sys.exit(code if isinstance(code, int) else 0)
