"""Bad input, untrusted files, interruption and resource failures: each tried, each with a clear outcome."""

from __future__ import annotations

import os
import resource
import signal
import subprocess

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from stransfer import config, images, weights
from stransfer.engines import ENGINES
from stransfer.errors import ConfigError, InputError, StransferError, WeightsError
from stransfer.fileio import atomic_write

from conftest import cli, gradient_image, one_error_line

# ------------------------------------------------------------------------------------------------ inputs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".jpg", ".png", ".gif", ".webp", ".tif", ""]))
def test_loader_raises_nothing_but_its_own_errors(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        picture = images.load_image(path)
    except InputError as e:  # one input's failure, in one line naming the file
        assert str(path) in str(e) and "\n" not in str(e)
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
        picture = images.load_image(path)
    except InputError as e:
        assert cut < len(data), e  # the whole file always loads
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert picture.size == (30, 40)


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
    config_type = ENGINES[engine].config_type
    try:
        built = config.build(config_type, None, entries)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(built, config_type)
    assert "nonsense" not in entries  # an unknown key is never accepted


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
    assert code == 1 and "not a readable checkpoint to resume from" in one_error_line(err)


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



# ----------------------------------------------------------------------------- special files, never opened


@pytest.fixture
def fifo(tmp_path):
    """A named pipe with no writer: opening it for reading would wait forever."""
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_special_file_as_config_fails_at_once(capsys, make_image, tmp_path, fifo, special):
    path = fifo if special == "fifo" else special
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "--config", path,
                       "-o", tmp_path / "o.png")
    kind = "a FIFO (named pipe)" if special == "fifo" else "a character device"
    assert code == 2 and f"{path}: is {kind}, not a regular file" in one_error_line(err)


def test_a_config_file_too_large_is_refused_unread(capsys, make_image, tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(config.MAX_CONFIG_BYTES + 1)  # sparse: costs no disk
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "--config", big)
    assert code == 2 and "MiB" in one_error_line(err)


def test_models_lists_a_fifo_as_unreadable(capsys, isolated_home):
    models = isolated_home / "models"
    models.mkdir()
    os.mkfifo(models / "x.pth")
    code, out, _ = cli(capsys, "models")
    assert code == 0
    assert f"x: unreadable ({models / 'x.pth'}: is a FIFO (named pipe), not a regular file)" in out


@pytest.mark.parametrize("special", ["fifo", "/dev/null"])
def test_a_special_file_as_content_is_named_for_what_it_is(capsys, make_image, tmp_path, fifo, special,
                                                           random_weights_file):
    path = fifo if special == "fifo" else special
    code, _, err = cli(capsys, "stylize", path, "-s", make_image("s.png"), "-o", tmp_path / "o.png",
                       "--vgg-weights", random_weights_file, "--device", "cpu")
    line = one_error_line(err)
    assert code == 1 and "not a regular file" in line and "empty file" not in line


# ------------------------------------------------------------------------------- numbers: finite, bounded


def test_alpha_nan_is_a_usage_error(capsys, make_image, tmp_path):
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "-m", "adain",
                       "--alpha", "nan", "-o", tmp_path / "o.png")
    assert code == 2 and "'alpha' must be a finite number" in one_error_line(err)


@pytest.mark.parametrize("line", ["style_weight = nan", "tv_weight = inf", "content_weight = -inf",
                                  "scales = [0.5, nan]"])
def test_nan_and_inf_in_toml_are_usage_errors(capsys, make_image, tmp_path, line):
    path = tmp_path / "mine.toml"
    path.write_text(line + "\n")
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-s", make_image("s.png"), "--config", path)
    assert code == 2 and "must be a finite number" in one_error_line(err) and "mine.toml" in err


# -------------------------------------------------------------------------------- library warnings, models


def test_corrupt_exif_is_one_note_naming_the_file(capsys, tmp_path, random_weights_file):
    content = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    gradient_image(40, 30).save(content, exif=exif.tobytes()[:20])  # an EXIF block cut short
    code, _, err = cli(capsys, "stylize", content, "-s", content, "-o", tmp_path / "o.png", "--size", "32",
                       "--iterations", "1", "--vgg-weights", random_weights_file, "--device", "cpu")
    assert code == 0, err
    [note] = err.strip().splitlines()
    assert note.startswith(f"note: {content}: Corrupt EXIF data")


def test_a_model_that_runs_code_is_a_usage_error_without_torchs_advice(capsys, tmp_path, make_image):
    path = tmp_path / "evil.pth"
    torch.save({"format": weights.MODEL_FORMAT, "state_dict": Payload()}, path)
    code, _, err = cli(capsys, "stylize", make_image("c.png"), "-m", "johnson", "--model", path,
                       "-o", tmp_path / "o.png")
    line = one_error_line(err)
    assert code == 2 and "refused to load global" in line and "only tensors" in line
    assert "weights_only" not in err


# ------------------------------------------------------------------ the whole command line, random flags

HOSTILE_NUMBERS = ["nan", "inf", "-inf", "1e309", "-1", "1e300", "-1e-300"]
# Per flag: values a run takes (kept tiny, so a run lasts a moment) and hostile ones; drawn half and half.
FLAG_VALUES = {
    "--size": (["16", "24"], ["-5", "0", "15", "99999999", str(2**64)]),
    "--style-weight": (["0", "0.5", "3"], HOSTILE_NUMBERS),
    "--content-weight": (["0", "1"], HOSTILE_NUMBERS),
    "--tv-weight": (["0", "1"], HOSTILE_NUMBERS),
    "--style-blend": (["1", "1,1", "0.3,0.7"], ["nan,1", "inf", "1e309,1", "0,0", "-1,2", "", "a"]),
    "--style-scale": (["0.5", "1", "2"], HOSTILE_NUMBERS + ["0"]),
    "--alpha": (["0", "0.5", "1"], HOSTILE_NUMBERS + ["1.5"]),
    "--scales": (["1", "2", "0.5,1"], ["nan", "0", "inf,1", "-1", "1e309", ""]),
    "--iterations": (["1", "2", "1,1"], ["0", "-3", str(10**20), ""]),
    "--style-layers": (["relu1_2", "relu1_2,relu2_2"], ["", ",", "relu9_9"]),
    "--threads": (["1", "2"], ["-1", "0", str(2**40)]),
    "--seed": (["0", "7", str(2**63 - 1)], ["-1", str(2**64)]),
    "--tile": (["auto", "off", "64"], ["63", "-1", "nan", str(2**40)]),
    "--tile-overlap": (["0", "8", "32"], ["-1", "96", "99999999"]),
    "--batch-size": (["1", "2"], ["-1", "0", str(2**40)]),
    "--max-pixels": (["100000000", "100"], ["-1", "0"]),  # 100 refuses every photo: a run where all fail
}


@pytest.fixture
def cli_world(tmp_path, isolated_home, random_weights_file):
    """Folders of two photos, clean and with a truncated third, two styles and a tiny Johnson model named
    'tiny'; also a maker of fresh output folders."""
    import dataclasses

    from stransfer.engines.johnson import JohnsonArch, TransformerNet

    arch = JohnsonArch(width=4, residual_blocks=1)
    (isolated_home / "models").mkdir()
    weights.save_model(isolated_home / "models" / "tiny.pth", "johnson", TransformerNet(arch).state_dict(),
                       arch=dataclasses.asdict(arch), style="tiny", backbone="vgg16", steps=1, record={})
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    for folder in (clean, broken):
        folder.mkdir()
        gradient_image(48, 32).save(folder / "a.png")
        gradient_image(32, 40, seed=1).save(folder / "b.jpg")
    (broken / "c.png").write_bytes((clean / "a.png").read_bytes()[:80])
    styles = [tmp_path / "s1.png", tmp_path / "s2.png"]
    for i, path in enumerate(styles):
        gradient_image(40, 40, seed=5 + i).save(path)
    outs = iter(range(10**6))
    return {False: clean, True: broken}, styles, random_weights_file, lambda: tmp_path / f"out{next(outs)}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["gatys", "johnson"]), styles=st.integers(1, 2), broken=st.booleans(),
       flags=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.just(None), max_size=3).flatmap(
           lambda chosen: st.fixed_dictionaries({k: st.one_of(st.sampled_from(FLAG_VALUES[k][0]),
                                                               st.sampled_from(FLAG_VALUES[k][1]))
                                                 for k in chosen})))
def test_any_flags_give_a_documented_exit_code_one_line_per_failure_and_whole_outputs(capsys, cli_world, method,
                                                                                    styles, broken, flags):
    photos, style_files, vgg, new_out = cli_world
    out = new_out()
    args = ["stylize", photos[broken], "-o", out, "-m", method, "--device", "cpu", "--vgg-weights", vgg]
    if method == "gatys":
        args += [*(a for s in style_files[:styles] for a in ("-s", s)), "--iterations", "1", "--size", "16"]
    else:
        args += ["--model", "tiny", "--size", "32"]
    args += [a for flag, value in flags.items() for a in (flag, value)]  # later flags override the defaults
    threads = torch.get_num_threads()
    try:
        code, stdout, err = cli(capsys, *args)
    finally:
        torch.set_num_threads(threads)
    event(f"exit {code}")  # --hypothesis-show-statistics: how often each outcome was reached
    assert code in (0, 1, 2), err
    assert "Traceback" not in stdout + err and "internal error" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(errors) == 1 and err.strip().splitlines() == errors, err
    if code == 1:  # a summary counting the failures, or (nothing run) one error line
        last = err.strip().splitlines()[-1]
        failed = 1 if last.startswith("error:") else int(last.split(" failed")[0].rsplit(" ", 1)[1])
        assert len(errors) == failed, err
    if code == 0:
        assert not errors
    for path in (out.rglob("*") if out.exists() else []):
        assert path.is_file() and not path.name.startswith("."), path
        with Image.open(path) as im:
            im.verify()
