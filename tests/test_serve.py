"""`stransfer serve`: every endpoint, every error as JSON, the queue's limits, the guard, and the command. Tiny images
and random-weight models: a tiny Johnson network, and an AdaIN decoder recorded as trained for the random VGG16."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient  # the serve extra is in dev: `pip install -e '.[dev]'` brings it
from PIL import Image

from stransfer import weights
from stransfer.engines import ENGINES
from stransfer.engines.decoder import Decoder, encoder_from
from stransfer.serve.app import create_app
from stransfer.serve.settings import ServeConfig, check_binding, is_loopback
from stransfer.serve.work import Busy, WorkQueue
from conftest import cli, gradient_image, one_error_line

LOCAL = "http://127.0.0.1:8000"


def png(width: int = 48, height: int = 32, seed: int = 0, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    gradient_image(width, height, seed).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def header_only_png(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds none: a decompression bomb needs no more to be refused."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def image_of(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def error_of(response, status: int, code: str) -> dict:
    """The JSON error a refusal must be: its status, its code, one line (no traceback)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert "\n" not in body["message"] and "Traceback" not in body["message"]
    return body


@pytest.fixture
def tiny_adain(isolated_home: Path, random_vgg16) -> Path:
    """A random AdaIN decoder, installed as NAME 'tinyadain', recorded as trained for the random VGG16."""
    state = {k.removeprefix("layers."): v for k, v in random_vgg16.state_dict().items()}
    encoder_state = {k.removeprefix("layers."): v for k, v in encoder_from("vgg16", state).state_dict().items()}
    torch.manual_seed(0)
    path = isolated_home / "models" / "tinyadain.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    weights.save_model(path, "adain", Decoder("vgg16").state_dict(), backbone="vgg16", encoder_layer="relu4_1",
                       encoder_digest=weights.tensor_digest(encoder_state), train_config={}, steps=1, record={})
    return path


@pytest.fixture
def config(tmp_path, random_weights_file, tiny_johnson, tiny_adain) -> ServeConfig:
    return ServeConfig(device="cpu", precision="fp32", vgg_weights=random_weights_file, max_size=128,
                       max_pixels=1_000_000, max_upload_bytes=256 << 10, workdir=tmp_path / "work")


def client_for(config: ServeConfig, **kwargs):
    return TestClient(create_app(config), base_url=kwargs.pop("base_url", LOCAL), **kwargs)


@pytest.fixture
def client(config):
    with client_for(config) as c:
        yield c


def server_of(client):
    return client.app.state.server


ADAIN = {"method": "adain", "model": "tinyadain"}


def stylize(client, data: dict, content: bytes | None = None, style: bytes | None = None, path: str = "/v1/stylize"):
    files = {}
    if content is not None:
        files["content"] = ("photo.png", content, "image/png")
    if style is not None:
        files["style"] = ("art.png", style, "image/png")
    return client.post(path, data=data, files=files or None)


def wait_for(client, job_id: str, until: tuple[str, ...] = ("done", "failed", "cancelled"), seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {seconds} s")


# ----------------------------------------------------------------------------- what it offers


def test_models_lists_every_engine_the_models_and_the_shipped_styles(client):
    body = client.get("/v1/models").json()
    assert [e["name"] for e in body["engines"]] == [*ENGINES, "texture"]
    assert {e["name"]: e["slow"] for e in body["engines"]}["gatys"] is True
    models = {m["name"]: m for m in body["models"]}
    assert models["tiny"]["engine"] == "johnson" and models["tinyadain"]["engine"] == "adain"
    assert len(models["multistyle"]["styles"]) > 1
    styles = {s["name"]: s for s in body["styles"]}
    # The shipped examples are the images of styles; a style whose image did not ship is there for Johnson only.
    assert styles["starry_night"]["image"] and styles["starry_night"]["thumbnail"] == "/thumbnails/starry_night.jpg"
    assert not styles["udnie"]["image"] and styles["udnie"]["thumbnail"] is None
    assert "tubingen" not in styles  # an example photo, no model's style
    thumb = client.get(styles["starry_night"]["thumbnail"])
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(thumb.content)).size) == 160
    error_of(client.get("/thumbnails/udnie.jpg"), 404, "not_found")
    assert body["limits"]["max_size"] == 128


def test_the_page_and_its_files_are_served_by_the_app_alone(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: it works offline
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert f"/static/{name}" in page.text and "https://" not in response.text
    error_of(client.get("/static/../settings.py"), 404, "not_found")
    error_of(client.get("/static/nothing.js"), 404, "not_found")


def test_the_openapi_page_lists_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/stylize", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"} <= set(paths)
    assert set(paths["/v1/jobs/{job_id}"]) == {"get", "delete"}
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- stylising


@pytest.mark.parametrize("method", ["adain", "swap", "johnson"])
def test_stylize_returns_the_image_at_the_size_asked(client, method):
    if method == "johnson":
        response = stylize(client, {"method": "johnson", "model": "tiny", "size": "40"}, png())
    else:
        response = stylize(client, {"method": method, "model": "tinyadain", "size": "40"}, png(), png(40, 40, 3))
    out = image_of(response)
    assert out.size == (40, 27) and out.mode == "RGB"


def test_a_shipped_style_is_named_and_a_held_style_picked(client):
    by_name = image_of(stylize(client, {**ADAIN, "style_name": "the_scream", "size": "32"}, png()))
    assert by_name.size == (32, 21)
    held = image_of(stylize(client, {"method": "johnson", "model": "multistyle", "style_name": "udnie",
                                     "size": "32"}, png()))
    other = image_of(stylize(client, {"method": "johnson", "model": "multistyle", "style_name": "the_scream",
                                      "size": "32"}, png()))
    assert held.tobytes() != other.tobytes()


def test_settings_reach_the_engine_and_alpha_is_kept(client):
    rgba = Image.open(io.BytesIO(png())).convert("RGBA")
    rgba.putalpha(90)
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    out = image_of(stylize(client, {**ADAIN, "size": "48", "alpha": "0.5"}, buffer.getvalue(), png(40, 40, 3)))
    assert out.mode == "RGBA" and out.getchannel("A").getextrema() == (90, 90)
    full = image_of(stylize(client, {**ADAIN, "size": "48", "alpha": "1"}, png(), png(40, 40, 3)))
    assert out.convert("RGB").tobytes() != full.tobytes()


def test_engines_load_once_and_stay_loaded(client, monkeypatch):
    from stransfer.serve import runs

    built = []
    real = runs.api.Stylizer
    monkeypatch.setattr(runs.api, "Stylizer", lambda *a, **k: built.append(k) or real(*a, **k))
    for _ in range(3):
        image_of(stylize(client, {**ADAIN, "size": "32"}, png(), png(40, 40, 3)))
    assert len(built) == 1
    image_of(stylize(client, {**ADAIN, "size": "32", "alpha": "0.3"}, png(), png(40, 40, 3)))
    image_of(stylize(client, {**ADAIN, "size": "32"}, png(), png(40, 40, 4)))  # another style image
    assert len(built) == 3 and server_of(client).engines.loaded == 3


# ----------------------------------------------------------------------------- every refusal, as JSON


BAD_REQUESTS = {
    # name: (form fields, content, style, status, code, field)
    "garbage image": (ADAIN, b"not an image at all", png(), 400, "bad_image", "content"),
    "empty image": (ADAIN, b"", png(), 400, "bad_image", "content"),
    "truncated image": (ADAIN, png()[:60], png(), 400, "bad_image", "content"),
    "garbage style": (ADAIN, png(), b"GIF89a", 400, "bad_image", "style"),
    "unknown model": ({**ADAIN, "model": "no_such_model"}, png(), png(), 422, "bad_model", "model"),
    "model as a path": ({**ADAIN, "model": "/etc/passwd"}, png(), png(), 422, "bad_model", "model"),
    "model upward": ({**ADAIN, "model": "../../weights/udnie"}, png(), png(), 422, "bad_model", "model"),
    "another engine's model": ({**ADAIN, "model": "tiny"}, png(), png(), 422, "bad_model", "model"),
    "unknown field": ({**ADAIN, "strength": "2"}, png(), png(), 422, "bad_field", "strength"),
    "field of another engine": ({"method": "johnson", "model": "tiny", "alpha": "0.5"}, png(), None, 422,
                                "bad_field", "alpha"),
    "size not a number": ({**ADAIN, "size": "big"}, png(), png(), 422, "invalid_value", "size"),
    "size too large": ({**ADAIN, "size": "4096"}, png(), png(), 422, "invalid_value", "size"),
    "size too small": ({**ADAIN, "size": "8"}, png(), png(), 422, "invalid_value", "size"),
    "alpha out of range": ({**ADAIN, "alpha": "1.5"}, png(), png(), 422, "invalid_value", "alpha"),
    "alpha NaN": ({**ADAIN, "alpha": "nan"}, png(), png(), 422, "invalid_value", "alpha"),
    "unknown method": ({"method": "picasso"}, png(), png(), 422, "invalid_value", "method"),
    "slow method": ({"method": "gatys"}, png(), png(), 422, "invalid_value", "method"),
    "no photo": (ADAIN, None, png(), 422, "bad_field", "content"),
    "no style": (ADAIN, png(), None, 422, "bad_field", "style"),
    "style and style_name": ({**ADAIN, "style_name": "the_scream"}, png(), png(), 422, "bad_field", "style_name"),
    "unknown style_name": ({**ADAIN, "style_name": "mona_lisa"}, png(), None, 422, "bad_style", "style_name"),
    "style_name without image": ({**ADAIN, "style_name": "udnie"}, png(), None, 422, "bad_style", "style_name"),
    "style image for johnson": ({"method": "johnson", "model": "tiny"}, png(), png(), 422, "bad_field", "style"),
    "several styles, none named": ({"method": "johnson", "model": "multistyle"}, png(), None, 422, "bad_style",
                                   "style_name"),
    "a style the model lacks": ({"method": "johnson", "model": "multistyle", "style_name": "mona_lisa"}, png(),
                                None, 422, "bad_style", "style_name"),
    "bad colour mode": ({**ADAIN, "preserve_color": "sepia"}, png(), png(), 422, "invalid_value", "preserve_color"),
    "bad iterations": ({"method": "gatys", "iterations": "0"}, png(), png(), 422, "invalid_value", "iterations"),
    "texture with a photo": ({"method": "texture"}, png(), png(), 422, "bad_field", "content"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_every_bad_request_is_one_json_error_naming_its_field(client, case):
    data, content, style, status, code, field = BAD_REQUESTS[case]
    path = "/v1/jobs" if data.get("method") in ("gatys", "texture") and case != "slow method" else "/v1/stylize"
    body = error_of(stylize(client, data, content, style, path), status, code)
    assert body.get("field") == field, body
    assert server_of(client).queue.admitted == 0  # refused before it took a place


def test_a_photo_sent_as_text_is_refused(client):
    body = error_of(client.post("/v1/stylize", data={**ADAIN, "content": "photo.png"},
                                files={"style": ("a.png", png(), "image/png")}), 422, "invalid_value")
    assert body["field"] == "content"


def test_an_engine_that_cannot_load_answers_in_one_line(client):
    # The shipped decoder was trained for the real VGG16, not the random one this server was given.
    body = error_of(stylize(client, {"method": "adain", "size": "32"}, png(), png()), 500, "unavailable")
    assert "other vgg16 weights" in body["message"]


def test_routes_and_verbs_that_do_not_exist_are_json_errors(client):
    error_of(client.get("/v1/nothing"), 404, "not_found")
    error_of(client.put("/v1/models"), 405, "method_not_allowed")


# ----------------------------------------------------------------------------- limits


def test_a_decompression_bomb_is_refused_before_decoding(client, monkeypatch):
    from stransfer.serve import uploads

    decoded = []
    monkeypatch.setattr(uploads.images, "load_image", lambda *a, **k: decoded.append(a))
    for width, height in ((2000, 2000), (100_000, 100_000)):  # over the server's limit; over Pillow's own guard too
        body = error_of(stylize(client, ADAIN, header_only_png(width, height), png()), 413, "too_large")
        assert body["field"] == "content" and "pixels" in body["message"]
    assert not decoded


def test_a_body_over_the_byte_limit_is_refused(client):
    big = b"\x00" * (300 << 10)
    error_of(stylize(client, ADAIN, big, png()), 413, "too_large")  # refused on its Content-Length

    def chunks():  # no Content-Length: counted as it arrives, and cut off
        yield b"--x\r\nContent-Disposition: form-data; name=\"content\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(100):
            yield b"\x00" * (10 << 10)
    response = client.post("/v1/stylize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    error_of(response, 413, "too_large")


def test_nothing_is_written_outside_the_servers_own_folder(config, monkeypatch, tmp_path):
    import tempfile

    import torch._dynamo  # noqa: F401 - torch makes its compile cache's folder where tempfile points when this loads

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    written = []
    from stransfer.serve import uploads

    real_decode = uploads.Uploads._decode
    monkeypatch.setattr(uploads.Uploads, "_decode", lambda self, data, name: (
        written.append(Path(self.workdir)), real_decode(self, data, name))[1])
    with client_for(config) as client:
        image_of(stylize(client, {**ADAIN, "size": "32"}, png(), png(40, 40, 3)))
        job = stylize(client, {"method": "texture", "size": "16", "iterations": "1"}, None, png(40, 40, 3),
                      "/v1/jobs").json()
        assert wait_for(client, job["id"])["status"] == "done"
    assert written and all(w == config.workdir for w in written)
    assert list(config.workdir.iterdir()) == [] and list(elsewhere.iterdir()) == []


def test_an_app_removes_the_folder_it_made(config):
    import dataclasses

    with client_for(dataclasses.replace(config, workdir=None)) as client:
        workdir = server_of(client).config.workdir
        assert workdir.is_dir()
    assert not workdir.exists()


# ----------------------------------------------------------------------------- jobs


def test_a_gatys_job_reports_progress_and_gives_its_image(client):
    response = stylize(client, {"method": "gatys", "size": "32", "iterations": "2", "style_weight": "10"}, png(),
                       png(40, 40, 3), "/v1/jobs")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}" and job["status"] in ("queued", "running")
    done = wait_for(client, job["id"])
    assert done["status"] == "done" and done["progress"] == 1 and done["step"] == done["total"] > 0
    assert image_of(client.get(done["result"])).size == (32, 21)


def test_a_texture_job_makes_a_texture_of_the_size_asked(client):
    job = stylize(client, {"method": "texture", "size": "24", "iterations": "2"}, None, png(40, 40, 3),
                  "/v1/jobs").json()
    done = wait_for(client, job["id"])
    assert done["status"] == "done", done
    assert image_of(client.get(done["result"])).size == (24, 24)


def test_a_failed_job_says_why(client):
    job = stylize(client, {"method": "adain", "size": "32"}, png(), png(), "/v1/jobs").json()
    failed = wait_for(client, job["id"])
    assert failed["status"] == "failed" and failed["error"]["error"] == "unavailable"
    error_of(client.get(f"/v1/jobs/{job['id']}/result"), 409, "not_ready")


def test_a_running_job_is_cancelled_at_its_next_step(client):
    job = stylize(client, {"method": "gatys", "size": "32", "iterations": "100000"}, png(), png(40, 40, 3),
                  "/v1/jobs").json()
    running = wait_for(client, job["id"], until=("running",))
    while running["step"] == 0:
        running = client.get(f"/v1/jobs/{job['id']}").json()
    assert client.delete(f"/v1/jobs/{job['id']}").json()["status"] in ("cancelling", "cancelled")
    cancelled = wait_for(client, job["id"], seconds=20)
    assert cancelled["status"] == "cancelled" and cancelled["step"] < cancelled["total"]
    error_of(client.get(f"/v1/jobs/{job['id']}/result"), 409, "not_ready")
    assert server_of(client).queue.admitted == 0


def test_unknown_jobs_are_404_and_finished_ones_can_be_forgotten(client):
    for response in (client.get("/v1/jobs/nope"), client.get("/v1/jobs/nope/result"), client.delete("/v1/jobs/nope")):
        error_of(response, 404, "unknown_job")
    job = stylize(client, {"method": "johnson", "model": "tiny", "size": "16"}, png(), None, "/v1/jobs").json()
    assert wait_for(client, job["id"])["status"] == "done"
    assert client.delete(f"/v1/jobs/{job['id']}").json()["status"] == "done"
    error_of(client.get(f"/v1/jobs/{job['id']}"), 404, "unknown_job")


def test_a_full_queue_answers_503_with_retry_after_at_once(config, monkeypatch):
    import dataclasses

    with client_for(dataclasses.replace(config, workers=1, queue=1)) as client:
        release = threading.Event()
        engines = server_of(client).engines
        real = engines.run
        monkeypatch.setattr(engines, "run", lambda request, task: (release.wait(30), real(request, task))[1])
        jobs = [stylize(client, {"method": "johnson", "model": "tiny", "size": "16"}, png(), None, "/v1/jobs")
                for _ in range(2)]  # one runs (held), one waits: the queue is full
        assert [j.status_code for j in jobs] == [202, 202]
        started = time.monotonic()
        for path in ("/v1/stylize", "/v1/jobs"):
            refused = stylize(client, {"method": "johnson", "model": "tiny", "size": "16"}, png(), None, path)
            error_of(refused, 503, "busy")
            assert int(refused.headers["retry-after"]) >= 1
        assert time.monotonic() - started < 5
        # A waiting job cancelled gives its place back at once.
        assert client.delete(f"/v1/jobs/{jobs[1].json()['id']}").json()["status"] == "cancelled"
        third = stylize(client, {"method": "johnson", "model": "tiny", "size": "16"}, png(), None, "/v1/jobs")
        assert third.status_code == 202
        release.set()
        assert [wait_for(client, j["id"])["status"] for j in (jobs[0].json(), third.json())] == ["done", "done"]


def test_every_response_comes_within_the_time_limit(config, monkeypatch):
    import dataclasses

    with client_for(dataclasses.replace(config, request_timeout=1.0)) as client:
        release = threading.Event()
        engines = server_of(client).engines
        real = engines.run
        monkeypatch.setattr(engines, "run", lambda request, task: (release.wait(30), real(request, task))[1])
        started = time.monotonic()
        late = stylize(client, {"method": "johnson", "model": "tiny", "size": "16"}, png())
        assert time.monotonic() - started < 5
        error_of(late, 503, "busy")
        assert "retry-after" in late.headers
        release.set()
        deadline = time.monotonic() + 10
        while server_of(client).queue.admitted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_of(client).queue.admitted == 0  # the run that came too late gave its place back


def test_a_body_that_stalls_is_answered_408_within_the_time_limit(config):
    import asyncio
    import dataclasses

    from stransfer.serve.guard import Guard

    async def app(scope, receive, send):  # reads the body to its end, as the form parser does
        while (await receive()).get("more_body"):
            pass

    async def exchange() -> list:
        first, sent = [True], []

        async def receive():
            if first.pop() if first else False:
                return {"type": "http.request", "body": b"--x\r\n", "more_body": True}
            await asyncio.sleep(3600)  # the client sends nothing more

        async def send(message):
            sent.append(message)

        guard = Guard(app, dataclasses.replace(config, request_timeout=0.5), retry_after=lambda: 1)
        scope = {"type": "http", "path": "/v1/stylize", "headers": [(b"host", b"127.0.0.1:8000")]}
        await asyncio.wait_for(guard(scope, receive, send), 10)  # a guard without a deadline fails here, not hangs
        return sent

    started = time.monotonic()
    sent = asyncio.run(exchange())
    assert time.monotonic() - started < 3
    assert sent[0]["status"] == 408 and b'"timeout"' in sent[1]["body"]


def test_an_internal_error_is_one_json_line(client, monkeypatch):
    def broken(request, task):
        raise RuntimeError("/secret/path/in/a/message")

    monkeypatch.setattr(server_of(client).engines, "run", broken)
    body = error_of(stylize(client, {"method": "johnson", "model": "tiny", "size": "16"}, png()), 500, "internal")
    assert body["message"] == "internal error: RuntimeError"


def test_the_page_travels_with_the_package():
    """pyproject's package data takes every file the app serves, so a wheel carries the page."""
    import fnmatch
    import tomllib

    from conftest import REPO

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = REPO / "stransfer" / "serve" / "static"
    files = [p.relative_to(static.parent).as_posix() for p in static.iterdir()]
    assert {"static/index.html", "static/app.js", "static/app.css"} <= set(files)
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns["stransfer.serve"]) for f in files)


# ----------------------------------------------------------------------------- the guard


def test_a_token_guards_the_api_but_not_the_page(config):
    import dataclasses

    with client_for(dataclasses.replace(config, host="0.0.0.0", token="s3cret"),
                    base_url="http://photos.example:8000") as client:
        error_of(client.get("/v1/models"), 401, "unauthorized")
        error_of(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("headers", [{"host": "evil.example"}, {"origin": "http://evil.example"},
                                     {"host": "127.0.0.1.nip.example"}])
def test_without_a_token_only_localhost_is_answered(client, headers):
    error_of(client.get("/v1/models", headers=headers), 403, "forbidden")


def test_localhost_pages_are_answered(client):
    for origin in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        assert client.get("/v1/models", headers={"origin": origin}).status_code == 200


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("0.0.0.0", False), ("192.168.1.20", False),
                                            ("::", False), ("example.com", False), ("", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_binding_beyond_the_loopback_needs_a_token():
    check_binding(ServeConfig(host="0.0.0.0", token="t"))
    check_binding(ServeConfig(host="::1"))
    with pytest.raises(Exception, match="token"):
        check_binding(ServeConfig(host="0.0.0.0"))


# ----------------------------------------------------------------------------- the command


def test_serve_refuses_a_public_address_without_a_token_in_one_line(capsys):
    code, out, err = cli(capsys, "serve", "--host", "0.0.0.0")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "--host 0.0.0.0" in line and "--token" in line


def test_serve_without_the_extra_says_how_to_install_it(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "stransfer.serve.server", None)  # what a missing FastAPI looks like
    code, _, err = cli(capsys, "serve")
    assert code == 2 and "pip install 'stransfer[serve]'" in one_error_line(err)


@pytest.mark.parametrize("args", [["--port", "0"], ["--queue", "-1"], ["--workers", "0"], ["--token", " "]])
def test_serve_refuses_bad_settings_in_one_line(capsys, args):
    code, _, err = cli(capsys, "serve", *args)
    assert code == 2, err
    one_error_line(err)


def test_serve_has_help(capsys):
    code, out, _ = cli(capsys, "serve", "--help")
    assert code == 0 and "--token" in out and "--queue" in out


# ----------------------------------------------------------------------------- the queue itself


def test_the_work_queue_refuses_past_its_capacity_and_frees_cancelled_places():
    hold = threading.Event()
    queue = WorkQueue(workers=1, depth=1)
    running = queue.submit(lambda task: hold.wait(10), timeout=60)
    waiting = queue.submit(lambda task: "never", timeout=60)
    with pytest.raises(Busy) as refused:
        queue.submit(lambda task: None, timeout=60)
    assert refused.value.retry_after >= 1
    waiting.stop()
    assert queue.admitted == 1 and waiting.future.cancelled()
    queue.submit(lambda task: "ran", timeout=60)
    hold.set()
    assert running.future.result(10) is True
    queue.close()
