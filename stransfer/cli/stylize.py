"""`stransfer stylize` and `stransfer texture`: flags in, the API and the batch runner do the work."""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from stransfer import api, batch, color, console, distributed, images, signals
from stransfer.cli import clip
from stransfer.cli.generated import command as generated_command
from stransfer.cli.generated import shared_options, with_choices
from stransfer.cli.options import (ConfigOpt, Device, DeviceOpt, MaxPixelsOpt, Method, OverwriteOpt, Precision,
                                   PrecisionOpt, SeedOpt, StyleBlendOpt, ThreadsOpt, VerboseOpt, VggWeightsOpt, choices,
                                   given, numbers)
from stransfer.config import build, param
from stransfer.device import Runtime, make_runtime
from stransfer.engines import SYNTHESIZERS, EngineSpec, SynthesizerSpec

def _plan(content: list[str], recursive: bool, output: Path, name: str, label: str, method: str) -> list[batch.Item]:
    sources = batch.collect(content, recursive, sys.stdin if "-" in content else ())
    batch.check_folders_found(content, sources, recursive)
    items = batch.plan(sources, output, name, label, method)
    if len(items) < len(sources):
        console.note(f"{len(sources) - len(items)} inputs left out: they are outputs of this run's other inputs")
    return items


def _show_plan(items: list[batch.Item], skip_existing: bool) -> None:
    for item in items:
        state = "skip (exists)" if skip_existing and item.output.exists() else "write"
        console.stdout.print(f"{item.source} -> {item.output}: {state}")


EXAMPLES = {
    "stylize": ("stransfer stylize examples/tubingen.jpg -s examples/starry_night.jpg -o tubingen_starry.png",
                "stransfer stylize photos/ -r -m johnson --model the_scream -o styled/ --skip-existing"),
    "texture": ("stransfer texture -s examples/starry_night.jpg --size 1024 -o starry_texture.png",
                "stransfer texture -m net --model my_model.pth -s starry_night --count 4 -o texture.png"),
}
STYLE = "Style"
ColorMode = choices("ColorMode", color.MODES)
TextureMethod = choices("TextureMethod", SYNTHESIZERS)
StyleScaleOpt = Annotated[float, typer.Option(help="Style image size relative to the output.", rich_help_panel=STYLE)]
MaskOpt = Annotated[Path | None, typer.Option(
    help="Mask image: white = first style, black = second style (or the content, with one style).",
    rich_help_panel=STYLE)]
PreserveColorOpt = Annotated[ColorMode, typer.Option(
    help="luminance: keep the content's colours; histogram: recolour the style to the content first.",
    rich_help_panel=STYLE)]


def stylize(
    content: Annotated[list[str], typer.Argument(
        help="Content images: files, folders, globs, or - to read paths from stdin; or one video clip.",
        show_default=False)],
    style: Annotated[list[Path] | None, typer.Option(
        "--style", "-s", help="Style image (repeatable); for a model that holds its styles, a style NAME.")] = None,
    method: Annotated[Method, typer.Option("--method", "-m", help="Engine.")] = Method["gatys"],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output file (one content file) or folder (mirrors the input folders).")] = Path("."),
    name: Annotated[str, typer.Option(help="Output file name template: {stem}, {style}, {method}, {ext}.")]
    = batch.DEFAULT_NAME,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders.")] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be written; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per file on stdout.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images of equal size per pass (feed-forward engines).")] = 1,
    size: Annotated[int | None, typer.Option(
        help="Long side of the output in pixels (images: 512; video: the clip's own).", show_default=False)] = None,
    frames: clip.Frames = False, temporal_weight: clip.TemporalWeight = None,
    config: ConfigOpt = None, overwrite: OverwriteOpt = False, max_pixels: MaxPixelsOpt = images.DEFAULT_MAX_PIXELS,
    style_blend: StyleBlendOpt = None, style_scale: StyleScaleOpt = 1.0, mask: MaskOpt = None,
    preserve_color: PreserveColorOpt = ColorMode["none"],
    device: DeviceOpt = Device["auto"], precision: PrecisionOpt = Precision["auto"], threads: ThreadsOpt = None,
    seed: SeedOpt = None, vgg_weights: VggWeightsOpt = None, verbose: VerboseOpt = False,
    **settings: Any,
) -> None:
    """Stylise photos, folders of photos or a video clip in the style of artworks, with the engine -m names."""
    # `settings`: the engine settings, one flag per field of the engines' configs (see command()).
    options = build(batch.BatchOptions, None, dict(size=size, overwrite=overwrite, skip_existing=skip_existing,
                                                   max_pixels=max_pixels, batch_size=batch_size))
    spec = api.engine_spec(method.value)
    cfg = api.engine_config(spec.name, config, **given(spec.config_type, f"-m {spec.name}", **settings))
    make = dict(style_blend=numbers("--style-blend", style_blend), style_scale=style_scale, mask=mask,
                preserve_color=preserve_color.value, config=cfg, vgg_weights=vgg_weights, max_pixels=max_pixels)
    runtime = _runtime_maker(verbose, device.value, precision.value, threads, seed)
    label = api.output_label(spec.name, style or [], cfg)
    if frames or clip.is_clip(content):
        clip.check_flags(recursive=recursive, batch_size=batch_size, name=name)
        raise typer.Exit(clip.run(content, output, frames, spec.name, style, make, runtime, label, options,
                                  size, temporal_weight, dry_run, as_json))
    clip.check_flags(temporal_weight=temporal_weight)
    # Outputs are named before any model loads, so --dry-run is instant.
    items = _plan(content, recursive, output, name, label, spec.name)
    if dry_run:
        _show_plan(items, skip_existing)
        raise typer.Exit(0)
    raise typer.Exit(_run_batch(items, spec.name, style, make, runtime, options, as_json, verbose))


def command(engines: Mapping[str, EngineSpec]) -> Callable[..., None]:
    """`stylize` as the command: its own flags, then one flag per setting of the engines registered now, and
    --method choosing among them."""
    fixed = [p for p in inspect.signature(stylize, eval_str=True).parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]
    generated = shared_options({name: spec.config_type for name, spec in engines.items()}, "Every engine")
    clash = {p.name for p in fixed} & {p.name for p in generated}
    if clash:
        raise RuntimeError(f"engine settings {sorted(clash)} would shadow stylize's own flags; rename them")
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed] + generated
    return with_choices(generated_command(stylize, params, stylize.__doc__ or ""), "method", engines)


def _runtime_maker(verbose: bool, *settings: Any) -> Callable[[distributed.World], Runtime]:
    """What makes a rank's runtime (device, precision, threads, seed) once the run starts; --verbose says it."""

    def make(world: distributed.World) -> Runtime:
        runtime = distributed.runtime_for(make_runtime(*settings), world)
        if verbose and world.is_main:
            console.note(runtime.describe())
        return runtime

    return make


def _run_batch(items: list[batch.Item], method: str, style: list[Path] | None, make: dict[str, Any],
               new_runtime: Callable[[distributed.World], Runtime], options: batch.BatchOptions,
               as_json: bool, verbose: bool = False) -> int:
    """The batch: each item stylised on its own, isolated from the others' failures; the exit code."""
    world = distributed.init()
    runtime = new_runtime(world)
    stop = threading.Event()
    with console.ProgressRenderer(verbose=verbose) as render, signals.stop_on_signals(stop) as received:
        stylizer = api.Stylizer(method, style, runtime=runtime, on_event=render, **make)
        outcome = batch.run(stylizer, batch.shard(items, world.rank, world.size), options,
                            console.result_printer(as_json), render, stop)
    counts = world.gather_counts(outcome.results)
    if world.rank == 0 and (len(items) > 1 or received or outcome.fatal):
        console.stderr.print(batch.summary(counts, received[0] if received else None, outcome))
    world.shutdown()
    return signals.exit_code(received[0]) if received else 1 if counts["failed"] else 0


def texture(
    style: Annotated[list[str] | None, typer.Option(
        "--style", "-s", help="Style image (repeatable, see --style-blend); -m net: a texture NAME its model holds.",
        show_default=False)] = None,
    method: Annotated[TextureMethod, typer.Option("--method", "-m", help="Texture maker.")]
    = TextureMethod["gatys"],
    output: Annotated[Path, typer.Option("--output", "-o", help="The texture to write.")] = Path("texture.png"),
    size: Annotated[int, typer.Option(help="Width of the texture in pixels.")] = 512,
    height: Annotated[int | None, typer.Option(help="Height (default: square).", show_default=False)] = None,
    count: Annotated[int, typer.Option(help="Textures to make, one per seed from --seed on: OUT_SEED.png each.")]
    = 1,
    style_blend: StyleBlendOpt = None,
    style_scale: Annotated[float | None, typer.Option(
        help="Style image size relative to the texture (default 1, or the style's own size if smaller).",
        show_default=False)] = None,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = Device["auto"],
    precision: PrecisionOpt = Precision["auto"],
    threads: ThreadsOpt = None,
    seed: SeedOpt = None,
    vgg_weights: VggWeightsOpt = None,
    **settings: Any,
) -> None:
    """Synthesise textures from noise, with no photo (any size): the Gatys optimiser or a trained texture network."""
    build(TextureOptions, None, {"count": count})
    spec = SYNTHESIZERS[method.value]
    first = seed or 0
    outputs = ([output] if count == 1 else
               [output.with_name(f"{output.stem}_{first + i}{output.suffix}") for i in range(count)])
    for path in outputs:
        images.check_writable(path, overwrite)
    with console.ProgressRenderer() as render:
        maker = api.TextureMaker(spec.name, style, style_blend=numbers("--style-blend", style_blend),
                                 style_scale=style_scale, config=config, device=device.value,
                                 precision=precision.value, threads=threads, vgg_weights=vgg_weights, on_event=render,
                                 **given(spec.config_type, f"texture -m {spec.name}", **settings))
        for i, path in enumerate(outputs):
            out = maker(size, height, first + i, render)
            images.save_image(images.pil_to_tensor(out), path, overwrite=overwrite)
            console.stdout.print(str(path))


@dataclass(frozen=True)
class TextureOptions:
    count: int = param(1, ge=1, le=10_000)


def texture_command(synthesizers: Mapping[str, SynthesizerSpec]) -> Callable[..., None]:
    """`texture` as the command: its own flags, then one per setting of the texture makers registered now (but
    those a maker pins), and --method choosing among them."""
    fixed = [p for p in inspect.signature(texture, eval_str=True).parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]
    generated = shared_options({name: spec.config_type for name, spec in synthesizers.items()}, "Every method",
                               {name: spec.fixed for name, spec in synthesizers.items()})
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed] + generated
    doc = (texture.__doc__ or "") + "\n\n" + "\n\n".join(f"-m {s.name}: {s.summary}." for s in synthesizers.values())
    return with_choices(generated_command(texture, params, doc), "method", synthesizers)
