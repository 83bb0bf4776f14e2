"""The reference metric the shipped models are judged by, on VGG16: style distance, the relative squared error
of Gram matrices (Gatys et al. 2016) averaged over relu1_2, relu2_2, relu3_3 and relu4_3; content distance, that
of the relu3_3 features (Johnson et al. 2016's content layer)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.errors import UsageError
from stransfer.images import fit_long_side, resize

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu3_3"


@dataclass(frozen=True)
class Scores:
    style: float  # style distance(output, style)
    content: float  # content distance(output, content)
    content_own_style: float  # style distance(content, style): where the output started from

    @property
    def style_ratio(self) -> float:
        return self.style / self.content_own_style


def metric_backbone(state: dict[str, torch.Tensor]) -> VGGFeatures:
    """VGG16 up to relu4_3 with the given weights: the yardstick's network."""
    net = VGGFeatures("vgg16", deepest="relu4_3")
    net.load_weights(state)
    return net


@torch.no_grad()
def score(backbone: VGGFeatures, output: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> Scores:
    """All three numbers at the output's own resolution, in fp32: the content resized to the output's exact
    size, the style so its long side equals the output's long side (both bicubic)."""
    h, w = output.shape[-2:]
    content = resize(content.float(), (h, w))
    style = resize(style.float(), fit_long_side(style.shape[-2], style.shape[-1], max(h, w)))
    taps = set(STYLE_LAYERS) | {CONTENT_LAYER}
    out_f, content_f, style_f = (backbone(x.float(), taps) for x in (output, content, style))

    def style_distance(feats: dict[str, torch.Tensor]) -> float:
        return sum(losses.relative_sq_error(losses.gram(feats[k]), losses.gram(style_f[k])).item()
                   for k in STYLE_LAYERS) / len(STYLE_LAYERS)

    content_d = losses.relative_sq_error(out_f[CONTENT_LAYER], content_f[CONTENT_LAYER]).item()
    return Scores(style=style_distance(out_f), content=content_d, content_own_style=style_distance(content_f))


def read_manifest(path: Path) -> list[tuple[Path, Path, Path]]:
    """(output, style, content) triples from a CSV with those column names (paths relative to the file's
    folder), or from a folder holding manifest.csv."""
    if path.is_dir():
        path = path / "manifest.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"{path}: unreadable manifest ({e})") from None
    missing = {"output", "style", "content"} - set(rows[0] if rows else {})
    if missing:
        raise UsageError(f"{path}: manifest needs the columns output, style, content "
                         f"(missing {', '.join(sorted(missing))})")
    base = path.parent
    return [(base / r["output"], base / r["style"], base / r["content"]) for r in rows]
