"""Training the AdaIN decoder for the project's own encoder (VGG16 up to relu4_1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.config import as_dict, param
from stransfer.device import Runtime
from stransfer.engines.adain import ENCODER_LAYER, SKIP_LAYERS, STYLE_LAYERS, Decoder, adain
from stransfer.engines.swap import SwapConfig, swap_features
from stransfer.images import grid
from stransfer.train.data import CropSampler, list_images, load_previews, split
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput
from stransfer.weights import save_model, tensor_digest


@dataclass(frozen=True)
class AdainTrainConfig(TrainConfig):
    # The paper trains 160k steps of 8 pairs of 256 px crops at lr 1e-4, far too slow on a CPU; here 128 px
    # crops (a quarter of the pixels) for far fewer steps, at a higher rate (benchmarks/adain_speed.py times a
    # step).
    steps: int = param(6000, ge=1)
    learning_rate: float = param(5e-4, gt=0.0)
    # Huang & Belongie decay the rate as lr / (1 + 5e-5 t).
    lr_decay: float = param(5e-5, ge=0.0)
    batch_size: int = param(8, ge=1, help="Content/style pairs per step.")
    crop_size: int = param(128, ge=32, help="Side of the square training crops.")
    # Both terms are relative errors (losses.py): torchvision's VGG16 activations differ in scale by more
    # than an order of magnitude from relu1_1 to relu4_1, so the paper's raw squared errors would let the
    # deepest layer drown the rest; relative errors make each layer (and each term) start near 1.
    style_weight: float = param(1.0, ge=0.0, help="Weight of the style loss.")
    content_weight: float = param(1.0, ge=0.0, help="Weight of the content loss.")
    # Identity term: a quarter of each batch is decoded from the content's own features (alpha = 0) and must
    # give back the content at every encoder layer (not in the paper). Without it the decoder learns to invert
    # features far too slowly for a few thousand steps (weights/records/adain_vgg16.json). Those items get the
    # content skips at strengths spread from 1 (alpha 0) down to 0, so the decoder also keeps learning to invert
    # relu4_1 alone, which alpha 1 (no skips) relies on.
    identity_weight: float = param(1.0, ge=0.0, help=(
        "Weight of rebuilding a quarter of each batch from its own features (alpha 0); 0 turns it off."))
    # The paper's style loss matches channel means and stds, the statistics AdaIN itself transfers; any loss of
    # the registry (losses.STYLE_LOSSES) may replace it, over relu1_1..relu4_1, against each item's own style.
    style_loss: str = param("meanstd", check=losses.parse_style_loss,
                             help="Style loss, as for stylize -m gatys; meanstd is the paper's.")
    # Share of the stylised items whose target is style-swap's (Chen & Schmidt 2016: each 3x3 patch of the
    # content's relu4_1 swapped for its best match in the item's style, every style patch a candidate) rather
    # than AdaIN's, so the one shipped decoder learns to render both engines' features (-m adain and -m swap).
    swap_fraction: float = param(0.0, ge=0.0, le=1.0, help=(
        "Share of the stylised items trained on style-swap's features instead of AdaIN's (for -m swap)."))
    # Chen & Schmidt's inverse network is trained to give back the swapped features through the encoder, plus
    # this smoothness term (with swap_fraction 1 and style_weight 0).
    tv_weight: float = param(0.0, ge=0.0, help="Weight of total variation (smoothness) of the stylised outputs.")
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Encoder.")


class AdainTask:
    name = "adain"

    def __init__(self, cfg: AdainTrainConfig, runtime: Runtime, encoder: VGGFeatures, content_files: list[Path],
                 style_files: list[Path], preview_content: list[Path], preview_style: list[Path],
                 rank: int = 0) -> None:
        self.cfg, self.runtime, self.encoder = cfg, runtime, encoder
        self.model = Decoder(cfg.backbone)
        # Every registered loss's layers lie within STYLE_LAYERS, the encoder's taps for content, style and output.
        self.objective = losses.StyleObjective.parse(cfg.style_loss, STYLE_LAYERS)
        self.contents = CropSampler(content_files, cfg.crop_size, cfg.seed, rank)
        self.styles = CropSampler(style_files, cfg.crop_size, cfg.seed + 1, rank)
        self.preview_pairs = list(zip(load_previews(preview_content, cfg.crop_size),
                                      load_previews(preview_style, cfg.crop_size)))

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start from a trained decoder's weights (--init)."""
        self.model.load_state_dict(state_dict)

    def identity_items(self) -> int:
        """How many items of each batch are reconstructed rather than stylised (they need no style crop)."""
        return self.cfg.batch_size // 4 if self.cfg.identity_weight > 0 else 0

    def swap_items(self) -> int:
        """How many of the stylised items (the last ones of each batch) get style-swap's target."""
        return round(self.cfg.swap_fraction * (self.cfg.batch_size - self.identity_items()))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """batch_size content crops and a style crop for each item that is stylised, channels-last like the
        networks (loop.place)."""
        device, cl = self.runtime.device, torch.channels_last
        return (self.contents.batch(step, self.cfg.batch_size).to(device, memory_format=cl),
                self.styles.batch(step, self.cfg.batch_size - self.identity_items()).to(device, memory_format=cl))

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor], model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        content, style = batch
        # Items [:n] are reconstructed, the rest stylised; one decoder pass serves both.
        n = content.shape[0] - style.shape[0]
        with torch.no_grad(), self.runtime.autocast():
            content_f = self.encoder(content, STYLE_LAYERS)
            style_f = self.encoder(style, STYLE_LAYERS)
            style_targets = self.objective.targets(style_f)
        own, style_maps = content_f[ENCODER_LAYER].float(), style_f[ENCODER_LAYER].float()
        k = style.shape[0] - self.swap_items()  # items [n:n + k] take AdaIN's target, the rest style-swap's
        adained = [adain(own[n:n + k], *losses.mean_std(style_maps[:k]))] if k else []
        swapped = [swap_features(own[n + i:n + i + 1], [style_maps[i:i + 1]], SwapConfig.patch_size)
                   for i in range(k, style.shape[0])]
        target = torch.cat([own[:n], *adained, *swapped])
        skips = None
        if n:
            strength = torch.zeros(content.shape[0], 1, 1, 1, device=own.device)
            strength[:n, 0, 0, 0] = torch.linspace(1.0, 0.0, n)
            skips = {k: content_f[k] * strength.to(content_f[k].dtype) for k in SKIP_LAYERS}
        with self.runtime.autocast():
            out = model(target, skips)
            out_f = self.encoder(out, STYLE_LAYERS)
        terms = {"content": losses.relative_sq_error(out_f[ENCODER_LAYER][n:], target[n:]).mean(),
                 "style": self.objective({k: v[n:] for k, v in out_f.items()}, style_targets)}
        if n:
            terms["identity"] = losses.content_loss({k: v[:n] for k, v in out_f.items()},
                                                    {k: v[:n] for k, v in content_f.items()})
        if self.cfg.tv_weight:
            terms["tv"] = losses.total_variation(out[n:].float())
        return losses.weighted_total(terms, {"content": self.cfg.content_weight, "style": self.cfg.style_weight,
                                             "identity": self.cfg.identity_weight, "tv": self.cfg.tv_weight})

    def preview(self) -> torch.Tensor:
        """Content, style, and the decoder's output from AdaIN's target (style-swap's, for a decoder trained on
        swapped features alone)."""
        rows = [[], [], []]
        swapped_only = self.swap_items() == self.cfg.batch_size - self.identity_items()
        for content, style in self.preview_pairs:
            c, s = content.to(self.runtime.device), style.to(self.runtime.device)
            own, theirs = (self.encoder(x, [ENCODER_LAYER])[ENCODER_LAYER].float() for x in (c, s))
            target = (swap_features(own, [theirs], SwapConfig.patch_size) if swapped_only
                      else adain(own, *losses.mean_std(theirs)))
            rows[0].append(content)
            rows[1].append(style)
            rows[2].append(self.model(target).float().clamp(0, 1).cpu())
        return grid(rows)

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        encoder_state = {k.removeprefix("layers."): v for k, v in self.encoder.state_dict().items()}
        save_model(path, "adain", self.model.state_dict(), backbone=self.cfg.backbone,
                   encoder_layer=ENCODER_LAYER, encoder_digest=tensor_digest(encoder_state),
                   train_config=as_dict(self.cfg), steps=steps, record=record)


def _task(context: TaskContext) -> AdainTask:
    content_train, content_held = split(list_images(context.inputs["content_data"][0]))
    style_train, style_held = split(list_images(context.inputs["style_data"][0]))
    # Previews come from held-out images; a folder too small to hold any out previews training images.
    return AdainTask(context.cfg, context.runtime, context.backbone, content_train, style_train,
                     content_held or content_train, style_held or style_train, context.rank)


SPEC = TrainerSpec(
    name="adain",
    summary="Train the AdaIN decoder for this project's encoder (resumable; torchrun for several processes).",
    config_type=AdainTrainConfig,
    inputs={"content_data": TrainInput("folder", "Folder of content photos (searched recursively)."),
            "style_data": TrainInput("folder", "Folder of artworks (searched recursively).", example="artworks/"),
            "out": TrainInput("out", "Model file to write, e.g. weights/NAME.pth.", "-o")},
    loss_layers=lambda cfg: (ENCODER_LAYER,),
    make_task=_task,
    model_engine="adain",
)
