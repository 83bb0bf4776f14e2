"""`stransfer serve` as users start it, under load from the loopback: 40 requests from 8 clients, each answered with
an image or a 503 (none lost, none hung), the server's peak memory under 4 GB, and its folder gone after Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from test_serve import png, tiny_adain  # noqa: F401 - the fixture, reused

CLIENTS, REQUESTS_EACH = 8, 5
PEAK_MEMORY_LIMIT = 4 << 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (VmHWM), read while it still runs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@contextlib.contextmanager
def running_server(home: Path, tmp: Path, *args: object):
    """`python -m stransfer serve ARGS` on a free loopback port, its TMPDIR `tmp`: (its URL, its process)."""
    port = free_port()
    env = {**os.environ, "STRANSFER_HOME": str(home), "TMPDIR": str(tmp)}
    process = subprocess.Popen([sys.executable, "-m", "stransfer", "serve", "--port", str(port), *map(str, args)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            process.kill()
            pytest.fail(f"the server did not start: {process.communicate()}")
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture
def server(tmp_path, isolated_home, random_weights_file, tiny_adain):  # noqa: F811
    """One worker and two places to wait."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with running_server(isolated_home, tmp, "--queue", 2, "--max-size", 256, "--device", "cpu", "--precision",
                        "fp32", "--vgg-weights", random_weights_file) as (url, process):
        yield url, process, tmp


def client(url: str, results: list) -> None:
    files = {"content": ("photo.png", png(96, 64), "image/png"), "style": ("art.png", png(64, 64, 3), "image/png")}
    with httpx.Client(timeout=120) as http:
        for _ in range(REQUESTS_EACH):
            started = time.monotonic()
            try:
                response = http.post(f"{url}/v1/stylize", files=files,
                                     data={"method": "adain", "model": "tinyadain", "size": "128"})
                results.append((response.status_code, response.headers, response.content,
                                 time.monotonic() - started))
            except httpx.HTTPError as e:  # a lost or hung request: counted, and the test fails on it
                results.append((type(e).__name__, {}, b"", time.monotonic() - started))


@pytest.mark.slow
def test_forty_requests_from_eight_clients_each_get_an_image_or_a_503(server):
    url, process, tmp = server
    results: list = []
    threads = [threading.Thread(target=client, args=(url, results)) for _ in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    wall = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert len(results) == CLIENTS * REQUESTS_EACH
    statuses = [status for status, *_ in results]
    for status, headers, body, _ in results:
        assert status in (200, 503), status
        if status == 200:
            assert headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
        else:
            assert int(headers["retry-after"]) >= 1 and b'"busy"' in body
    assert statuses.count(200) >= 3  # one running and two waiting are always served
    peak = peak_rss(process.pid)
    slowest = max(seconds for *_, seconds in results)
    print(f"\n{statuses.count(200)} images, {statuses.count(503)} x 503 in {wall:.1f} s; slowest answer "
          f"{slowest:.2f} s; server peak RSS {peak / 2**20:.0f} MiB")
    assert peak < PEAK_MEMORY_LIMIT

    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"{url}/" in out and "Traceback" not in err
    assert list(tmp.iterdir()) == []  # its folder, and everything written there, is gone
