from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from stransfer import api, batch, images
from stransfer.errors import UsageError

from conftest import cli, gradient_image, one_error_line


@pytest.fixture
def photo_tree(tmp_path):
    """photos/a.png, photos/b.jpg, photos/sub/c.png, photos/sub/deeper/d.png (+ a non-image text file)."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    for i, rel in enumerate(["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.png"]):
        gradient_image(40, 32, seed=i).save(root / rel)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def johnson_model(tiny_johnson):
    """Flags that stylise with the tiny random Johnson model."""
    return ["-m", "johnson", "--model", "tiny", "--size", "32", "--device", "cpu"]


def test_collect_mirrors_folders_and_follows_links_without_looping(photo_tree):
    (photo_tree / "sub" / "loop").symlink_to(photo_tree)  # a symlink loop
    flat = batch.collect([str(photo_tree)])
    assert [(s.name, str(r)) for s, r in flat] == [("a.png", "."), ("b.jpg", ".")]
    deep = batch.collect([str(photo_tree)], recursive=True)
    names = sorted((str(r), s.name) for s, r in deep)
    assert ("sub", "c.png") in names and ("sub/deeper", "d.png") in names
    assert len({s.resolve() for s, _ in deep}) == 4  # each image once, loop or not


def test_collect_globs_stdin_and_duplicates(photo_tree):
    found = batch.collect([str(photo_tree / "**" / "*.png")], recursive=True)
    assert sorted(s.name for s, _ in found) == ["a.png", "c.png", "d.png"]
    listed = batch.collect(["-", str(photo_tree / "a.png")], stdin=io.StringIO(f"{photo_tree / 'a.png'}\n\n"))
    assert [s.resolve() for s, _ in listed] == [(photo_tree / "a.png").resolve()]  # named twice, run once
    with pytest.raises(UsageError, match=r"^no file matches .*\*\.gif$"):
        batch.collect([str(photo_tree / "*.gif")])


def test_plan_names_outputs_and_refuses_collisions(tmp_path):
    sources = [(Path("x/a.jpg"), Path("sub")), (Path("x/b.png"), Path("."))]
    items = batch.plan(sources, tmp_path, "{stem}-{style}.{ext}", "wave", "johnson")
    assert [i.output for i in items] == [tmp_path / "sub" / "a-wave.jpg", tmp_path / "b-wave.png"]
    with pytest.raises(UsageError, match=r"a\.jpg and a\.png would both write .*a\.png; change --name"):
        batch.plan([(Path("a.jpg"), Path(".")), (Path("a.png"), Path("."))], tmp_path, "{stem}.png", "s", "m")
    with pytest.raises(UsageError, match=r"--name '\{nope\}\.png': unknown field \{nope\}"):
        batch.plan(sources, tmp_path, "{nope}.png", "s", "m")


FIELDS = {"stem": "photo", "style": "wave", "method": "johnson", "ext": "jpg"}


@pytest.mark.parametrize("template, words", [
    ("{stem.__class__.__mro__}.png", r"unknown field \{stem.__class__.__mro__\}"),
    ("{stem[0]}.png", r"unknown field \{stem\[0\]\}"),
    ("{stem!r}.png", r"\{stem\} takes no format spec or conversion"),
    ("{stem:>40}.png", r"\{stem\} takes no format spec or conversion"),
    ("{0}.png", r"unknown field \{0\}"),
    ("{}.png", r"empty field"),
    ("{stem.png", r"expected '\}'"),
    ("../{stem}.png", "not a file name inside the output folder"),
    ("/tmp/{stem}.png", "not a file name inside the output folder"),
])
def test_name_templates_fill_only_the_documented_fields(template, words):
    with pytest.raises(UsageError, match=words) as raised:
        batch.fill_name(template, FIELDS)
    assert raised.value.exit_code == 2


def test_name_templates_fill_fields_subfolders_and_escaped_braces():
    assert batch.fill_name("{stem}_{style}_{method}.{ext}", FIELDS) == "photo_wave_johnson.jpg"
    assert batch.fill_name("by_{method}/{stem}{{1}}.png", FIELDS) == "by_johnson/photo{1}.png"


def test_folder_run_mirrors_tree_and_isolates_failures(capsys, tmp_path, photo_tree, johnson_model):
    (photo_tree / "zero.png").write_bytes(b"")
    (photo_tree / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "stylize", photo_tree, "-r", "-o", out, "--json", "--batch-size", "2",
                            *johnson_model)
    assert code == 1
    records = [json.loads(line) for line in stdout.splitlines()]
    assert sorted(r["status"] for r in records) == ["failed"] * 2 + ["written"] * 4
    assert {Path(r["output"]).relative_to(out).as_posix() for r in records if r["status"] == "written"} == {
        "a_tiny_johnson.png", "b_tiny_johnson.png", "sub/c_tiny_johnson.png", "sub/deeper/d_tiny_johnson.png"}
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 2
    assert "4 written, 0 skipped, 2 failed" in err
    assert not list(out.rglob("*.tmp")) and not (out / "zero_tiny_johnson.png").exists()

    code, stdout, err = cli(capsys, "stylize", photo_tree, "-r", "-o", out, "--skip-existing", *johnson_model)
    assert code == 1 and "0 written, 4 skipped, 2 failed" in err


def test_dry_run_lists_the_plan_and_writes_nothing(capsys, tmp_path, photo_tree, johnson_model):
    code, stdout, _ = cli(capsys, "stylize", photo_tree, "-o", tmp_path / "out", "--dry-run", *johnson_model)
    assert code == 0
    assert stdout.count("-> ") == 2 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_skip_existing_finishes(tmp_path, johnson_model, isolated_home):
    """30 files, 3 broken: SIGTERM halfway stops after the current file; a rerun completes the job."""
    src = tmp_path / "many"
    src.mkdir()
    for i in range(27):
        gradient_image(48, 40, seed=i).save(src / f"img{i:02d}.png")
    (src / "trunc.png").write_bytes((src / "img00.png").read_bytes()[:60])
    (src / "text.png").write_text("hello")
    (src / "zero.png").write_bytes(b"")
    out = tmp_path / "out"
    # 256 px keeps each file busy long enough to be interrupted mid-run.
    args = [sys.executable, "-m", "stransfer", "stylize", str(src), "-o", str(out), *johnson_model[:-4],
            "--size", "256", "--device", "cpu", "--json"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STRANSFER_HOME": str(isolated_home)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.png")) if out.exists() else []) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "stopped early by SIGTERM" in stderr
    first = len(list(out.glob("*.png")))
    assert 5 <= first < 27
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))
    for png in out.glob("*.png"):
        Image.open(png).verify()

    rerun = subprocess.run([*args, "--skip-existing"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1  # the three broken files
    statuses = [json.loads(line)["status"] for line in rerun.stdout.splitlines()]
    assert statuses.count("skipped") == first and statuses.count("failed") == 3
    assert len(list(out.glob("*.png"))) == 27
    assert sum(1 for line in rerun.stderr.splitlines() if line.startswith("error:")) == 3


def test_empty_glob_and_bad_template_are_usage_errors(capsys, tmp_path, johnson_model):
    code, _, err = cli(capsys, "stylize", str(tmp_path / "*.jpg"), *johnson_model)
    assert code == 2 and "no file matches" in one_error_line(err)
    gradient_image(20, 20).save(tmp_path / "one.png")
    code, _, err = cli(capsys, "stylize", str(tmp_path), "--name", "{oops}.png", *johnson_model)
    assert code == 2 and "unknown field" in one_error_line(err)


@pytest.mark.slow
def test_torchrun_shards_files_so_each_output_is_written_once(tmp_path, johnson_model, isolated_home):
    src = tmp_path / "twenty"
    src.mkdir()
    for i in range(20):
        gradient_image(36, 30, seed=i).save(src / f"p{i:02d}.png")
    out = tmp_path / "out"
    env = {**os.environ, "STRANSFER_HOME": str(isolated_home), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "stransfer", "stylize", str(src), "-o", str(out), "--json", *johnson_model],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    written = [json.loads(line)["output"] for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(written) == 20 and len(set(written)) == 20
    assert len(list(out.glob("*.png"))) == 20
    assert run.stderr.count("20 written, 0 skipped, 0 failed") == 1  # the summary, gathered on rank 0


@pytest.fixture
def three_photos(tmp_path):
    """in/a.png, in/banner.png (20:1, what broke the Gatys engine) and in/c.png."""
    src = tmp_path / "in"
    src.mkdir()
    gradient_image(40, 32).save(src / "a.png")
    gradient_image(400, 20, seed=1).save(src / "banner.png")
    gradient_image(40, 32, seed=2).save(src / "c.png")
    return src


def test_any_error_of_one_file_is_that_files_failure(capsys, tmp_path, three_photos, tiny_run):
    # At 32 px the banner is 2 px high: VGG's pooling leaves nothing and torch raises a RuntimeError.
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "stylize", three_photos, "-o", out, "--json", *tiny_run)
    assert code == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}
    assert [records[n]["status"] for n in ("a.png", "banner.png", "c.png")] == ["written", "failed", "written"]
    assert "RuntimeError" in records["banner.png"]["error"]
    [failure] = [line for line in err.splitlines() if line.startswith("error:")]
    assert str(three_photos / "banner.png") in failure and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "2 written, 0 skipped, 1 failed"


def test_a_full_disk_ends_the_run_with_its_summary(capsys, tmp_path, three_photos, johnson_model, monkeypatch):
    def no_space(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images, "atomic_write", no_space)
    code, stdout, err = cli(capsys, "stylize", three_photos, "-o", tmp_path / "out", "--json", *johnson_model)
    assert code == 1
    [record] = map(json.loads, stdout.splitlines())  # the first file fails; the others are not tried
    assert record["status"] == "failed" and "No space left" in record["error"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error:") and "No space left" in lines[0]
    assert lines[1] == "0 written, 0 skipped, 1 failed, stopped early: 2 not run, as they would fail the same way"


def test_ctrl_c_inside_an_engine_is_not_swallowed(capsys, tmp_path, three_photos, johnson_model, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.pipeline, "stylize", interrupted)
    code, stdout, err = cli(capsys, "stylize", three_photos, "-o", tmp_path / "out", "--json", *johnson_model)
    assert code == 130  # typer turns the KeyboardInterrupt into exit 130
    assert stdout == "" and "failed" not in err  # not taken for the first file's failure


# ------------------------------------------------------------------------------ surprises, decided for users


def test_one_output_file_for_several_inputs_is_a_usage_error(capsys, tmp_path, three_photos, johnson_model):
    out = tmp_path / "one.png"
    code, _, err = cli(capsys, "stylize", three_photos, "-o", out, *johnson_model)
    assert code == 2 and "names one file, but the inputs hold 3 images" in one_error_line(err)
    assert not out.exists()


def test_a_rerun_into_the_input_folder_leaves_its_own_outputs_alone(capsys, three_photos, johnson_model):
    code, _, err = cli(capsys, "stylize", three_photos, "-o", three_photos, *johnson_model)
    assert code == 0 and "3 written" in err
    code, _, err = cli(capsys, "stylize", three_photos, "-o", three_photos, "--skip-existing", *johnson_model)
    assert code == 0
    assert "3 inputs left out" in err and "0 written, 3 skipped, 0 failed" in err
    assert len(list(three_photos.iterdir())) == 6  # no a_tiny_johnson_tiny_johnson.png


def test_an_output_that_would_replace_its_input_is_refused(capsys, three_photos, johnson_model):
    photo = three_photos / "a.png"
    before = photo.read_bytes()
    code, _, err = cli(capsys, "stylize", photo, "-o", photo, "--overwrite", *johnson_model)
    assert code == 2 and "would replace this input" in one_error_line(err)
    code, _, err = cli(capsys, "stylize", three_photos, "-o", three_photos, "--name", "{stem}.{ext}",
                       "--overwrite", *johnson_model)
    assert code == 2 and "would replace this input" in one_error_line(err)
    assert photo.read_bytes() == before


def test_empty_stdin_is_a_usage_error(capsys, monkeypatch, johnson_model):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n  \n"))
    code, _, err = cli(capsys, "stylize", "-", *johnson_model)
    assert code == 2 and "stdin held none" in one_error_line(err)


def test_an_output_under_a_file_is_named_as_such(capsys, tmp_path, three_photos, johnson_model):
    blocker = tmp_path / "report.txt"
    blocker.write_text("a file, not a folder")
    code, _, err = cli(capsys, "stylize", three_photos / "a.png", "-o", blocker / "x.png", *johnson_model)
    line = one_error_line(err)
    assert code == 1 and f"{blocker} is a file, not a folder" in line and "--overwrite" not in line
