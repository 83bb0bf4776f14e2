from __future__ import annotations

import torch

from stransfer import color, pipeline
from stransfer.engines import Styles


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(color.ycbcr_to_rgb(color.rgb_to_ycbcr(x)), x, atol=1e-5, rtol=1e-5)


def test_keep_luminance_takes_chroma_from_content():
    # Mid-range colours, so no channel needs clamping and the identity is exact.
    stylized, content = 0.4 + 0.2 * torch.rand(1, 3, 16, 16), 0.4 + 0.2 * torch.rand(1, 3, 16, 16)
    out = color.rgb_to_ycbcr(color.keep_luminance(stylized, content))
    torch.testing.assert_close(out[:, 1:], color.rgb_to_ycbcr(content)[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :1], color.rgb_to_ycbcr(stylized)[:, :1], atol=1e-5, rtol=0)


def test_match_color_gives_the_style_the_contents_statistics():
    g = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 32, 32, generator=g) * torch.tensor([0.3, 0.6, 0.2]).view(1, 3, 1, 1)
    content = 0.2 + 0.6 * torch.rand(1, 3, 32, 32, generator=g)
    out = color.match_color(style, content)
    torch.testing.assert_close(out.mean(dim=(2, 3)), content.mean(dim=(2, 3)), atol=0.02, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3)), content.std(dim=(2, 3)), atol=0.02, rtol=0)


class Recorder:
    """An engine whose output is the first style image it was handed, so the pipeline's colour handling shows."""

    name = "rec"

    def prepare(self, styles):
        return Styles(styles)

    def stylize(self, content, styles, on_event=None):
        return styles.images[0].clone()


def test_pipeline_histogram_recolours_styles_and_luminance_restores_chroma():
    style, content = torch.rand(1, 3, 8, 8) * 0.2, torch.rand(1, 3, 8, 8)
    engine = Recorder()
    styles = engine.prepare([style])
    recoloured = pipeline.stylize(engine, content, styles, "histogram")
    torch.testing.assert_close(recoloured, color.match_color(style, content))
    assert styles.images[0] is style  # the prepared styles themselves are left as they were
    out = pipeline.stylize(engine, content, styles, "luminance")
    torch.testing.assert_close(out, color.keep_luminance(style, content))
