from __future__ import annotations

import re

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from stransfer import weights
from stransfer.cli import app, build_app
from stransfer.cli.options import EXAMPLES_HEAD, split_epilog

from conftest import cli, one_error_line


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand under `command`, as the words that call it; () is stransfer itself."""
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):  # groups have .commands
        found += command_paths(sub, (*path, name))
    return found


COMMAND = typer.main.get_command(app)
COMMAND_PATHS = command_paths(COMMAND)


def test_the_command_paths_come_from_the_app():
    """Guards the help test below: were the walk to find nothing, it would test nothing."""
    assert {(), ("stylize",), ("train",), ("train", "johnson"), ("weights", "fetch")} <= set(COMMAND_PATHS)


def resolve(path: tuple[str, ...]):
    command = COMMAND
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda path: " ".join(path) or "stransfer")
def test_every_command_has_help(capsys, path):
    code, out, err = cli(capsys, *path, "--help")
    assert code == 0, err
    flat = " ".join(out.split())
    assert " ".join(["Usage: stransfer", *path]) + " [OPTIONS]" in flat
    command = resolve(path)
    assert command.help and " ".join(command.help.split()[:6]) in flat  # its description, not only a usage line
    for name in getattr(command, "commands", {}):  # a group lists its subcommands
        assert name in flat


def test_stylize_help_documents_exit_codes():
    assert "Exit codes: 0" in CliRunner().invoke(app, ["stylize", "--help"]).output


# Walked from a fresh build_app(), so commands made from the registries (trainers, engines) are covered too.
FRESH_COMMAND = typer.main.get_command(build_app())


@pytest.mark.parametrize("path", command_paths(FRESH_COMMAND), ids=lambda path: " ".join(path) or "stransfer")
def test_every_help_opens_with_a_plain_sentence_and_ends_with_two_examples(capsys, path):
    command = FRESH_COMMAND
    for name in path:
        command = command.commands[name]
    first = " ".join(command.help.split("\n\n")[0].split())
    assert first[0].isupper() and first.endswith(".") and len(first) <= 160, first
    assert not re.search(r"[.;!?] [A-Z]", first), f"one sentence: {first}"
    text, examples = split_epilog(command.epilog)
    assert len(examples) == 2, command.epilog
    assert all(example.startswith("stransfer ") for example in examples), examples
    assert any(example.startswith(" ".join(["stransfer", *path])) for example in examples), examples
    code, out, err = cli(capsys, *path, "--help")
    flat = " ".join(out.split())
    assert code == 0 and flat.endswith(" ".join(" ".join([EXAMPLES_HEAD, *examples]).split())), flat[-300:]


def test_stylize_writes_one_output(capsys, make_image, tiny_run, tmp_path):
    content = make_image("photo.jpg", 48, 32)
    out = tmp_path / "result.png"
    code, stdout, err = cli(capsys, "stylize", content, "-o", out, *tiny_run)
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert Image.open(out).size == (32, 21)


def test_several_contents_go_to_a_folder_with_derived_names(capsys, make_image, tiny_run, tmp_path):
    a, b = make_image("a.png"), make_image("b.png", seed=3)
    code, _, err = cli(capsys, "stylize", a, b, "-o", tmp_path / "outs", *tiny_run)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["a_style_gatys.png", "b_style_gatys.png"]


def test_transparent_content_keeps_its_alpha(capsys, tmp_path, tiny_run):
    im = Image.new("RGBA", (40, 40), (200, 30, 30, 255))
    im.paste((0, 0, 0, 0), (0, 0, 20, 40))
    src = tmp_path / "logo.png"
    im.save(src)
    code, _, err = cli(capsys, "stylize", src, "-o", tmp_path / "logo_out.png", *tiny_run)
    assert code == 0, err
    out = Image.open(tmp_path / "logo_out.png")
    assert out.mode == "RGBA" and out.getpixel((2, 16))[3] == 0 and out.getpixel((30, 16))[3] == 255


@pytest.mark.parametrize("case", ["missing", "not_image", "truncated"])
def test_bad_content_is_one_line_exit_1_no_output(capsys, tmp_path, make_image, tiny_run, case):
    if case == "missing":
        content = tmp_path / "nope.jpg"
    elif case == "not_image":
        content = tmp_path / "readme.png"
        content.write_text("hello")
    else:
        data = make_image("whole.jpg", 64, 64).read_bytes()
        content = tmp_path / "cut.jpg"
        content.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out" / "x.png"
    code, _, err = cli(capsys, "stylize", content, "-o", out, *tiny_run)
    assert code == 1
    assert str(content) in one_error_line(err)
    assert not out.exists()


def test_a_folder_without_images_is_a_usage_error(capsys, tmp_path, tiny_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "stylize", empty, "-o", tmp_path / "outs", *tiny_run)
    assert code == 2 and "no images found" in one_error_line(err)


def test_read_only_output_folder(capsys, make_image, tiny_run, read_only_dir):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-o", read_only_dir / "x.png", *tiny_run)
    assert code == 1
    assert "cannot write" in one_error_line(err)
    assert list(read_only_dir.iterdir()) == []


def test_one_bad_file_does_not_stop_the_others(capsys, make_image, tiny_run, tmp_path):
    good = make_image("good.png")
    code, _, err = cli(capsys, "stylize", tmp_path / "missing.png", good, "-o", tmp_path / "outs", *tiny_run)
    assert code == 1
    assert (tmp_path / "outs" / "good_style_gatys.png").exists()
    assert "1 written, 0 skipped, 1 failed" in err


def test_existing_output_is_not_overwritten(capsys, make_image, tiny_run, tmp_path):
    out = tmp_path / "keep.png"
    out.write_bytes(b"mine")
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-o", out, *tiny_run)
    assert code == 1 and "--overwrite" in one_error_line(err)
    assert out.read_bytes() == b"mine"
    code, _, _ = cli(capsys, "stylize", make_image("c.png"), "-o", out, "--overwrite", *tiny_run)
    assert code == 0 and Image.open(out).size == (32, 21)


@pytest.mark.parametrize("extra,pattern", [
    (["--bogus"], "No such option"),
    (["--iterations", "0"], "'iterations' must be >= 1"),
    (["--precision", "fp8"], "fp8"),
    (["--size", "4"], "--size"),
    (["--content-layers", "relu9_1"], "relu9_1"),
    # Usage mistakes that once ended as "internal error", and numbers that are not finite or not sane.
    (["--style-layers", ""], "'style_layers' needs at least one value"),
    (["--content-layers", ","], "'content_layers' needs at least one value"),
    (["--size", "99999999"], "'size' must be <= 16384"),
    (["--threads", "1000000000000"], "'threads' must be <= 1024"),
    (["--threads", "0"], "'threads' must be >= 1"),
    (["--seed", "-1"], "'seed' must be >= 0"),
    (["--seed", str(2**70)], "'seed' must be <="),
    (["--batch-size", "0"], "'batch_size' must be >= 1"),
    (["--max-pixels", "-5"], "'max_pixels' must be >= 1"),
    (["--tile", "64", "--tile-overlap", "96"], "'tile_overlap' must be at most half the tile side, 32 px"),
    (["--tile-overlap", "200"], "'tile_overlap' must be at most half the tile side, 128 px for tile auto"),
    (["--tile", "9999999"], "'tile' must be auto, off or 64 to 16384"),
    (["--style-blend", "nan"], "'style_blend' must be a finite number (got nan)"),
    (["--style-blend", "inf"], "'style_blend' must be a finite number (got inf)"),
    (["--style-blend", "1e309"], "'style_blend' must be a finite number (got inf)"),
    (["--style-blend", "1e300"], "'style_blend' must be <="),
    (["--style-weight", "nan"], "'style_weight' must be a finite number"),
    (["--content-weight", "inf"], "'content_weight' must be a finite number"),
    (["--tv-weight", "-inf"], "'tv_weight' must be a finite number"),
    (["--style-weight", "1e300"], "'style_weight' must be <="),
    (["--scales", "nan,1"], "'scales' must be a finite number"),
    (["--iterations", str(10**30)], "'iterations' must be <="),
    (["--style-scale", "nan"], "'style_scale' must be a finite number"),
    (["--style-scale", "1e9"], "'style_scale' must be <="),
])
def test_usage_errors_exit_2_with_one_line(capsys, make_image, tiny_run, tmp_path, extra, pattern):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-o", tmp_path / "o.png", *tiny_run, *extra)
    assert code == 2
    assert pattern in one_error_line(err) and "internal error" not in err
    assert not (tmp_path / "o.png").exists()


def test_config_file_errors_name_key_and_file(capsys, make_image, tiny_run, tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text("style_wieght = 2\n")
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "--config", cfg, *tiny_run)
    assert code == 2
    line = one_error_line(err)
    assert "mine.toml" in line and "style_wieght" in line


def test_missing_or_broken_style_is_a_usage_error(capsys, make_image, random_weights_file, tmp_path):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "--vgg-weights", random_weights_file)
    assert code == 2 and "needs a style image" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", tmp_path / "nope.jpg")
    assert code == 2 and "nope.jpg" in one_error_line(err)


def test_weights_fetch_reports_every_source_when_none_works(capsys, monkeypatch):
    dead = [weights.TorchvisionSource("http://127.0.0.1:9/vgg16-1234.pth", "1234"),
            weights.TorchvisionSource("http://127.0.0.2:9/vgg16-5678.pth", "5678")]
    monkeypatch.setitem(weights.SOURCES, "vgg16", dead)
    code, _, err = cli(capsys, "weights", "fetch")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and "torchvision (127.0.0.1:9)" in last and "torchvision (127.0.0.2:9)" in last


def test_weights_list_shows_the_cache(capsys, isolated_home):
    code, out, _ = cli(capsys, "weights", "list")
    assert code == 0
    assert str(isolated_home) in out and "vgg16: not cached" in out


def test_same_seed_same_bytes(capsys, make_image, tiny_run, tmp_path):
    content = make_image("c.png")
    outs = [tmp_path / "a.png", tmp_path / "b.png"]
    for out in outs:
        code, _, err = cli(capsys, "stylize", content, "-o", out, "--seed", "3", "--init", "noise", *tiny_run)
        assert code == 0, err
    assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize("extra,pattern", [
    (["--style-blend", "0.5,0.5"], "2 weights for 1 style"),
    (["--style-blend", "a,b"], "numbers"),
    (["--style-scale", "0"], "--style-scale"),
    (["--scales", "0"], "--scales"),
    (["--alpha", "0.5"], "--alpha does not apply to -m gatys"),
])
def test_style_option_errors(capsys, make_image, tiny_run, tmp_path, extra, pattern):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-o", tmp_path / "o.png", *tiny_run, *extra)
    assert code == 2 and pattern in one_error_line(err)


def test_mask_blend_and_colour_options_run(capsys, make_image, tiny_run, tmp_path):
    mask = make_image("mask.png", 20, 20, seed=4)
    second = make_image("second.png", 30, 30, seed=5)
    for extra in (["-s", second, "--mask", mask], ["-s", second, "--style-blend", "3,1"],
                  ["--preserve-color", "luminance"], ["--preserve-color", "histogram"], ["--scales", "2"]):
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}.png"
        code, _, err = cli(capsys, "stylize", make_image("c.png"), "-o", out, *tiny_run, *extra)
        assert code == 0, (extra, err)
        assert out.exists()


# ------------------------------------------------------------------------------------------------- models


@pytest.fixture
def adain_model(tmp_path):
    from stransfer.engines.adain import Decoder

    path = tmp_path / "decoder.pth"
    weights.save_model(path, "adain", Decoder("vgg16").state_dict(), backbone="vgg16", encoder_layer="relu4_1")
    return path


@pytest.mark.parametrize("case", ["unknown", "missing", "garbage", "directory", "fifo", "wrong_engine"])
def test_every_bad_model_is_a_usage_error(capsys, make_image, tmp_path, adain_model, case):
    import os

    model = {"unknown": "no_such_model", "missing": str(tmp_path / "gone.pth"), "directory": str(tmp_path),
             "fifo": str(tmp_path / "pipe.pth"), "garbage": str(tmp_path / "junk.pth"),
             "wrong_engine": str(adain_model)}[case]
    if case == "fifo":
        os.mkfifo(model)
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04 not a zip at all")
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-m", "johnson", "--model", model,
                       "-o", tmp_path / "o.png")
    assert code == 2, err
    assert (model if case != "unknown" else "no model named") in one_error_line(err)


def test_a_tile_given_alone_brings_its_own_overlap(capsys, make_image, tmp_path):
    """--tile 64 with no --tile-overlap: the overlap follows the tile (32) instead of refusing the default 96."""
    code, _, err = cli(capsys, "stylize", make_image("c.png", 160, 120), "-m", "johnson", "--tile", "64",
                       "--size", "160", "-o", tmp_path / "o.png")
    assert code == 0, err
    assert Image.open(tmp_path / "o.png").size == (160, 120)


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_bad_network_timeout_is_a_usage_error(capsys, monkeypatch, value):
    monkeypatch.setenv("STRANSFER_NET_TIMEOUT", value)
    code, _, err = cli(capsys, "weights", "fetch")
    assert code == 2 and "$STRANSFER_NET_TIMEOUT" in one_error_line(err)


@pytest.mark.parametrize("record", ["[1, 2]", '"run"', '{"task": "johnson"}',
                                    '{"task": "johnson", "config": {}, "inputs": {}, "runtime": {}}'])
def test_a_run_folder_whose_config_is_not_a_run_record_is_a_usage_error(capsys, tmp_path, record):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(record)
    code, _, err = cli(capsys, "train", "johnson", "--resume", run)
    assert code == 2 and "not a run record" in one_error_line(err)


def test_a_library_warning_is_one_line(capsys, monkeypatch):
    import warnings

    def warns():
        warnings.warn("first line\nsecond line", UserWarning)
        return []

    monkeypatch.setattr(weights, "model_dirs", warns)
    code, _, err = cli(capsys, "models")
    assert code == 0 and err == "warning: first line second line\n"


def test_eval_and_gallery_have_the_max_pixels_flag_they_advise(capsys, make_image, random_weights_file, tmp_path):
    photo, style = make_image("c.png"), make_image("s.png", seed=1)
    code, _, err = cli(capsys, "eval", photo, "-s", style, "-c", photo, "--max-pixels", "100",
                       "--vgg-weights", random_weights_file)
    assert code == 1 and "more than the limit of 100 (raise it with --max-pixels" in one_error_line(err)
    code, _, err = cli(capsys, "gallery", "-c", photo, "-s", style, "-o", tmp_path / "sheet.png",
                       "--max-pixels", "100", "--vgg-weights", random_weights_file)
    assert code == 2 and "more than the limit of 100" in one_error_line(err)
