"""The Python API: what the CLI is built on, for notebooks, web back ends and other tools.

    import stransfer
    stransfer.stylize("photo.jpg", style="art.jpg", method="adain").save("out.png")

    stylizer = stransfer.Stylizer("johnson", model="starry_night")   # loads once
    for path in paths:
        stylizer(path, size=1024).save(...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stransfer import color, images, pipeline
from stransfer import config as config_mod
from stransfer.device import MAX_SEED, Runtime, make_runtime
from stransfer.engines import ENGINES, SYNTHESIZERS, EngineInputs, EngineSpec, Guide
from stransfer.errors import ArgumentError, ArgumentTypeError, InputError, UsageError
from stransfer.events import EventCallback, ignore

ImageLike = str | os.PathLike[str] | Image.Image | torch.Tensor
"""A path to an image file, a Pillow image, or RGB in [0, 1] as a (3, H, W) or (1, 3, H, W) tensor."""

MAX_BLEND_WEIGHT = 1e6  # weights are relative; a bound keeps their sum finite
MAX_STYLE_SCALE = 4.0  # a style image 4x the output is already 16x its pixels through VGG


IMAGE_TYPES = (str, os.PathLike, Image.Image, torch.Tensor)
PATH = (str, os.PathLike)
TENSOR_RANGE_SLACK = 1e-3  # rounding a network's output may step this far outside [0, 1]


def expect(name: str, value: Any, types: type | tuple[type, ...], accepted: str, optional: bool = False) -> None:
    """A wrong type raises the library's TypeError, naming the argument and what it accepts."""
    if (value is None and optional) or (isinstance(value, types) and not isinstance(value, bool)):
        return
    raise ArgumentTypeError(f"`{name}` must be {accepted} (got {type(value).__name__})")


def engine_spec(method: str) -> EngineSpec:
    expect("method", method, str, "a method name")
    if method not in ENGINES:
        raise UsageError(f"unknown method '{method}' (known: {', '.join(ENGINES)})")
    return ENGINES[method]


def engine_config(method: str, config: Any = None, **options: Any) -> Any:
    """The engine's settings: its defaults, then the keys of the TOML file `config`, then `options` (None = not
    given); a key the engine does not have is an error naming it. A `config` already built for this engine (an
    instance of its config type) is taken as it is, with no options beside it."""
    spec = engine_spec(method)
    if isinstance(config, spec.config_type):
        if any(v is not None for v in options.values()):
            raise UsageError(f"settings given both in a built config and as arguments ({', '.join(options)})")
        return config
    expect("config", config, PATH, f"a TOML path, a {spec.config_type.__name__} or None", optional=True)
    return config_mod.build(spec.config_type, None if config is None else Path(config), options)


def tensor_picture(name: str, image: torch.Tensor, max_pixels: int) -> images.Picture:
    """A tensor image, refused unless it is float RGB in [0, 1] with every value finite: a NaN would come out as
    a black image and values in [0, 255] as a white one, without a word."""
    rgb = image.unsqueeze(0) if image.dim() == 3 else image
    if rgb.dim() != 4 or rgb.shape[:2] != (1, 3) or not rgb.is_floating_point():
        raise ArgumentError(f"`{name}`: a tensor image must be float RGB (3, H, W) or (1, 3, H, W), got "
                            f"{tuple(image.shape)} {image.dtype}")
    height, width = rgb.shape[-2:]
    if not 1 <= height * width <= max_pixels:
        raise ArgumentError(f"`{name}`: a tensor image needs 1 to {max_pixels:,} pixels (got {width}x{height})")
    rgb = rgb.detach().float().cpu()
    if not bool(torch.isfinite(rgb).all()):
        raise ArgumentError(f"`{name}`: the tensor image holds NaN or infinite values")
    low, high = rgb.min().item(), rgb.max().item()
    if low < -TENSOR_RANGE_SLACK or high > 1 + TENSOR_RANGE_SLACK:
        raise ArgumentError(f"`{name}`: a tensor image holds RGB in [0, 1] (got values from {low:.3g} to "
                            f"{high:.3g}{'; divide 8-bit values by 255' if high > 1.5 else ''})")
    return images.Picture(rgb.clamp(0, 1))


def load_picture(image: ImageLike, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                 name: str = "content") -> images.Picture:
    """Any ImageLike as the engines see it: RGB (1, 3, H, W) in [0, 1], its alpha set aside. `name`: the argument
    it came from, for the messages."""
    expect(name, image, IMAGE_TYPES, "a path, a Pillow image or an RGB tensor in [0, 1]")
    if isinstance(image, torch.Tensor):
        return tensor_picture(name, image, max_pixels)
    if isinstance(image, Image.Image):
        if image.width * image.height < 1:
            raise ArgumentError(f"`{name}`: the Pillow image has no pixels ({image.width}x{image.height})")
        return images.decode(image)
    return images.load_image(Path(image), max_pixels)


def _listed(style: ImageLike | Sequence[ImageLike] | None) -> list[ImageLike]:
    if style is None:
        return []
    if isinstance(style, IMAGE_TYPES):
        return [style]
    expect("style", style, (list, tuple), "an image (path, Pillow image or tensor), a list of them, or None")
    for item in style:
        expect("style", item, IMAGE_TYPES, "a list of images (paths, Pillow images or tensors) or style names")
    return list(style)


def load_styles(style: ImageLike | Sequence[ImageLike] | None,
                max_pixels: int = images.DEFAULT_MAX_PIXELS) -> list[torch.Tensor]:
    """One ImageLike or several as RGB tensors; a bad one is a usage error (the run cannot start)."""
    try:
        return [load_picture(s, max_pixels, "style").rgb for s in _listed(style)]
    except InputError as e:
        raise UsageError(f"style {e}") from None


def parse_blend(weights: Sequence[float] | None) -> list[float] | None:
    """Relative weights of several styles, normalised to sum to 1."""
    if weights is None:
        return None
    expect("style_blend", weights, (list, tuple), "a list of numbers, one per style")
    config_mod.check("style_blend", tuple(weights), ge=0.0, le=MAX_BLEND_WEIGHT)
    if sum(weights) <= 0:
        raise UsageError("`style_blend` weights must not all be 0")
    return [w / sum(weights) for w in weights]


def style_names(style: ImageLike | Sequence[ImageLike] | None, method: str) -> list[str]:
    """The styles an engine whose model holds them (johnson) is asked for, by name; it takes no images."""
    given = _listed(style)
    if any(not isinstance(s, (str, os.PathLike)) for s in given):
        raise UsageError(f"`method` {method} applies a trained model (`model` NAME); it takes no style image "
                         "(a model holding several styles picks them by name: `style` NAME)")
    return [os.fspath(s) for s in given]  # type: ignore[misc]


def names_or_images(style: ImageLike | Sequence[ImageLike] | None, max_pixels: int = images.DEFAULT_MAX_PIXELS
                    ) -> list[str | torch.Tensor]:
    """The styles of an engine that takes either (style_input "either"): a path to an existing file, a Pillow image
    or a tensor is a style image; any other string names a style its model holds."""
    return [os.fspath(s) if isinstance(s, PATH) and not Path(s).is_file() else load_styles(s, max_pixels)[0]
            for s in _listed(style)]


def output_label(method: str, styles: Sequence[str | os.PathLike[str]], config: Any) -> str:
    """What outputs are named after: the style images, the styles picked in a model that holds several, or the
    model of an engine whose style is baked in."""
    spec = engine_spec(method)
    if spec.style_input == "images" and not styles:
        raise UsageError(f"`method` {spec.name} needs a style image: `style` FILE")
    if spec.style_input == "names" and styles:
        return "+".join(os.fspath(s) for s in styles)
    by_style = spec.style_input in ("images", "either") and styles
    return "+".join(Path(s).stem for s in styles) if by_style else Path(config.model).stem


def check_arguments(**given: Any) -> None:
    """The types of the arguments Stylizer and texture share (None: not given, where that is allowed)."""
    for name in ("config", "vgg_weights"):
        if name in given:
            expect(name, given[name], PATH, "a path or None", optional=True)
    for name in ("device", "precision", "preserve_color", "style_loss"):
        if name in given:
            expect(name, given[name], str, "a string", optional=name == "style_loss")
    if "max_pixels" in given:
        config_mod.check("max_pixels", given["max_pixels"], ge=1, integer=True)
    if "on_event" in given and not callable(given["on_event"]):
        raise ArgumentTypeError(f"`on_event` must be callable (got {type(given['on_event']).__name__})")


class Stylizer:
    """One engine, its model loaded and its style images prepared once, to stylise any number of images.

    `method`: gatys, johnson, adain or swap. `style`: one ImageLike or several; for johnson, whose model holds its
    styles, none (a one-style model) or the names of the styles to use (a model holding several), blended by
    `style_blend`. `options`: the engine's settings (e.g. model, alpha, iterations, style_weight; see configs/),
    over those of the TOML file `config`; or `config` is the engine's settings already built. `runtime` replaces
    device/precision/threads/seed where the caller has already made one (e.g. one GPU per torchrun rank)."""

    def __init__(self, method: str = "adain", style: ImageLike | Sequence[ImageLike] | None = None, *,
                 style_blend: Sequence[float] | None = None, style_scale: float = 1.0,
                 mask: ImageLike | None = None, preserve_color: str = "none",
                 config: str | os.PathLike[str] | Any = None, device: str = "auto", precision: str = "auto",
                 threads: int | None = None, seed: int | None = None, runtime: Runtime | None = None,
                 vgg_weights: str | os.PathLike[str] | None = None, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                 on_event: EventCallback = ignore, **options: Any) -> None:
        check_arguments(device=device, precision=precision, vgg_weights=vgg_weights, max_pixels=max_pixels,
                        on_event=on_event, preserve_color=preserve_color)
        self.spec = engine_spec(method)
        self.config = engine_config(method, config, **options)
        self.preserve_color = preserve_color
        styles: list[Any] = (style_names(style, method) if self.spec.style_input == "names"
                             else names_or_images(style, max_pixels) if self.spec.style_input == "either"
                             else load_styles(style, max_pixels))
        self._check(styles, style_blend, mask, style_scale)
        mask_tensor = None if mask is None else self._load_mask(mask, max_pixels)
        self.runtime = runtime or make_runtime(device, precision, threads, seed)
        inputs = EngineInputs(style_weights=parse_blend(style_blend), style_scale=style_scale, mask=mask_tensor,
                              vgg_weights=None if vgg_weights is None else Path(vgg_weights), on_event=on_event)
        self.engine = self.spec.build(self.config, self.runtime, inputs)
        self.styles = self.engine.prepare(styles)

    @staticmethod
    def _load_mask(mask: ImageLike, max_pixels: int) -> torch.Tensor:
        try:
            return images.luminance(load_picture(mask, max_pixels, "mask").rgb)
        except InputError as e:
            raise UsageError(f"mask {e}") from None

    def _check(self, styles: list[Any], blend: Sequence[float] | None, mask: ImageLike | None,
               style_scale: float) -> None:
        """What no engine accepts; each engine's prepare() checks the styles against its own needs."""
        if self.preserve_color not in color.MODES:
            raise UsageError(f"`preserve_color` must be one of {', '.join(color.MODES)} "
                             f"(got {self.preserve_color!r})")
        config_mod.check("style_scale", style_scale, gt=0.0, le=MAX_STYLE_SCALE)
        takes_images = self.spec.style_input == "images"
        if not takes_images and ((mask is not None and not self.spec.masks) or self.preserve_color == "histogram"):
            why = "matches each style as a whole" if self.spec.style_input == "either" else "takes no style images"
            raise UsageError(f"`method` {self.spec.name} {why}, so no `mask` or `preserve_color` histogram")
        if self.spec.style_input == "none" and blend is not None:
            raise UsageError(f"`method` {self.spec.name} takes no style images, so no `style_blend`")
        if takes_images and not styles:
            raise UsageError(f"`method` {self.spec.name} needs a style image: `style` FILE")

    @property
    def batches(self) -> bool:
        """Whether equal-size images may be stacked into one pass (not when each recolours the style)."""
        return self.spec.batches and self.preserve_color != "histogram"

    @property
    def refines(self) -> bool:
        """Whether the engine continues from a previous frame (stylize_tensor's `guide`): Gatys does."""
        return self.spec.refines

    def stylize_tensor(self, content: torch.Tensor, on_event: EventCallback = ignore,
                       guide: Guide | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] at the size wanted -> stylised, same shape, on the CPU. `guide`: a video frame
        after the first, for an engine that `refines`."""
        if guide is not None and not self.refines:
            raise UsageError(f"`method` {self.spec.name} does not continue from a previous frame")
        return pipeline.stylize(self.engine, content, self.styles, self.preserve_color, on_event, guide)

    def __call__(self, content: ImageLike, size: int | None = 512, on_event: EventCallback = ignore) -> Image.Image:
        """Stylise one image, its long side resized to `size` (None: as it is); alpha is kept."""
        picture = load_picture(content)
        if size is not None:
            config_mod.check("size", size, ge=16, le=16384, integer=True)  # the range of stylize's --size
        rgb = picture.rgb if size is None else images.resize_long_side(picture.rgb, size)
        return images.to_pil(self.stylize_tensor(rgb, on_event), picture.alpha)


def stylize(content: ImageLike, style: ImageLike | Sequence[ImageLike] | None = None, method: str = "adain",
            size: int | None = 512, **options: Any) -> Image.Image:
    """Stylise one image and return it as a Pillow image; `options` as for Stylizer. To stylise many images
    with the same style, make one Stylizer: it loads the model and prepares the style once."""
    expect("content", content, IMAGE_TYPES, "a path, a Pillow image or an RGB tensor in [0, 1]")
    return Stylizer(method, style, **options)(content, size)


class TextureMaker:
    """One texture maker (`method`: gatys, net), its model loaded and its styles prepared once, for any number of
    textures. `style`: style images (gatys), or the names of the textures a trained model holds (net; none for a
    one-texture model), blended by `style_blend`. `style_scale` (gatys): the style's size relative to the
    texture's; None = the texture's size, never enlarged. `options`: the maker's settings (see `stransfer
    texture --help`), over those of the TOML file `config`."""

    def __init__(self, method: str = "gatys", style: ImageLike | Sequence[ImageLike] | None = None, *,
                 style_blend: Sequence[float] | None = None, style_scale: float | None = None,
                 config: str | os.PathLike[str] | None = None, device: str = "auto", precision: str = "auto",
                 threads: int | None = None, vgg_weights: str | os.PathLike[str] | None = None,
                 on_event: EventCallback = ignore, **options: Any) -> None:
        check_arguments(config=config, device=device, precision=precision, vgg_weights=vgg_weights,
                        on_event=on_event)
        expect("method", method, str, "a texture method name")
        if method not in SYNTHESIZERS:
            raise UsageError(f"unknown texture method '{method}' (known: {', '.join(SYNTHESIZERS)})")
        self.spec = SYNTHESIZERS[method]
        config_mod.check("style_scale", style_scale, gt=0.0, le=MAX_STYLE_SCALE)
        if self.spec.style_input == "images":
            styles: list[Any] = load_styles(style)
            if not styles:
                raise UsageError(f"texture `method` {method} needs a style image: `style` FILE")
        else:
            styles = style_names(style, method)
            if style_scale is not None:
                raise UsageError(f"texture `method` {method} takes no style images, so no `style_scale`")
        self.config = config_mod.build(self.spec.config_type, None if config is None else Path(config), options)
        self.runtime = make_runtime(device, precision, threads)
        inputs = EngineInputs(style_weights=parse_blend(style_blend), style_scale=style_scale,
                              vgg_weights=None if vgg_weights is None else Path(vgg_weights), on_event=on_event)
        self.maker = self.spec.build(self.config, self.runtime, inputs)
        self.styles = self.maker.prepare(styles)

    def __call__(self, size: int = 512, height: int | None = None, seed: int = 0,
                 on_event: EventCallback = ignore) -> Image.Image:
        """A `size` x `height` (default square) texture; the same seed gives the same texture."""
        expect("size", size, int, "an integer")
        config_mod.check("size", size, ge=16, le=16384, integer=True)
        height = config_mod.check("height", height, ge=16, le=16384, integer=True) or size
        config_mod.check("seed", seed, ge=0, le=MAX_SEED, integer=True)
        return images.to_pil(self.maker.synthesize(self.styles, height, size, seed, on_event))


def texture(style: ImageLike | Sequence[ImageLike] | None = None, size: int = 512, height: int | None = None, *,
            method: str = "gatys", seed: int | None = None, **options: Any) -> Image.Image:
    """A `size` x `height` texture from seeded noise: with `method` gatys, the optimiser toward the style images
    (Gatys et al. 2015, with Risser et al.'s histogram loss by default; minutes); with net, a trained texture
    network (Ulyanov et al. 2016/2017, Li et al. 2017; one pass). `options` as for TextureMaker. To make many
    textures, make one TextureMaker: it loads the model and prepares the styles once."""
    return TextureMaker(method, style, **options)(size, height, 0 if seed is None else seed)
