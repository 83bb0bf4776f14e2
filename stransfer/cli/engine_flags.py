"""The engine settings `stylize` takes as flags, grouped by the engines they apply to (each is a key of that
engine's config: a flag given to an engine without that key is a usage error, see options.given)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stransfer import color
from stransfer.cli.options import choices

GATYS, STYLE, FAST, SWAP = "Gatys", "Style", "Johnson / AdaIN / swap", "Style-swap"
ColorMode = choices("ColorMode", color.MODES)
StartChoice = choices("Init", ("content", "noise", "style"))
OptimizerChoice = choices("Optimizer", ("lbfgs", "adam"))

ContentWeight = Annotated[float | None, typer.Option(help="Weight of the content loss.", rich_help_panel=GATYS)]
StyleWeight = Annotated[float | None, typer.Option(help="Weight of the style loss.", rich_help_panel=GATYS)]
TvWeight = Annotated[float | None, typer.Option(help="Weight of total variation (smoothness).",
                                                rich_help_panel=GATYS)]
ContentLayers = Annotated[str | None, typer.Option(help="Comma-separated layers, e.g. relu3_3.",
                                                   rich_help_panel=GATYS)]
StyleLayers = Annotated[str | None, typer.Option(help="Comma-separated layers, e.g. relu1_2,relu2_2.",
                                                 rich_help_panel=GATYS)]
StyleLoss = Annotated[str | None, typer.Option(
    help="Style loss: gram, meanstd, mmd-poly, histogram, mrf, or weighted, e.g. gram:1,histogram:1.",
    rich_help_panel=GATYS)]
Start = Annotated[StartChoice | None, typer.Option("--init", help="Starting image.", rich_help_panel=GATYS)]
Optimizer = Annotated[OptimizerChoice | None, typer.Option(rich_help_panel=GATYS)]
Scales = Annotated[str | None, typer.Option(
    "--scales", help="Coarse-to-fine scales: a count N (halving each time) or fractions of --size, e.g. 0.25,0.5,1.",
    rich_help_panel=GATYS)]
Iterations = Annotated[str | None, typer.Option(
    help="Function evaluations per scale, coarse to fine (e.g. 150,80,40), or one number for every scale.",
    rich_help_panel=GATYS)]
Plateau = Annotated[float | None, typer.Option(
    help="End a scale once the loss improves by less than this fraction over 10 evaluations (0 = never): "
         "--iterations becomes a ceiling.", rich_help_panel=GATYS)]
SaveEvery = Annotated[int | None, typer.Option(help="Also save every N iterations (0 = never).",
                                               rich_help_panel=GATYS)]
StyleScale = Annotated[float, typer.Option(help="Style image size relative to the output.", rich_help_panel=STYLE)]
Mask = Annotated[Path | None, typer.Option(
    help="Mask image: white = first style, black = second style (or the content, with one style).",
    rich_help_panel=STYLE)]
PreserveColor = Annotated[ColorMode, typer.Option(
    help="luminance: keep the content's colours; histogram: recolour the style to the content first.",
    rich_help_panel=STYLE)]
Model = Annotated[str | None, typer.Option(
    help="Trained model: a NAME from `stransfer models` or a .pth path.", rich_help_panel=FAST)]
Alpha = Annotated[float | None, typer.Option(help="Content-style trade-off: 0 content, 1 full style (adain, swap).",
                                             rich_help_panel=FAST)]
Tile = Annotated[str | None, typer.Option(
    help="Huge images in tiles: auto (when memory requires), off, or the longest tile side in pixels.",
    rich_help_panel=FAST)]
TileOverlap = Annotated[int | None, typer.Option(
    help="Pixels shared and blended between tiles (default 96, or half the tile when less).",
    rich_help_panel=FAST)]
PatchSize = Annotated[int | None, typer.Option(help="Patch side in relu4_1 cells, 8 px each (swap).",
                                               rich_help_panel=SWAP)]
Stride = Annotated[int | None, typer.Option(help="Step between patches, at most the patch side (swap).",
                                            rich_help_panel=SWAP)]
