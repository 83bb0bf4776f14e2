"""A stylisation request as a form arrives, and as it runs: every field checked, and every refusal a 4xx naming the
field, before the request takes a place in the queue."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from starlette.datastructures import UploadFile

from stransfer import api, color, images
from stransfer.engines import ENGINES
from stransfer.serve.catalogue import Catalogue
from stransfer.serve.problems import ServeError, from_exception
from stransfer.serve.uploads import Uploads

TEXTURE = "texture"  # stransfer.texture: a style's texture from noise, no photo
# They optimise pixels (Gatys et al.): minutes at 512 px on a CPU, so they run only as jobs.
SLOW_METHODS = ("gatys", TEXTURE)
# Engine settings a request may give, named as the engines' configs name them; each applies to the engines whose
# config has it (a texture is Gatys underneath but takes only its iterations).
OPTIONS = ("model", "alpha", "style_weight", "iterations")
FIELDS = ("content", "style", "style_name", "method", "size", "preserve_color", *OPTIONS)
DEFAULT_SIZE = 512  # stylize's default, or the server's largest size where that is smaller


def methods() -> list[str]:
    return [*ENGINES, TEXTURE]


def options_of(method: str) -> list[str]:
    """The settings in OPTIONS that `method` takes."""
    if method == TEXTURE:
        return ["iterations"]
    return [f.name for f in dataclasses.fields(ENGINES[method].config_type) if f.name in OPTIONS]


def takes_images(method: str) -> bool:
    return method == TEXTURE or ENGINES[method].style_input == "images"


@dataclass
class Form:
    """The fields as sent (None: not sent)."""

    content: UploadFile | None = None
    style: UploadFile | None = None
    style_name: str | None = None
    method: str = "adain"
    size: int | None = None
    preserve_color: str = "none"
    model: str | None = None
    alpha: float | None = None
    style_weight: float | None = None
    iterations: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """A checked request: everything an engine run needs, decoded."""

    method: str
    size: int
    content: images.Picture | None
    style: torch.Tensor | None  # an engine that takes images: the upload's or a shipped style's RGB
    style_key: str | None  # what identifies that style in the engine cache: its bytes' sha256 or its name
    style_name: str | None  # johnson: a style the model holds
    options: tuple[tuple[str, Any], ...]  # settings given, for the engine's config
    preserve_color: str


def _check_fields(form: Form, sent: set[str], slow_allowed: bool, max_size: int) -> None:
    unknown = sorted(sent - set(FIELDS))
    if unknown:
        raise ServeError(422, "bad_field", f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})", unknown[0])
    if form.method not in methods():
        raise ServeError(422, "invalid_value", f"unknown method {form.method!r} (methods: {', '.join(methods())})",
                         "method")
    if form.method in SLOW_METHODS and not slow_allowed:
        raise ServeError(422, "invalid_value", f"method {form.method} takes minutes: submit it as a job "
                         "(POST /v1/jobs) and follow its progress", "method")
    if form.size is not None and not 16 <= form.size <= max_size:
        raise ServeError(422, "invalid_value", f"size must be 16 to {max_size} (got {form.size})", "size")
    if form.preserve_color not in color.MODES:
        raise ServeError(422, "invalid_value", f"preserve_color must be one of {', '.join(color.MODES)} "
                         f"(got {form.preserve_color!r})", "preserve_color")
    for name in OPTIONS:
        if getattr(form, name) is not None and name not in options_of(form.method):
            raise ServeError(422, "bad_field", f"{name} does not apply to method {form.method}", name)
    if form.method == TEXTURE and (form.content is not None or form.preserve_color != "none"):
        field = "content" if form.content is not None else "preserve_color"
        raise ServeError(422, "bad_field", f"a texture has no photo: no {field}", field)
    if form.method != TEXTURE and form.content is None:
        raise ServeError(422, "bad_field", "content (the photo) is missing", "content")


def _check_model(form: Form, catalogue: Catalogue) -> None:
    """A model is named from the catalogue, never given as a path; and it must be one for this engine."""
    if form.model is None:
        return
    if form.model not in catalogue.models:
        raise ServeError(422, "bad_model", f"unknown model {form.model!r} (models: "
                         f"{', '.join(catalogue.models) or 'none'})", "model")
    default = ENGINES[form.method].config_type().model
    wanted = catalogue.models[default].engine if default in catalogue.models else form.method
    if catalogue.models[form.model].engine != wanted:
        raise ServeError(422, "bad_model", f"model {form.model} is a {catalogue.models[form.model].engine} model; "
                         f"method {form.method} takes {wanted} models", "model")


def _check_style(form: Form, catalogue: Catalogue) -> None:
    if form.style is not None and form.style_name is not None:
        raise ServeError(422, "bad_field", "give a style image or a style_name, not both", "style_name")
    if not takes_images(form.method):
        _check_held_style(form, catalogue)
    elif form.style is None and form.style_name is None:
        raise ServeError(422, "bad_field", f"method {form.method} needs a style: an image, or a style_name", "style")
    elif form.style_name is not None and not _has_image(catalogue, form.style_name):
        shipped = [s.name for s in catalogue.styles.values() if s.image is not None]
        raise ServeError(422, "bad_style", f"no shipped style image named {form.style_name!r} "
                         f"(styles with images: {', '.join(shipped) or 'none'})", "style_name")


def _has_image(catalogue: Catalogue, name: str) -> bool:
    return name in catalogue.styles and catalogue.styles[name].image is not None


def _check_held_style(form: Form, catalogue: Catalogue) -> None:
    """A model that holds its styles (Johnson) is given no image; a style_name must be one it holds."""
    if form.style is not None:
        raise ServeError(422, "bad_field", f"method {form.method} applies a trained model: give model and "
                         "style_name, not a style image", "style")
    model = catalogue.models.get(form.model or ENGINES[form.method].config_type().model)
    if model is None or (form.style_name is None and len(model.styles) <= 1):
        return  # its one style (the engine says if the default model is missing)
    if form.style_name is None or form.style_name not in model.styles:
        given = "no style_name" if form.style_name is None else f"no style {form.style_name!r}"
        raise ServeError(422, "bad_style", f"model {model.name} holds {', '.join(model.styles)}: {given}",
                         "style_name")


def _engine_options(form: Form) -> tuple[tuple[str, Any], ...]:
    """The settings given, checked against the engine's own ranges (a texture's against Gatys')."""
    given = {name: getattr(form, name) for name in options_of(form.method) if getattr(form, name) is not None}
    try:
        api.engine_config("gatys" if form.method == TEXTURE else form.method, **given)
    except Exception as e:  # noqa: BLE001 - the library's ConfigError names the key; anything else is said as is
        error = from_exception(e)
        raise ServeError(422, "invalid_value", error.message, getattr(e, "key", None) or error.field) from None
    return tuple(sorted(given.items()))


async def checked(form: Form, sent: set[str], catalogue: Catalogue, uploads: Uploads, *, slow_allowed: bool,
                  max_size: int) -> RunRequest:
    """The request, or the first thing wrong with it (cheap checks first, images decoded last)."""
    _check_fields(form, sent, slow_allowed, max_size)
    _check_model(form, catalogue)
    _check_style(form, catalogue)
    options = _engine_options(form)
    content = None if form.content is None else (await uploads.picture(form.content, "content"))[0]
    style, style_key = None, None
    if form.style is not None:
        picture, digest = await uploads.picture(form.style, "style")
        style, style_key = picture.rgb, digest
    elif form.style_name is not None and takes_images(form.method):
        style, style_key = catalogue.style_image(form.style_name), f"shipped:{form.style_name}"
    held = None if takes_images(form.method) else form.style_name
    size = min(DEFAULT_SIZE, max_size) if form.size is None else form.size
    return RunRequest(form.method, size, content, style, style_key, held, options, form.preserve_color)
