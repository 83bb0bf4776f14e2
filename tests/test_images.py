from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stransfer import images
from stransfer.errors import InputError, OutputError, UsageError

from conftest import gradient_image


def test_rgb_loads_as_unit_range_tensor(make_image):
    pic = images.load_image(make_image("a.png", 40, 30))
    assert pic.rgb.shape == (1, 3, 30, 40) and pic.rgb.dtype == torch.float32
    assert 0.0 <= pic.rgb.min() and pic.rgb.max() <= 1.0
    assert pic.alpha is None and pic.notes == []


def test_exif_orientation_is_applied(tmp_path):
    im = gradient_image(40, 20)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif)
    assert images.load_image(path).size == (40, 20)  # (height, width): portrait once rotated


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA", "I;16"])
def test_other_modes_become_rgb(tmp_path, mode):
    base = gradient_image(24, 16)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        im = Image.fromarray(arr.astype(np.uint16))
        ext = "png"
    else:
        im, ext = base.convert(mode), ("tif" if mode == "CMYK" else "png")
    path = tmp_path / f"img-{mode.replace(';', '')}.{ext}"
    im.save(path)
    pic = images.load_image(path)
    assert pic.rgb.shape == (1, 3, 16, 24)
    assert 0.0 <= pic.rgb.min() and pic.rgb.max() <= 1.0
    if mode == "I;16":  # 16-bit values scale to [0, 1], not clipped at 255
        grey = np.asarray(base.convert("L"), dtype=np.float32) / 255
        assert np.allclose(pic.rgb[0, 0].numpy(), grey, atol=1e-3)
    assert pic.alpha is None  # LA's alpha band is fully opaque here: nothing to keep


def test_alpha_is_set_aside_and_put_back_where_the_format_allows(tmp_path):
    rgba = gradient_image(20, 10).convert("RGBA")
    alpha = Image.new("L", (20, 10), 0)
    alpha.paste(255, (0, 0, 10, 10))
    rgba.putalpha(alpha)
    src = tmp_path / "alpha.png"
    rgba.save(src)
    pic = images.load_image(src)
    assert pic.alpha is not None and pic.alpha[0, 0, 0, 0] == 1.0 and pic.alpha[0, 0, 0, 15] == 0.0

    out_png = images.save_image(pic.rgb, tmp_path / "out.png", alpha=pic.alpha)
    back = Image.open(out_png)
    assert back.mode == "RGBA" and back.getpixel((15, 5))[3] == 0 and back.getpixel((2, 5))[3] == 255
    out_jpg = images.save_image(pic.rgb, tmp_path / "out.jpg", alpha=pic.alpha)
    assert Image.open(out_jpg).mode == "RGB"


def test_palette_with_transparency_keeps_its_alpha(tmp_path):
    im = gradient_image(16, 16).convert("P")
    clear = np.asarray(im) == 0  # the pixels drawn with palette entry 0, made transparent below
    assert 0 < clear.sum() < clear.size
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    alpha = images.load_image(path).alpha
    assert alpha is not None and alpha.shape == (1, 1, 16, 16)
    expected = torch.from_numpy(np.where(clear, 0.0, 1.0).astype(np.float32))
    assert torch.equal(alpha[0, 0], expected)


def test_animated_gif_uses_first_frame_and_says_so(tmp_path):
    frames = [gradient_image(16, 16, seed=s).convert("P") for s in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    pic = images.load_image(path)
    assert pic.size == (16, 16) and "first frame" in pic.notes[0]


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "not_image", "truncated"])
def test_unreadable_inputs_raise_one_line_input_errors(tmp_path, make_image, case):
    if case == "missing":
        path = tmp_path / "missing.jpg"
    elif case == "directory":
        path = tmp_path
    elif case == "empty":
        path = tmp_path / "empty.jpg"
        path.write_bytes(b"")
    elif case == "not_image":
        path = tmp_path / "notes.jpg"
        path.write_text("this is not a picture\n")
    else:
        full = make_image("full.jpg", 64, 64).read_bytes()
        path = tmp_path / "truncated.jpg"
        path.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError) as err:
        images.load_image(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_pixel_limit_guards_against_decompression_bombs(make_image):
    path = make_image("big.png", 100, 100)
    with pytest.raises(InputError, match="max-pixels"):
        images.load_image(path, max_pixels=9_999)
    assert images.load_image(path, max_pixels=10_000).size == (100, 100)


def test_resize_long_side_keeps_aspect():
    x = torch.rand(1, 3, 300, 200)
    assert images.resize_long_side(x, 150).shape == (1, 3, 150, 100)
    assert images.fit_long_side(3, 1000, 100) == (1, 100)


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF")])
def test_save_by_extension(tmp_path, ext, fmt):
    path = images.save_image(torch.rand(1, 3, 8, 12), tmp_path / f"out{ext}")
    with Image.open(path) as im:
        assert im.format == fmt and im.size == (12, 8)


def test_png_round_trip_is_exact(tmp_path):
    x = torch.randint(0, 256, (1, 3, 8, 8)).float() / 255
    path = images.save_image(x, tmp_path / "x.png")
    torch.testing.assert_close(images.load_image(path).rgb, x)


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="--overwrite"):
        images.save_image(torch.rand(1, 3, 4, 4), target)
    assert target.read_bytes() == b"precious"
    images.save_image(torch.rand(1, 3, 4, 4), target, overwrite=True)
    assert Image.open(target).size == (4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]  # no temporary left over


def test_unknown_extension_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=".gif"):
        images.save_image(torch.rand(1, 3, 4, 4), tmp_path / "x.gif")


def test_missing_output_folder_is_created(tmp_path):
    path = images.save_image(torch.rand(1, 3, 4, 4), tmp_path / "a" / "b" / "x.png")
    assert path == tmp_path / "a" / "b" / "x.png" and Image.open(path).size == (4, 4)


def test_read_only_folder_gives_a_clear_error_and_no_file(read_only_dir):
    target = read_only_dir / "out.png"
    with pytest.raises(OutputError, match="cannot write") as err:
        images.save_image(torch.rand(1, 3, 4, 4), target)
    assert "\n" not in str(err.value)
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.parametrize("head, expected", [
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "an audio file with no video stream"),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "an audio file with no video stream"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "an audio file with no video stream"),
    (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "a media file, not an image"),
    (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00", "a media file, not an image"),
    (b"plain words", "not an image Pillow can read"),
])
def test_audio_and_video_files_are_named_as_such(tmp_path, head, expected):
    path = tmp_path / "input.jpg"
    path.write_bytes(head + bytes(64))
    with pytest.raises(InputError, match=expected):
        images.load_image(path)
