"""Colour preservation for every engine (Gatys et al., 2016, "Preserving Color in Neural Artistic Style
Transfer"): keep the content's chroma, or give the style the content's colour statistics beforehand."""

from __future__ import annotations

import torch

MODES = ("none", "luminance", "histogram")

# ITU-R BT.601 (JPEG's YCbCr), in [0, 1] with chroma centred on 0.5.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                              [-0.168736, -0.331264, 0.5],
                              [0.5, -0.418688, -0.081312]])
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
_OFFSET = torch.tensor([0.0, 0.5, 0.5]).view(1, 3, 1, 1)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YCBCR.to(rgb), rgb) + _OFFSET.to(rgb)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _YCBCR_TO_RGB.to(ycbcr), ycbcr - _OFFSET.to(ycbcr))


def keep_luminance(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylised luminance with the content's chroma: the style's strokes in the photo's colours."""
    y = rgb_to_ycbcr(stylized)[:, :1]
    cbcr = rgb_to_ycbcr(content.to(stylized))[:, 1:]
    return ycbcr_to_rgb(torch.cat([y, cbcr], dim=1)).clamp(0, 1)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-8).sqrt()
    if inverse:
        values = 1.0 / values
    return vectors @ torch.diag(values) @ vectors.T


def match_color(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image recoloured so its RGB mean and covariance equal the content's (a linear map,
    x -> C_c^1/2 C_s^-1/2 (x - m_s) + m_c), keeping its strokes and textures."""
    def stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        px = img[0].reshape(3, -1).double()
        mean = px.mean(dim=1, keepdim=True)
        centred = px - mean
        return mean, centred @ centred.T / px.shape[1] + 1e-5 * torch.eye(3, dtype=px.dtype)

    m_s, c_s = stats(style)
    m_c, c_c = stats(content)
    transform = _sqrtm(c_c) @ _sqrtm(c_s, inverse=True)
    px = style[0].reshape(3, -1).double()
    out = transform @ (px - m_s) + m_c
    return out.reshape(style.shape).to(style.dtype).clamp(0, 1)
