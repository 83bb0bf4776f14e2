from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from stransfer import tiling
from stransfer.device import make_runtime
from stransfer.engines.adain import AdaIN
from stransfer.engines.decoder import Decoder, encoder_from
from stransfer.engines.johnson import Johnson, JohnsonArch, TransformerNet
from stransfer.errors import ConfigError, InputError


@pytest.mark.parametrize("length,tile,overlap,multiple", [(100, 40, 8, 8), (37, 16, 4, 4), (64, 64, 8, 8)])
def test_tiles_cover_the_image_on_the_pooling_grid(length, tile, overlap, multiple):
    offsets = tiling.starts(length, tile, overlap, multiple)
    covered = torch.zeros(length, dtype=torch.bool)
    for o in offsets:
        covered[o: length if o == offsets[-1] else o + tile] = True
        assert o % multiple == 0
    assert covered.all()
    for a, b in zip(offsets, offsets[1:]):
        assert a + tile - b >= overlap  # neighbours share at least the overlap


@pytest.mark.parametrize("length,tile", [(1024, 1008), (1024, 512), (2048, 1008), (600, 256)])
def test_tiles_are_fitted_to_the_image(length, tile):
    overlap, multiple = 96, 8
    pieces = tiling.regions(length, length, tile, overlap, multiple)
    rows = sorted({(r.start, r.stop) for r, _ in pieces})
    # as many tiles as the longest side allows, but no longer than covering with the overlap needs
    assert len(rows) == len(tiling.starts(length, tile, overlap, multiple))
    assert rows[0][0] == 0 and rows[-1][1] == length
    assert all(stop - start <= tile + multiple for start, stop in rows)
    assert all(a_stop - b_start >= overlap for (_, a_stop), (b_start, _) in zip(rows, rows[1:]))
    # fewer pixels processed than in tiles of the full side: 1024 px in 1008 px tiles was 3.9x the image
    area = sum((r.stop - r.start) * (c.stop - c.start) for r, c in pieces)
    unfitted = (len(rows) * tile) ** 2
    assert area < 0.9 * unfitted
    if tile > length * 0.9:
        assert area < 1.3 * length * length


def blur(x: torch.Tensor) -> torch.Tensor:
    kernel = torch.ones(3, 1, 5, 5) / 25
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=3)


def test_blended_tiles_match_the_whole_image_for_a_local_operation():
    image = torch.rand(1, 3, 70, 90)
    tiled = tiling.apply(image, tile=32, overlap=16, fn=blur, multiple=8)
    assert tiled.shape == image.shape
    assert (tiled - blur(image)).abs().max() < 0.02  # only the fade zones see the tiles' own borders
    identity = tiling.apply(image, tile=32, overlap=16, fn=lambda t: t, multiple=8)
    torch.testing.assert_close(identity, image)


def test_tile_choice():
    assert tiling.choose_tile("off", 5000, 5000, 1000, 8) == 0
    assert tiling.choose_tile("256", 1000, 800, 1000, 8) == 256
    assert tiling.choose_tile("256", 200, 100, 1000, 8) == 0  # smaller than one tile
    assert tiling.choose_tile("auto", 100, 100, 1000, 8) == 0
    auto = tiling.choose_tile("auto", 20000, 20000, 1000, 8)
    assert 256 <= auto < 20000 and auto % 8 == 0
    assert auto * auto * 1000 <= tiling.MAX_WORKING_SET
    with pytest.raises(ConfigError):
        tiling.parse_tile("huge")


def smooth_image(h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return F.interpolate(torch.rand(1, 3, h // 16, w // 16, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def seam_score(out: torch.Tensor, positions: list[int]) -> float:
    """Mean jump across the given columns relative to the mean jump between any two neighbouring columns."""
    jumps = (out[..., :, 1:] - out[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    return float(jumps[[p - 1 for p in positions]].mean() / jumps.mean())


def test_johnson_tiles_share_the_whole_images_statistics():
    torch.manual_seed(0)
    engine = Johnson(TransformerNet(JohnsonArch(width=4, residual_blocks=1)).eval(), make_runtime("cpu", "fp32"),
                     tile="off")
    image, styles = smooth_image(96, 160), engine.prepare([])
    whole = engine.stylize(image, styles)
    engine.tile, engine.tile_overlap = "64", 32
    tiled = engine.stylize(image, styles)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.03
    assert seam_score(tiled, [32, 64, 96]) < 2.0
    assert all(norm.frozen is None for norm in engine.norms)  # nothing left frozen for the next image


@pytest.mark.parametrize("alpha", [1.0, 0.5])  # 0.5: the content skips go through the tiler too
def test_adain_tiles_agree_with_the_whole_image(random_vgg16, alpha):
    state = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    torch.manual_seed(0)
    engine = AdaIN(encoder_from("vgg16", state), Decoder().eval(), make_runtime("cpu", "fp32"),
                   alpha=alpha, tile="off")
    image = smooth_image(96, 160)
    whole = engine.stylize(image, engine.prepare([smooth_image(64, 64)]))
    engine.tile, engine.tile_overlap = "64", 32
    tiled = engine.stylize(image, engine.prepare([smooth_image(64, 64)]))
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.05


def test_overlap_past_half_a_tile_and_too_many_tiles_are_refused():
    assert tiling.overlap("128", 64) == 64
    assert tiling.overlap("off", 5000) == 5000
    with pytest.raises(ConfigError, match="at most half the tile side, 32 px"):
        tiling.overlap("64", 64)
    with pytest.raises(ConfigError, match="128 px for tile auto"):
        tiling.overlap("auto", 129)
    assert len(tiling.regions(512, 512, 64, 32, 8)) == 400  # a thumbnail in the smallest tiles still runs
    with pytest.raises(InputError, match="would be [0-9,]+ tiles, more than 10,000"):
        tiling.regions(16384, 16384, 64, 32, 8)


@pytest.mark.parametrize("tile, expected", [("auto", 96), ("off", 96), ("1024", 96), ("128", 64), ("64", 32)])
def test_an_unset_overlap_follows_the_tile(tile, expected):
    assert tiling.overlap(tile, None) == expected
