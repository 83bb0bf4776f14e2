from __future__ import annotations

import torch
from PIL import Image

from stransfer import gallery

from conftest import cli, one_error_line


def test_sheet_lays_out_rows_columns_and_cells():
    contents = [("a", torch.rand(1, 3, 40, 60)), ("b", torch.rand(1, 3, 60, 40))]
    styles = [("s1", torch.rand(1, 3, 50, 50)), ("s2", torch.rand(1, 3, 30, 50))]
    cells = [[[gallery.Cell(torch.rand(1, 3, 40, 60), "x"), gallery.Cell(None, "no model")] for _ in styles]
             for _ in contents]
    sheet = gallery.sheet(contents, styles, cells, cell=64, title="t")
    assert sheet.width == 64 + 8 + 2 * (2 * (64 + 8) + 8)
    assert sheet.height == 30 + (64 + 22) + 8 + 2 * (64 + 22 + 8)


def test_gallery_command_runs_engines_and_marks_missing_models(capsys, tmp_path, make_image, random_weights_file):
    out = tmp_path / "sheet.png"
    code, stdout, err = cli(capsys, "gallery", "-c", make_image("c.png"), "-s", make_image("s.png", seed=3),
                            "--methods", "gatys,johnson", "--size", "32", "-o", out,
                            "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 3 * 32


def test_gallery_sweep_needs_one_engine(capsys, tmp_path, make_image):
    code, _, err = cli(capsys, "gallery", "-c", make_image("c.png"), "-s", make_image("s.png"), "-o",
                       tmp_path / "x.png", "--sweep", "alpha=0,1")
    assert code == 2 and "exactly one engine" in one_error_line(err)
