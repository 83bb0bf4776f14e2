"""The smaller commands: eval, gallery, export, models, and the weights cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stransfer import console, gallery, images, metrics, weights
from stransfer import train as training
from stransfer.cli.options import (Device, DeviceOpt, MaxPixelsOpt, OverwriteOpt, Precision, PrecisionOpt,
                                   StyleBlendOpt, VggWeightsOpt, choices, numbers)
from stransfer.config import build
from stransfer.batch import BatchOptions
from stransfer.device import make_runtime
from stransfer.errors import InputError, StransferError, UsageError

Arch = choices("Arch", weights.SOURCES)
EXAMPLES = {
    "eval": ("stransfer eval tubingen_starry.png -s examples/starry_night.jpg -c examples/tubingen.jpg",
             "stransfer eval results/manifest.csv --json"),
    "gallery": ("stransfer gallery -c photo.jpg -s starry_night.jpg -s the_scream.jpg -o sheet.jpg",
                "stransfer gallery -c photo.jpg -s the_scream.jpg --methods adain --sweep alpha=0.25,0.5,1 "
                "-o alpha.jpg"),
    "export": ("stransfer export starry_night -o starry_night.pt",
               "stransfer export multistyle -s udnie --format onnx -o udnie.onnx"),
    "models": ("stransfer models",
               "stransfer stylize examples/tubingen.jpg -m johnson --model udnie -o tubingen_udnie.png"),
    "weights fetch": ("stransfer weights fetch", "stransfer weights fetch --arch vgg19 --force"),
    "weights list": ("stransfer weights list", "stransfer weights fetch --arch vgg19"),
}


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
    """Score stylised images with the reference metric: style distance, content distance and their ratio.

    All on the pretrained VGG16, at the output's resolution (the content resized to its size, the style to its
    long side). Style distance: relative squared error between the output's and the style's Gram matrices,
    averaged over relu1_2, relu2_2, relu3_3, relu4_3. Content distance: relative squared error of relu3_3.
    Ratio: the style distance over the content photo's own (lower = more of the style)."""
    build(BatchOptions, None, {"max_pixels": max_pixels})  # the range stylize's flag has
    if target.suffix.lower() == ".csv" or target.is_dir():
        triples = metrics.read_manifest(target)
    elif style is None or content is None:
        raise UsageError("eval of one image needs --style and --content (or give a manifest)")
    else:
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


def gallery_sheet(
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
    """Draw a labelled contact sheet of every content image through every style, a cell per engine or setting.

    Rows are the content images, columns the styles; each cell's caption gives its engine (or setting) and the
    seconds it took."""
    build(BatchOptions, None, {"size": size, "max_pixels": max_pixels})  # stylize's ranges
    images.check_writable(output, overwrite)
    cell_settings = gallery.settings(methods, sweep)
    runtime = make_runtime(device.value, precision.value, seed=0)
    try:
        contents = [(p.stem, images.resize_long_side(images.load_image(p, max_pixels).rgb, size)) for p in content]
        styles = [(p.stem, images.load_image(p, max_pixels).rgb) for p in style]
    except InputError as e:
        raise UsageError(str(e)) from None
    with console.ProgressRenderer() as render:
        cells = gallery.run(contents, styles, cell_settings, runtime, vgg_weights, render)
    title = f"stransfer {methods} · {size} px · {runtime.device} {runtime.precision}"
    sheet = gallery.sheet(contents, styles, cells, cell=size, title=title)
    images.save_image(images.pil_to_tensor(sheet), output, overwrite=overwrite)
    console.stdout.print(str(output))


def export(
    model: Annotated[str, typer.Argument(help="A Johnson model: NAME from `stransfer models` or a .pth path.",
                                         show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="torchscript, or onnx (pip install 'stransfer[onnx]').")]
    = "torchscript",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default NAME.pt/.onnx).")]
    = None,
    overwrite: OverwriteOpt = False,
    style: Annotated[list[str] | None, typer.Option(
        "--style", "-s", help="A model holding several styles: the style to bake in (repeat to blend).")] = None,
    style_blend: StyleBlendOpt = None,
) -> None:
    """Export a trained Johnson network to TorchScript or ONNX, to run without stransfer.

    The exported network takes RGB in [0, 1] of any size and gives the stylised image (clamp it to [0, 1]). A model
    holding several styles is exported with one style, or a blend, baked in (-s, --style-blend)."""
    from stransfer import export as exporter

    console.stdout.print(str(exporter.export_model(model, output, fmt, overwrite, style or [],
                                                   numbers("--style-blend", style_blend))))


def models() -> None:
    """List the trained models that --model NAME finds, with their training record."""
    paths = [p for folder in weights.model_dirs() if folder.is_dir() for p in sorted(folder.glob("*.pth"))]
    for path in paths:
        try:
            payload = weights.load_model(path, None)
        except StransferError as e:
            console.stdout.print(f"{path.stem}: unreadable ({e})")
            continue
        wall_s = sum(stage.get("wall_time_s") or 0 for stage in training.lineage_of(payload))
        styles = payload.get("styles")
        if isinstance(styles, list) and len(styles) > 1:
            noun = payload.get("holds") if payload.get("holds") in ("styles", "textures") else "styles"
            style = f"{len(styles)} {noun} (-s NAME): {', '.join(map(str, styles))}"
        else:
            style = (f"style {weights.style_thumbnail(payload['style_image'])}" if payload.get("style_image")
                     else "any style (-s)")
        if payload.get("any_style") and styles:  # MSG-Net: its trained styles by name, or any image
            style += " or any style image (-s FILE)"
        console.stdout.print(
            f"{path.stem}: {payload['engine']}, {path.stat().st_size / 1e6:.1f} MB, {path}; {style}; "
            f"{payload.get('steps', '?')} steps, "
            f"{wall_s / 60:.0f} min on {payload.get('record', {}).get('machine', '?')}")
    if not paths:
        console.stdout.print("no trained models found in " + ", ".join(str(d) for d in weights.model_dirs()))


def weights_fetch(
    arch: Annotated[Arch, typer.Option(help="Backbone architecture.")] = Arch["vgg16"],
    force: Annotated[bool, typer.Option("--force", help="Fetch again even when the cache is verified.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also say which sources failed before one "
                                                                   "answered.")] = False,
) -> None:
    """Download and verify backbone weights into the cache ($STRANSFER_HOME)."""
    with console.ProgressRenderer(verbose=verbose) as render:
        result = weights.fetch(arch.value, force=force, on_event=render)
    if result.already_cached:
        console.stdout.print(f"{arch.value}: already in the cache and verified: {result.path} "
                             f"(from {result.source}); nothing to do")
    else:
        console.stdout.print(f"{arch.value}: fetched from {result.source}, verified, cached at {result.path}")


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
