"""The Python API under bad arguments: the library's own exceptions (ValueError or TypeError subclasses) that say
what is accepted, never a foreign exception from deep inside, never a silent black or white image."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import stransfer
from stransfer.errors import ArgumentError, ArgumentTypeError, StransferError

FAST = dict(method="johnson", model="tiny", device="cpu")


@pytest.mark.parametrize("content, error, words", [
    (12345, ArgumentTypeError, "`content` must be a path, a Pillow image or an RGB tensor"),
    (torch.full((1, 3, 32, 32), float("nan")), ArgumentError, "NaN or infinite"),
    (torch.full((3, 16, 16), float("inf")), ArgumentError, "NaN or infinite"),
    (torch.full((3, 16, 16), 200.0), ArgumentError, "divide 8-bit values by 255"),
    (torch.full((3, 16, 16), -0.5), ArgumentError, r"RGB in \[0, 1\]"),
    (torch.rand(2, 3, 16, 16), ArgumentError, "float RGB"),
    (torch.rand(3, 0, 16), ArgumentError, "needs 1 to"),
    (Image.new("RGB", (0, 0)), ArgumentError, "no pixels"),
])
def test_bad_content_raises_the_librarys_own_value_and_type_errors(tiny_johnson, content, error, words):
    with pytest.raises(error, match=words) as raised:
        stransfer.stylize(content, **FAST)
    assert isinstance(raised.value, TypeError if error is ArgumentTypeError else ValueError)


@pytest.mark.parametrize("arguments, words", [
    (dict(size="512"), "'size' must be an integer"),
    (dict(size=512.0), "'size' must be an integer"),
    (dict(size=True), "'size' must be an integer"),
    (dict(method=7), "`method` must be a method name"),
    (dict(style=3.5), "`style` must be"),
    (dict(style=[None]), "`style` must be"),
    (dict(style_blend=2), "`style_blend` must be a list"),
    (dict(style_blend=["a"]), "'style_blend' must be a number"),
    (dict(threads="2"), "'threads' must be an integer"),
    (dict(seed=1.5), "'seed' must be an integer"),
    (dict(device=0), "`device` must be a string"),
    (dict(config=3), "`config` must be a TOML path"),
    (dict(max_pixels="many"), "'max_pixels' must be an integer"),
    (dict(on_event="print"), "`on_event` must be callable"),
])
def test_arguments_of_the_wrong_type_say_what_is_accepted(tiny_johnson, arguments, words):
    with pytest.raises(ArgumentTypeError, match=words):
        stransfer.stylize(torch.rand(3, 16, 16), **{**FAST, **arguments})


def test_texture_checks_its_size_and_style_types(random_weights_file):
    for bad, words in [(dict(size=None), "`size` must be an integer"), (dict(style=5), "`style` must be"),
                       (dict(style_loss=3), "'style_loss' must be a string")]:
        arguments = {"style": torch.rand(3, 16, 16), "size": 32, **bad}
        with pytest.raises(ArgumentTypeError, match=words):
            stransfer.texture(vgg_weights=random_weights_file, device="cpu", **arguments)


# Generated arguments: mostly wrong, sometimes right, so both the refusals and the successful calls are seen.
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.none(), st.text(max_size=4))
TENSORS = st.builds(
    lambda shape, fill, dtype: torch.full(shape, fill).to(dtype),
    st.sampled_from([(3, 16, 16), (1, 3, 16, 12), (2, 3, 8, 8), (4, 8, 8), (3, 0, 4), (16, 16), (1, 1, 3, 8, 8)]),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.2, 255.0, math.nan, math.inf, -math.inf]),
    st.sampled_from([torch.float32, torch.float64, torch.uint8, torch.int64, torch.bool]),
)
IMAGES = st.one_of(TENSORS, NUMBERS, st.just("no/such/photo.png"), st.just(""), st.binary(max_size=8),
                   st.lists(st.integers(0, 3), max_size=3), st.just(Image.new("RGB", (12, 10))))
OPTIONS = st.fixed_dictionaries({}, optional={
    "size": st.one_of(NUMBERS, st.sampled_from([16, 24, 17, 15, 16385])),
    "style": IMAGES,
    "style_blend": st.one_of(NUMBERS, st.lists(NUMBERS, max_size=3)),
    "method": st.one_of(st.sampled_from(["johnson", "picasso", ""]), NUMBERS),  # no engine that needs VGG16
    "tile": st.one_of(st.sampled_from(["auto", "off", "64", "63", "x"]), NUMBERS),
    "tile_overlap": NUMBERS,
    "preserve_color": st.one_of(st.sampled_from(["none", "luminance", "sepia"]), NUMBERS),
    "precision": st.one_of(st.sampled_from(["fp32", "auto", "fp64"]), NUMBERS),
    "seed": NUMBERS,
    "threads": st.one_of(NUMBERS, st.sampled_from([1, 2])),
    "max_pixels": NUMBERS,
    "style_scale": NUMBERS,
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=IMAGES, options=OPTIONS)
def test_generated_bad_arguments_raise_only_the_librarys_errors(tiny_johnson, tmp_path, monkeypatch,
                                                                 content, options):
    monkeypatch.chdir(tmp_path)
    before, threads = set(os.listdir(tmp_path)), torch.get_num_threads()
    try:
        result = stransfer.stylize(content, **{"model": "tiny", "device": "cpu", "method": "johnson", **options})
    except StransferError as e:
        assert str(e) and "\n" not in str(e)  # one line, as the CLI prints it
    else:
        assert isinstance(result, Image.Image) and result.width * result.height > 0
    finally:
        torch.set_num_threads(threads)
    assert set(os.listdir(tmp_path)) == before  # the API returns images; it writes no file
