"""Bad input, untrusted files, interruption and resource failures: each tried, each with a clear outcome."""

from __future__ import annotations

import os
import resource
import signal
import subprocess

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stransfer import config, images, weights
from stransfer.engines import ENGINES
from stransfer.errors import StransferError, WeightsError
from stransfer.fileio import atomic_write

from conftest import gradient_image
from test_cli import cli, one_error_line

# ------------------------------------------------------------------------------------------------ inputs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".jpg", ".png", ".gif", ".webp", ".tif", ""]))
def test_loader_raises_nothing_but_its_own_errors(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        picture = images.load_image(path)
    except StransferError:
        return
    assert picture.rgb.ndim == 4 and picture.rgb.shape[1] == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2000), fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"]))
def test_loader_survives_every_truncation_of_real_files(tmp_path, cut, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    gradient_image(40, 30).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: min(cut, len(data))])
    try:
        images.load_image(path)
    except StransferError:
        pass


toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=12)),
    lambda children: st.lists(children, max_size=4), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(entries=st.dictionaries(st.sampled_from(["style_weight", "iterations", "scales", "style_layers", "init",
                                                "tile", "nonsense", "alpha", "model", "save_every"]),
                               toml_values, max_size=5),
       engine=st.sampled_from(sorted(ENGINES)))
def test_config_builder_raises_nothing_but_config_errors(entries, engine):
    try:
        config.build(ENGINES[engine].config_type, None, entries)
    except StransferError:
        pass


def test_wrong_extension_is_read_by_content(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    gradient_image(20, 10).save(path, format="PNG")
    assert images.load_image(path).size == (10, 20)


def test_animated_webp_uses_first_frame(tmp_path):
    frames = [gradient_image(16, 16, seed=s) for s in range(3)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], format="WEBP")
    assert "first frame" in images.load_image(path).notes[0]


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 megapixels, a few kB on disk
    assert path.stat().st_size < 200_000
    with pytest.raises(StransferError, match="max-pixels"):
        images.load_image(path)


def test_one_pixel_image_and_unicode_paths_with_spaces(capsys, tmp_path, random_weights_file):
    folder = tmp_path / "mes photos ünïcødé"
    folder.mkdir()
    Image.new("RGB", (1, 1), (200, 100, 50)).save(folder / "un pixel ✓.png")
    style = tmp_path / "style.png"
    gradient_image(32, 32).save(style)
    out = tmp_path / "sortie ü" / "résultat 1.png"
    code, _, err = cli(capsys, "stylize", folder / "un pixel ✓.png", "-s", style, "-o", out, "--size", "16",
                       "--iterations", "2", "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    assert Image.open(out).size == (16, 16)


@pytest.mark.parametrize("flag,value,pattern", [
    ("--alpha", "1.5", "'alpha' must be <= 1.0"),
    ("--alpha", "-0.1", "'alpha' must be >= 0.0"),
    ("--tile", "big", "'tile' must be auto, off or a size"),
])
def test_out_of_range_flags_name_the_range(capsys, make_image, tmp_path, flag, value, pattern):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "-m", "adain",
                       "-o", tmp_path / "o.png", flag, value)
    assert code == 2 and pattern in one_error_line(err)


# ------------------------------------------------------------------------------------------ untrusted files


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('PWN_MARKER', '/tmp/never')}",))


def test_model_file_that_runs_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWN_MARKER", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"format": weights.MODEL_FORMAT, "state_dict": Payload()}, path)
    with pytest.raises(WeightsError, match="refused to load"):
        weights.load_model(path, "johnson")
    assert not marker.exists()


def test_checkpoint_of_another_task_is_refused(capsys, tmp_path, make_image, random_weights_file):
    from stransfer.train.loop import CHECKPOINT

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):
        gradient_image(40, 40, seed=i).save(data / f"p{i}.png")
    run = tmp_path / "run"
    code, _, err = cli(capsys, "train", "adain", "--content-data", data, "--style-data", data, "-o",
                       tmp_path / "d.pth", "--run-dir", run, "--steps", "1", "--crop-size", "32",
                       "--batch-size", "1", "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["task"] = "johnson"
    torch.save(state, run / CHECKPOINT)
    code, _, err = cli(capsys, "train", "adain", "--resume", run, "--steps", "2", "--vgg-weights",
                       random_weights_file)
    assert code == 1 and "not of a adain run" in one_error_line(err)
    (run / CHECKPOINT).write_bytes((run / CHECKPOINT).read_bytes()[:100])  # truncated
    code, _, err = cli(capsys, "train", "adain", "--resume", run, "--vgg-weights", random_weights_file)
    assert code == 1 and "cannot resume" in one_error_line(err)


# ------------------------------------------------------------------------------------ interruption, disks


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "checkpoint.pth"
    with atomic_write(path) as f:
        torch.save({"step": 1}, f)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), atomic_write(path) as f:
        f.write(b"half a checkpoint")
        raise Crash  # a kill or a full disk in the middle of the write
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A place that takes 64 kB and then refuses: a tmpfs that size as root (No space left on device); otherwise,
    as a user may not mount, the kernel's per-process file size limit (File too large). Yields (folder, error)."""
    path = tmp_path / "tiny"
    path.mkdir()
    if os.geteuid() != 0:
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, limits[1]))
        try:
            yield path, "File too large"
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, handler)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)]).returncode:
        pytest.fail("cannot mount a tmpfs for the full-disk test")
    try:
        yield path, "No space left"
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_full_disk_gives_a_clear_error_and_no_partial_file(tiny_disk):
    folder, message = tiny_disk
    noise = torch.rand(1, 3, 512, 512)  # incompressible: about 800 kB as PNG
    with pytest.raises(StransferError, match=message) as err:
        images.save_image(noise, folder / "big.png")
    assert "\n" not in str(err.value)
    assert list(folder.iterdir()) == []

