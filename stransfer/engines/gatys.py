"""Gatys et al. (2016), "Image Style Transfer Using Convolutional Neural Networks": optimise the pixels."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from stransfer import losses, tiling, winograd
from stransfer.backbone import VGGFeatures, deepest_layer
from stransfer.config import each, param, with_defaults
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec, Guide, Styles, SynthesizerSpec, style_set
from stransfer.errors import ConfigError
from stransfer.events import EventCallback, Snapshot, Step, ignore
from stransfer.images import fit_long_side, resize
from stransfer.weights import resolve


MAX_WEIGHT = 1e6


def scale_fractions(text: str) -> tuple[float, ...]:
    """`scales` as a flag gives it: a count N (each scale half the next, "3" -> 0.25,0.5,1) or the fractions."""
    if text.strip().isdigit():
        count = int(text)
        if count < 1:
            raise ValueError("must be at least 1")
        return tuple(0.5 ** (count - 1 - i) for i in range(count))
    return tuple(float(v) for v in text.split(",") if v.strip())


@dataclass(frozen=True)
class GatysConfig(tiling.TileConfig):
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Loss network.")
    # Max pooling is how VGG was trained; Gatys et al. preferred average pooling, kept for comparison.
    pooling: str = param("max", choices=("max", "avg"), help="Pooling of the loss network.")
    # relu3_3 keeps the photo's layout and edges and leaves textures free (Johnson et al.'s choice for VGG16).
    content_layers: tuple[str, ...] = param(("relu3_3",), help="Comma-separated layers of the content loss.")
    # One layer per VGG16 block up to block 4: fine strokes to larger motifs; block 5 adds little at 512 px.
    style_layers: tuple[str, ...] = param(("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                                          help="Comma-separated layers of the style loss.")
    style_loss: str = param("gram", check=losses.parse_style_loss, help=(
        "Style loss: gram, meanstd, mmd-poly, histogram, mrf, or weighted, e.g. gram:1,histogram:1."))
    # Both losses are relative squared errors, so the weights read as "how much more style than content";
    # 5 paints while edges stay (benchmarks/gatys_quality_speed.py). The bound keeps the sum finite.
    content_weight: float = param(1.0, ge=0.0, le=MAX_WEIGHT, help="Weight of the content loss.")
    style_weight: float = param(5.0, ge=0.0, le=MAX_WEIGHT, help="Weight of the style loss.")
    # A little smoothness removes the high-frequency speckle L-BFGS leaves in flat regions.
    tv_weight: float = param(1.0, ge=0.0, le=MAX_WEIGHT, help="Weight of total variation (smoothness).")
    init: str = param("content", choices=("content", "noise", "style"), help="Starting image.")
    # L-BFGS reaches a given result in fewer evaluations than Adam, which is kept for comparison.
    optimizer: str = param("lbfgs", choices=("lbfgs", "adam"), help="Optimiser of the pixels.")
    # Each scale starts from the previous result upsampled, so the fine scale only refines; under 64 px skipped.
    scales: tuple[float, ...] = param((0.25, 0.5, 1.0), gt=0.0, le=1.0, parse=scale_fractions, help=(
        "Coarse-to-fine scales: a count N (halving each time) or fractions of --size, e.g. 0.25,0.5,1."))
    # The fine scale decides the result; coarse evaluations past about 45 change nothing (an evaluation at
    # 512 px costs 16 at 128 px). benchmarks/gatys_quality_speed.py
    iterations: tuple[int, ...] = param((45, 45, 100), ge=1, le=100_000, help=(
        "Function evaluations per scale, coarse to fine (e.g. 150,80,40), or one number for every scale."))
    plateau: float = param(0.0, ge=0.0, le=0.5, help=(
        "End a scale once the loss improves by less than this fraction over 10 evaluations (0 = never): "
        "--iterations becomes a ceiling."))
    # Pixels live in [0, 1], so 0.02 moves each by at most about 2% a step (benchmarks/gatys_quality_speed.py).
    learning_rate: float = param(0.02, gt=0.0, le=1.0, help="Adam's learning rate (--optimizer adam).")
    save_every: int = param(0, ge=0, help="Also save every N evaluations (0 = never).")


# Working set per output pixel, fp32 (bf16 takes less), that --tile auto budgets with: an evaluation with the Gram
# loss (forward and backward through VGG16 to relu4_3, with stransfer's allocator settings) plus L-BFGS's 50
# history pairs of image-sized vectors, which a budget must count or a long run outgrows it
# (benchmarks/gatys_memory.py measures both). A style loss adds its own (losses.StyleLoss.extra_bytes_per_pixel).
BYTES_PER_PIXEL = 5700


# L-BFGS's loss is not monotone from one evaluation to the next: the plateau rule compares the best loss so
# far with the best of PLATEAU_WINDOW evaluations earlier.
PLATEAU_WINDOW = 10


def plateaued(losses: list[float], threshold: float) -> bool:
    """Whether the best loss improved by less than `threshold` (a fraction of it) over the last
    PLATEAU_WINDOW evaluations; never before there are that many."""
    if threshold <= 0 or len(losses) <= PLATEAU_WINDOW:
        return False
    before, now = min(losses[:-PLATEAU_WINDOW]), min(losses)
    return before - now < threshold * abs(before)


# A weight and a loss of the pixels added to the objective (the temporal term of a video frame).
ExtraTerm = tuple[float, Callable[[torch.Tensor], torch.Tensor]]


class _Plateau(Exception):
    """Raised inside the optimiser's closure to end a scale whose loss has stopped improving."""


MIN_SCALE_SIDE = 64  # below this VGG's relu4_3 map is under 8x8: nothing left to learn from


@dataclass(frozen=True)
class Region:
    """Where a set of style targets applies: the whole image (mask None) or a soft mask in [0, 1]."""

    mask: torch.Tensor | None
    targets: dict[str, dict[str, Any]]


class Gatys:
    """Optimises the output image itself so its VGG features match the content and its Grams the style."""

    name: ClassVar[str] = "gatys"

    def __init__(self, config: GatysConfig, runtime: Runtime, backbone: VGGFeatures,
                 inputs: EngineInputs = EngineInputs()) -> None:
        if config.scales[-1] != 1.0 or list(config.scales) != sorted(set(config.scales)):
            raise ConfigError(f"'scales' must increase and end at 1.0, the output's size (got {config.scales})")
        if len(config.iterations) not in (1, len(config.scales)):
            raise ConfigError(f"'iterations' needs one number or one per scale ({len(config.scales)}), "
                              f"got {len(config.iterations)}")
        self.objective = losses.StyleObjective.parse(config.style_loss, config.style_layers)
        if inputs.mask is not None and not self.objective.takes_masks:
            masked = ", ".join(n for n, loss in losses.STYLE_LOSSES.items() if loss.masks)
            raise ConfigError(f"`mask` works with the style losses {masked} (got '{config.style_loss}')")
        self.config = dataclasses.replace(config, tile_overlap=tiling.overlap(config.tile, config.tile_overlap))
        self.runtime, self.inputs = runtime, inputs
        self.backbone = winograd.adopt(backbone.to(memory_format=torch.channels_last), runtime)

    def prepare(self, styles: list[torch.Tensor]) -> Styles:
        return style_set(self.name, styles, self.inputs)

    def schedule(self, height: int, width: int) -> list[tuple[tuple[int, int], int]]:
        """(size, evaluations) per scale, coarse to fine, for an output of height x width."""
        cfg = self.config
        iterations = each(cfg.iterations, len(cfg.scales))
        long_side = max(height, width)
        plan = []
        for scale, n in zip(cfg.scales, iterations):
            side = round(long_side * scale)
            if side >= MIN_SCALE_SIDE or scale == cfg.scales[-1]:
                plan.append((fit_long_side(height, width, side) if scale < 1.0 else (height, width), n))
        return plan

    def _style_targets(self, styles: list[torch.Tensor], size: tuple[int, int]) -> list[dict[str, dict[str, Any]]]:
        """Style-loss targets of each style, resized so its long side is the output's times style_scale."""
        long_side = max(1, round(max(size) * self.inputs.style_scale))
        targets = []
        for style in styles:
            s = resize(style, fit_long_side(style.shape[-2], style.shape[-1], long_side))
            with torch.no_grad():
                targets.append(self.objective.targets(self._features(s.to(self.runtime.device), self.objective.taps)))
        return targets

    def regions(self, styles: Styles, size: tuple[int, int]) -> list[Region]:
        """The style targets for an output of `size`. Without a mask: one region, the styles' targets blended
        by weight. With a mask: white takes the first style, black the second (or stays content).
        Computed once per size, however many content images share it."""
        return styles.at(size, lambda: self._build_regions(self._style_targets(styles.images, size), size))

    def _build_regions(self, targets: list[dict[str, dict[str, Any]]], size: tuple[int, int]) -> list[Region]:
        if self.inputs.mask is None:
            weights = self.inputs.style_weights or [1.0 / len(targets)] * len(targets)
            return [Region(None, self.objective.blend(targets, weights))]
        mask = resize(self.inputs.mask, size).to(self.runtime.device)
        regions = [Region(mask, targets[0])]
        if len(targets) > 1:
            regions.append(Region(1.0 - mask, targets[1]))
        return regions

    def _initial_image(self, content: torch.Tensor, styles: Styles) -> torch.Tensor:
        if self.config.init == "noise":
            return torch.rand(content.shape, generator=self.runtime.generator()).to(content.device)
        if self.config.init == "style":
            return resize(styles.images[0], tuple(content.shape[-2:])).to(content.device)
        return content.clone()

    def stylize(self, content: torch.Tensor, styles: Styles, on_event: EventCallback = ignore) -> torch.Tensor:
        content = content.to(self.runtime.device)
        plan = self.schedule(*content.shape[-2:])
        per_pixel = BYTES_PER_PIXEL + self.objective.extra_bytes_per_pixel
        tiles = [tiling.choose_tile(self.config.tile, *size, per_pixel, multiple=8) for size, _ in plan]
        total = sum(n * len(tiling.regions(*size, tile, self.config.tile_overlap, 8)) if tile else n
                    for (size, n), tile in zip(plan, tiles))
        x, done = None, 0
        for i, ((size, evaluations), tile) in enumerate(zip(plan, tiles)):
            scaled_content = resize(content, size)
            if x is None:
                start = self._initial_image(scaled_content, styles)
            else:
                # Departure from plain coarse-to-fine: the upsampled result lacks the photo's fine detail,
                # which the few fine-scale evaluations cannot rebuild, so the content's own high
                # frequencies (what the coarse scale could not hold) are added back first.
                coarse_content = resize(resize(scaled_content, tuple(x.shape[-2:])), size)
                start = (resize(x, size) + scaled_content - coarse_content).clamp(0, 1)
            stage = f"gatys {max(size)} px" + (f" ({i + 1}/{len(plan)})" if len(plan) > 1 else "")
            if tile:
                x, done = self._optimize_tiled(start, scaled_content, self.regions(styles, size), evaluations,
                                               tile, done, total, stage, on_event)
            else:
                x, used = self._optimize(start, scaled_content, self.regions(styles, size), evaluations, done,
                                         total, stage, on_event)
                done += used
        assert x is not None
        return x.detach().clamp(0, 1).cpu()

    def refine(self, content: torch.Tensor, styles: Styles, guide: Guide,
               on_event: EventCallback = ignore) -> torch.Tensor:
        """A video frame after the first (Ruder et al. 2016): optimise at the output's size only, from the
        previous output warped onto this frame, with a temporal loss (mean squared difference from it on the
        pixels the flow trusts) beside the content and style losses. Never tiled: frames are video-sized."""
        content = content.to(self.runtime.device)
        size = tuple(content.shape[-2:])
        anchor, mask = guide.start.to(content), guide.mask.to(content)

        def temporal(x: torch.Tensor) -> torch.Tensor:
            return (mask * (x - anchor).pow(2)).sum() / (3 * mask.sum()).clamp_min(1.0)

        x, _ = self._optimize(anchor.clamp(0, 1), content, self.regions(styles, size), guide.evaluations, 0,
                              guide.evaluations, f"gatys {max(size)} px (from the previous frame)", on_event,
                              extra=(guide.weight, temporal))
        return x.detach().clamp(0, 1).cpu()

    def _optimize_tiled(self, start: torch.Tensor, content: torch.Tensor, regions: list[Region], evaluations: int,
                        tile: int, done: int, total: int, stage: str,
                        on_event: EventCallback) -> tuple[torch.Tensor, int]:
        """One scale in overlapping tiles, in place: each tile starts from the image as the tiles before it
        left it (so neighbours continue each other's strokes), is optimised against the whole style's targets,
        and is blended back with feathered edges."""
        x = start.clone()
        h, w = x.shape[-2:]
        pieces = tiling.regions(h, w, tile, self.config.tile_overlap, 8)
        for k, (rows, cols) in enumerate(pieces):
            piece_regions = [Region(None if r.mask is None else r.mask[..., rows, cols], r.targets) for r in regions]
            result, used = self._optimize(x[..., rows, cols], content[..., rows, cols], piece_regions,
                                          evaluations, done, total, f"{stage} tile {k + 1}/{len(pieces)}", on_event)
            weight = tiling.feather(rows, cols, h, w, self.config.tile_overlap).to(x)
            x[..., rows, cols] = weight * result + (1 - weight) * x[..., rows, cols]
            done += used
        return x, done

    def _features(self, image: torch.Tensor, taps: set[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
        # oneDNN's convolutions run fastest channels-last (VGG16 to relu4_3, forward + backward, 512 px:
        # benchmarks/layout.py); L-BFGS needs the pixels contiguous, so the layout changes on the way in.
        with self.runtime.autocast():
            return self.backbone(image.contiguous(memory_format=torch.channels_last), taps)

    def _optimize(self, start: torch.Tensor, content: torch.Tensor, regions: list[Region], evaluations: int,
                  done: int, total: int, stage: str, on_event: EventCallback,
                  extra: ExtraTerm | None = None) -> tuple[torch.Tensor, int]:
        """The optimised image and the evaluations it took (`evaluations`, or fewer once the loss plateaus);
        `extra` (weight, loss of the pixels) adds a term, e.g. temporal."""
        cfg = self.config
        with torch.no_grad():
            content_targets = {k: v.float() for k, v in self._features(content, cfg.content_layers).items()}
        taps = set(cfg.content_layers) | self.objective.taps
        # L-BFGS flattens the gradient with view(): the pixels must be one contiguous block.
        x = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        history: list[float] = []

        def closure() -> torch.Tensor:
            if plateaued(history, cfg.plateau):
                raise _Plateau  # L-BFGS has no other way out of a step; x holds its latest update
            optimizer.zero_grad(set_to_none=True)
            feats = self._features(x, taps)
            terms = {"content": losses.content_loss(feats, content_targets),
                     "style": torch.stack([self.objective(feats, r.targets, r.mask) for r in regions]).mean(),
                     "tv": losses.total_variation(x)}
            weights = {"content": cfg.content_weight, "style": cfg.style_weight, "tv": cfg.tv_weight}
            if extra is not None:
                terms["temporal"], weights["temporal"] = extra[1](x), extra[0]
            loss, logged = losses.weighted_total(terms, weights)
            loss.backward()
            history.append(logged["total"])
            step = done + len(history)
            on_event(Step(step, total, logged, stage=stage))
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                on_event(Snapshot(step, x.detach().clamp(0, 1).cpu()))
            return loss

        if cfg.optimizer == "lbfgs":
            # Tolerances at zero: L-BFGS never stops on its own; the count or the plateau rule ends a scale.
            optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
                [x], lr=1.0, max_iter=evaluations, max_eval=evaluations,
                tolerance_grad=0.0, tolerance_change=0.0, history_size=50)
        else:
            optimizer = torch.optim.Adam([x], lr=cfg.learning_rate)
        try:
            while len(history) < evaluations:
                optimizer.step(closure)
                if cfg.optimizer == "adam":
                    with torch.no_grad():
                        x.clamp_(0, 1)  # projected gradient: pixels stay displayable
        except _Plateau:
            pass
        return x.detach(), len(history)


# Texture synthesis (Gatys et al. 2015; Risser et al. 2017): the same optimiser with no photo to keep, started
# from noise. Gram alone lets colours wash out and drift in long runs; Risser's histogram term holds them.
TEXTURE_DEFAULTS = {"content_weight": 0.0, "init": "noise", "style_loss": "gram:1,histogram:1"}
GatysTextureConfig = with_defaults(GatysConfig, "GatysTextureConfig", **TEXTURE_DEFAULTS)

# VGG's zero padding shows the network where the canvas ends, and the optimiser paints edge strokes there (a
# darker frame, the painting's motifs along the edges: benchmarks/texture.py measures the frame). So the canvas
# is this fraction of its long side larger on every side, and the margin is cropped away.
TEXTURE_MARGIN = 1 / 32


def texture_canvas(height: int, width: int) -> tuple[int, int, int]:
    """(canvas height, canvas width, margin) for a height x width texture."""
    margin = round(max(height, width) * TEXTURE_MARGIN)
    return height + 2 * margin, width + 2 * margin, margin


def synthesize_texture(engine: Gatys, styles: Styles, height: int, width: int,
                       on_event: EventCallback = ignore) -> torch.Tensor:
    """A height x width texture of the engine's style(s), from its seeded noise, cut from the middle of a
    larger canvas (texture_canvas; the engine's style_scale is relative to the canvas). The engine's config
    should weigh content at 0 (TEXTURE_DEFAULTS), so the blank stand-in for a photo constrains nothing."""
    if engine.config.content_weight != 0:
        raise ConfigError("a texture has no content image: 'content_weight' must be 0")
    canvas_height, canvas_width, margin = texture_canvas(height, width)
    canvas = engine.stylize(torch.zeros(1, 3, canvas_height, canvas_width), styles, on_event)
    return canvas[..., margin:margin + height, margin:margin + width]


def build(config: GatysConfig, runtime: Runtime, inputs: EngineInputs) -> Gatys:
    tiling.overlap(config.tile, config.tile_overlap)  # refused before the backbone loads
    taps = losses.StyleObjective.parse(config.style_loss, config.style_layers).taps
    deepest = deepest_layer(config.backbone, (*config.content_layers, *taps))
    backbone = VGGFeatures(config.backbone, pooling=config.pooling, deepest=deepest)
    state, _origin = resolve(config.backbone, inputs.vgg_weights, inputs.on_event)
    backbone.load_weights(state)
    return Gatys(config, runtime, backbone.to(runtime.device), inputs)


class GatysTexture:
    """The Gatys engine as a texture maker: its seeded noise optimised toward the styles alone."""

    name: ClassVar[str] = "gatys"

    def __init__(self, engine: Gatys) -> None:
        self.engine = engine

    def prepare(self, styles: list[torch.Tensor]) -> Styles:
        return self.engine.prepare(styles)

    def synthesize(self, styles: Styles, height: int, width: int, seed: int,
                   on_event: EventCallback = ignore) -> torch.Tensor:
        """The style is seen at the texture's size unless a style_scale was given, but never enlarged: a texture
        bigger than the artwork repeats its strokes at their own size rather than blowing them up."""
        long_side = max(height, width)
        given = self.engine.inputs.style_scale
        scale = given if given is not None else min(1.0, max(styles.images[0].shape[-2:]) / long_side)
        engine = copy.copy(self.engine)  # the same networks, with the style scale of this size
        engine.inputs = dataclasses.replace(engine.inputs,
                                            style_scale=scale * long_side / max(texture_canvas(height, width)[:2]))
        torch.manual_seed(seed)  # the engine's noise start
        return synthesize_texture(engine, styles, height, width, on_event)


def build_texture(config: GatysConfig, runtime: Runtime, inputs: EngineInputs) -> GatysTexture:
    if config.content_weight != 0:
        raise ConfigError("a texture has no content image: 'content_weight' must be 0")
    return GatysTexture(build(config, runtime, inputs))


SPEC = EngineSpec(name="gatys", config_type=GatysConfig, build=build, style_input="images", refines=True)
TEXTURE_SPEC = SynthesizerSpec(name="gatys", config_type=GatysTextureConfig, build=build_texture,
                               style_input="images", fixed=("content_weight", "content_layers", "init"),
                               summary="the Gatys optimiser from noise (any style image; minutes)")
