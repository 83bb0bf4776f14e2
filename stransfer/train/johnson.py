"""Training a Johnson network for one style: perceptual losses from the shared backbone and loss functions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.config import as_dict, param
from stransfer.device import Runtime
from stransfer.engines.johnson import JohnsonArch, TransformerNet
from stransfer.images import fit_long_side, grid, resize
from stransfer.train.data import CropSampler, load_previews
from stransfer.train.loop import TrainConfig
from stransfer.weights import save_model


@dataclass(frozen=True)
class JohnsonTrainConfig(TrainConfig):
    # Half the paper's width (32): a quarter of the multiply-adds, so 1024 px stylises in about half a
    # second on 2 CPU cores, while 5 residual blocks keep the receptive field that makes strokes coherent.
    width: int = param(16, ge=4)
    residual_blocks: int = param(5, ge=0)
    # Training crops are square; the network is fully convolutional and runs on any size afterwards.
    image_size: int = param(256, ge=32)
    # Long side of the style image when its Grams are taken: sets the scale of the strokes it learns. A 256 px
    # crop is a piece of a 512 px output, the default --size, so the style is seen as it is at 512 px: trained
    # with 256 instead, starry_night scored a style ratio of 0.40 at 512 px but 0.34 at 256 px.
    style_size: int = param(512, ge=32)
    content_layers: tuple[str, ...] = ("relu3_3",)
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    # Relative losses, as in the Gatys engine (losses.py), so the weights mean the same thing there and here.
    # A network cannot fit each photo as the optimiser does: at Gatys's 5 it gave up the content (relu3_3
    # relative error 1.96 at step 220, stripes everywhere). With the style seen at 512 px, 2 still lost the scene
    # (the_scream: content distance 1.07 at 512 px, step 600); 0.5 gave style ratio 0.34 at content 0.76.
    content_weight: float = param(1.0, ge=0.0)
    style_weight: float = param(0.5, ge=0.0)
    # The style losses of the registry (losses.py), as in the Gatys engine.
    style_loss: str = param("gram", check=losses.parse_style_loss)
    tv_weight: float = param(1.0, ge=0.0)
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"))


class JohnsonTask:
    name = "johnson"

    def __init__(self, cfg: JohnsonTrainConfig, runtime: Runtime, backbone: VGGFeatures, style: torch.Tensor,
                 style_path: Path, train_files: list[Path], preview_files: list[Path], rank: int = 0) -> None:
        self.cfg, self.runtime, self.backbone, self.style_path = cfg, runtime, backbone, style_path
        self.model = TransformerNet(JohnsonArch(cfg.width, cfg.residual_blocks))
        self.sampler = CropSampler(train_files, cfg.image_size, cfg.seed, rank)
        self.objective = losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers)
        self.taps = set(cfg.content_layers) | self.objective.taps
        style = resize(style, fit_long_side(style.shape[-2], style.shape[-1], cfg.style_size))
        with torch.no_grad(), runtime.autocast():
            self.style_targets = self.objective.targets(backbone(style.to(runtime.device), self.objective.taps))
        self.previews = load_previews(preview_files, cfg.image_size)

    def batch(self, step: int) -> torch.Tensor:
        # Channels-last, like the networks (loop.place).
        return self.sampler.batch(step, self.cfg.batch_size).to(self.runtime.device, memory_format=torch.channels_last)

    def loss(self, content: torch.Tensor, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        with self.runtime.autocast():
            out = model(content)
            feats = self.backbone(out, self.taps)
            with torch.no_grad():
                targets = self.backbone(content, cfg.content_layers)
        content_term = losses.content_loss(feats, targets)
        style_term = self.objective(feats, self.style_targets)
        tv_term = losses.total_variation(out.float())
        total = cfg.content_weight * content_term + cfg.style_weight * style_term + cfg.tv_weight * tv_term
        return total, {"content": content_term.item(), "style": style_term.item(), "tv": tv_term.item(),
                       "total": total.item()}

    def preview(self) -> torch.Tensor:
        outs = [self.model(p.to(self.runtime.device)).float().clamp(0, 1).cpu() for p in self.previews]
        return grid([self.previews, outs])

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        save_model(path, "johnson", self.model.state_dict(), arch=dataclasses.asdict(self.model.arch),
                   style=self.style_path.stem, style_image=self.style_path.name, backbone=self.cfg.backbone,
                   train_config=as_dict(self.cfg), steps=steps, record=record)
