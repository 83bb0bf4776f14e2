from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stransfer import gallery
from stransfer.errors import UsageError

from conftest import cli, one_error_line

GAP, CAPTION_H, TITLE_H = 8, 22, 30  # the sheet's layout, as gallery.sheet draws it


def cell_origin(row: int, column: int, k: int, cell: int, per_style: int) -> tuple[int, int]:
    """Top-left pixel of result k for content `row` and style `column` on a titled sheet."""
    x = cell + GAP + column * (per_style * (cell + GAP) + GAP) + k * (cell + GAP)
    y = TITLE_H + cell + CAPTION_H + GAP + row * (cell + CAPTION_H + GAP)
    return x, y


def solid(colour: tuple[float, float, float], h: int, w: int) -> torch.Tensor:
    return torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, h, w).clone()


def assert_empty_frame(sheet: np.ndarray, x: int, y: int, cell: int) -> None:
    """A missing result: an empty cell framed in the muted grey."""
    box = sheet[y: y + cell, x: x + cell]
    assert (box[0] == gallery.MUTED).all() and (box[-1] == gallery.MUTED).all()
    assert (box[:, 0] == gallery.MUTED).all() and (box[:, -1] == gallery.MUTED).all()
    assert (box[1:-1, 1:-1] == gallery.BACKGROUND).all()


def caption_strip(sheet: np.ndarray, x: int, y: int, cell: int) -> np.ndarray:
    return sheet[y + cell: y + cell + CAPTION_H, x: x + cell].astype(int)


def test_sheet_lays_out_rows_columns_and_cells():
    cell, colours = 64, {(0, 0, 0): (0.8, 0.1, 0.1), (0, 1, 0): (0.1, 0.8, 0.1), (1, 0, 0): (0.1, 0.1, 0.8),
                         (1, 1, 0): (0.9, 0.9, 0.1)}
    contents = [("a", solid((0.2, 0.2, 0.2), 40, 60)), ("b", solid((0.5, 0.5, 0.5), 60, 40))]
    styles = [("s1", torch.rand(1, 3, 50, 50)), ("s2", torch.rand(1, 3, 30, 50))]
    cells = [[[gallery.Cell(solid(colours[r, s, 0], 40, 40), "x"), gallery.Cell(None, "no model")]
              for s in range(len(styles))] for r in range(len(contents))]
    sheet = gallery.sheet(contents, styles, cells, cell=cell, title="t")
    assert sheet.width == cell + GAP + 2 * (2 * (cell + GAP) + GAP)
    assert sheet.height == TITLE_H + (cell + CAPTION_H) + GAP + 2 * (cell + CAPTION_H + GAP)
    pixels = np.asarray(sheet)
    for (r, s, k), colour in colours.items():
        x, y = cell_origin(r, s, k, cell, per_style=2)
        expected = np.round(np.array(colour) * 255)
        assert np.abs(pixels[y + cell // 2, x + cell // 2] - expected).max() <= 1, (r, s)
        assert caption_strip(pixels, x, y, cell).min() < 60  # a result's caption, in ink
        x, y = cell_origin(r, s, 1, cell, per_style=2)
        assert_empty_frame(pixels, x, y, cell)
        missing = caption_strip(pixels, x, y, cell)
        assert (missing != gallery.BACKGROUND).any(axis=2).sum() > 10  # captioned all the same
        assert missing.min() >= min(gallery.MUTED) - 1  # in the muted grey, no darker
    for r, grey in enumerate((0.2, 0.5)):  # each row headed by its content
        y = cell_origin(r, 0, 0, cell, 2)[1]
        assert np.abs(pixels[y + cell // 2, cell // 2].astype(int) - round(grey * 255)).max() <= 1


def test_gallery_command_runs_engines_and_marks_missing_models(capsys, monkeypatch, tmp_path, make_image,
                                                                random_weights_file):
    drawn = []

    def spy(contents, styles, cells, **kwargs):
        drawn.append(cells)
        return sheet(contents, styles, cells, **kwargs)

    sheet = gallery.sheet
    monkeypatch.setattr(gallery, "sheet", spy)
    out = tmp_path / "sheet.png"
    code, stdout, err = cli(capsys, "gallery", "-c", make_image("c.png"), "-s", make_image("s.png", seed=3),
                            "--methods", "gatys,johnson", "--size", "32", "-o", out,
                            "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    [cells] = drawn
    [[[gatys, johnson]]] = cells  # one content, one style, a cell per engine
    assert gatys.image is not None and gatys.caption.startswith("gatys · ")
    assert johnson.image is None and johnson.caption == "johnson: no model"  # no model is named "s"
    with Image.open(out) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB"))
    x, y = cell_origin(0, 0, 0, 32, per_style=2)
    assert (pixels[y: y + 21, x: x + 32] != gallery.BACKGROUND).any()  # gatys's 32x21 result is there
    assert_empty_frame(pixels, *cell_origin(0, 0, 1, 32, per_style=2), 32)


@pytest.mark.parametrize("methods", ["gatys,adain", ""])
def test_gallery_sweep_needs_one_engine(capsys, tmp_path, make_image, methods):
    code, _, err = cli(capsys, "gallery", "-c", make_image("c.png"), "-s", make_image("s.png"), "-o",
                       tmp_path / "x.png", "--methods", methods, "--sweep", "alpha=0,1")
    assert code == 2 and "exactly one engine" in one_error_line(err)


def test_a_sweep_reads_its_values_as_the_settings_type():
    assert gallery.settings("adain", "alpha=0.25,1") == [("adain", {"alpha": 0.25}), ("adain", {"alpha": 1.0})]
    assert gallery.settings("swap", "patch_size=3,5") == [("swap", {"patch_size": 3}), ("swap", {"patch_size": 5})]
    with pytest.raises(UsageError, match="'alpha' must be a number"):
        gallery.settings("adain", "alpha=half")
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        gallery.settings("adain", "colour=1")
