"""Training an MSG-Net generator (stransfer/engines/msgnet.py) on several styles at once: each item of a batch
trains toward one style, its target Gram taken from the style image by the generator's own encoder (the Siamese
branch, which learns from both sides), at a style size that changes from step to step; perceptual losses from the
shared backbone and loss functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.config import as_dict, each, param
from stransfer.device import Runtime
from stransfer.engines.msgnet import ENGINE, MSGNet, MSGNetArch, MSGNetConfig, save_msgnet, style_input
from stransfer.errors import InputError, UsageError
from stransfer.images import grid, load_image
from stransfer.train.data import CropSampler, balanced_choices, list_images, load_previews, split
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput
from stransfer.train.styles import check_styles

# The style size a model is used at by default (stylize's `style_size`): its previews show it, and its file
# stores every trained style's Grams there as well as at the training sizes.
SIZE_OF_USE = MSGNetConfig().style_size


@dataclass(frozen=True)
class MSGNetTrainConfig(TrainConfig):
    width: int = param(16, ge=4, help="Channels at full size (64 in the paper).")
    channels: int = param(128, ge=8, help="Channels of the CoMatch layer, the side of its Gram (512 in the paper).")
    blocks: int = param(6, ge=0, help="Bottleneck blocks after the CoMatch layer (6 in the paper).")
    # 384 px crops are three quarters of a 512 px output, the default --size: strokes are learnt at the scale of
    # use, at 2.25x the cost of a 256 px step.
    image_size: int = param(384, ge=32, help="Side of the square training crops.")
    # The paper varies the style image's size in training so that the size given at use sets the stroke size; a
    # step's size is drawn from these (a function of seed and step), and a model stores its styles' Grams at each.
    style_sizes: tuple[int, ...] = param((256, 384, 512, 768), ge=64, le=4096, help=(
        "Long sides the style images take in training, one drawn per step, e.g. 256,512,768."))
    content_layers: tuple[str, ...] = param(("relu3_3",), help="Comma-separated layers of the content loss.")
    # The reference metric's layers, so what trains is what is judged.
    style_layers: tuple[str, ...] = param(("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                                         help="Comma-separated layers of the style loss.")
    content_weight: float = param(1.0, ge=0.0, help="Weight of the content loss.")
    # Relative losses as in every trainer here (losses.py). 2 is where the multi-style Johnson model's joint
    # stages started for these eight styles (weights/records/multistyle.json); styles far from photos want more.
    style_weight: tuple[float, ...] = param((2.0,), ge=0.0, help=(
        "Style weight: one number, or one per style in the order of -s, e.g. 2,1.2,5."))
    style_loss: str = param("gram", check=losses.parse_style_loss, help="Style loss, as for stylize -m gatys.")
    tv_weight: float = param(1.0, ge=0.0, help="Weight of total variation (smoothness).")
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Loss network.")


class Siamese(nn.Module):
    """The generator as it trains: the target Gram of each item from its style image through the generator's own
    encoder, then the generator. One module, so a distributed run's gradient sync sees both branches."""

    def __init__(self, net: MSGNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, content: torch.Tensor, styles: list[torch.Tensor], which: list[int]) -> torch.Tensor:
        """`styles`: the distinct style images of the batch; `which`: the one each item trains toward."""
        grams = torch.cat([self.net.gram(style) for style in styles])
        return self.net(content, grams[which])


Batch = tuple[torch.Tensor, list[int], int]  # crops, the style of each, the style size of the step


class MSGNetTask:
    """One generator for the styles `style_paths`, every style equally often (balanced over each round of as many
    items as styles), each item toward its own."""

    name = ENGINE

    def __init__(self, cfg: MSGNetTrainConfig, runtime: Runtime, backbone: VGGFeatures, styles: list[torch.Tensor],
                 style_paths: list[Path], train_files: list[Path], preview_files: list[Path], rank: int = 0) -> None:
        self.cfg, self.runtime, self.backbone, self.rank = cfg, runtime, backbone, rank
        self.styles, self.style_paths = styles, style_paths
        self.net = MSGNet(MSGNetArch(cfg.width, cfg.channels, cfg.blocks))
        self.model: nn.Module = Siamese(self.net)
        self.sampler = CropSampler(train_files, cfg.image_size, cfg.seed, rank)
        self.objective = losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers)
        self.taps = set(cfg.content_layers) | self.objective.taps
        self.style_weights = each(cfg.style_weight, len(styles))  # check_styles checked the count
        self.previews = load_previews(preview_files, cfg.image_size)
        # Per (style, size): the resized image the Siamese branch takes, and its loss targets; made on first use
        # (the same whatever the order), so a resumed run computes what the whole run did.
        self._inputs: dict[tuple[int, int], torch.Tensor] = {}
        self._targets: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}

    def style_at(self, style: int, size: int) -> torch.Tensor:
        key = (style, size)
        if key not in self._inputs:
            image = style_input(self.styles[style], size).to(self.runtime.device)
            self._inputs[key] = image.contiguous(memory_format=torch.channels_last)
        return self._inputs[key]

    def targets_at(self, style: int, size: int) -> dict[str, dict[str, Any]]:
        key = (style, size)
        if key not in self._targets:
            with torch.no_grad(), self.runtime.autocast():
                self._targets[key] = self.objective.targets(self.backbone(self.style_at(style, size),
                                                                          self.objective.taps))
        return self._targets[key]

    def style_size(self, step: int) -> int:
        """The style size of batch `step`, drawn from cfg.style_sizes by (seed, step) alone."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 7919 + self.rank * 104_729 + 3)
        return self.cfg.style_sizes[int(torch.randint(len(self.cfg.style_sizes), (), generator=g))]

    def batch(self, step: int) -> Batch:
        """Crops, the style each trains for, and the step's style size: functions of (seed, step) alone."""
        crops = self.sampler.batch(step, self.cfg.batch_size)
        ids = balanced_choices(len(self.styles), self.cfg.batch_size, self.cfg.seed, step, self.rank)
        return crops.to(self.runtime.device, memory_format=torch.channels_last), ids, self.style_size(step)

    def loss(self, batch: Batch, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        content, ids, size = batch
        present = sorted(set(ids))
        with self.runtime.autocast():
            out = model(content, [self.style_at(s, size) for s in present], [present.index(s) for s in ids])
            feats = self.backbone(out, self.taps)
            with torch.no_grad():
                targets = self.backbone(content, cfg.content_layers)
        style = self.objective.of_styles(feats, ids, lambda s: self.targets_at(s, size), self.style_weights)
        return losses.perceptual_total(feats, targets, out, style, cfg.content_weight, cfg.tv_weight)

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(state_dict)

    def preview(self) -> torch.Tensor:
        """Held-out photos, then a row of outputs per style, each style at the size of use."""
        rows = [self.previews]
        for s in range(len(self.styles)):
            gram = self.net.gram(self.style_at(s, SIZE_OF_USE))
            rows.append([self.net(p.to(self.runtime.device), gram).float().clamp(0, 1).cpu() for p in self.previews])
        return grid(rows)

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        save_msgnet(path, self.net, [p.stem for p in self.style_paths], self.styles,
                    [p.name for p in self.style_paths], [*self.cfg.style_sizes, SIZE_OF_USE],
                    backbone=self.cfg.backbone, train_config=as_dict(self.cfg), steps=steps, record=record)


def _check(cfg: MSGNetTrainConfig, paths: dict[str, list[Path]], init: dict[str, Any] | None,
           add_style: bool) -> None:
    # A run from --init may train other styles: the generator takes any style image, and the new file names the
    # styles of this run.
    check_styles(paths["style"], None, add_style, cfg.style_weight)


def _task(context: TaskContext) -> MSGNetTask:
    try:
        styles = [load_image(p).rgb for p in context.inputs["style"]]
    except InputError as e:
        raise UsageError(f"style {e}") from None
    train_files, held_out = split(list_images(context.inputs["data"][0]))
    return MSGNetTask(context.cfg, context.runtime, context.backbone, styles, context.inputs["style"], train_files,
                      held_out or train_files, context.rank)


SPEC = TrainerSpec(
    name=ENGINE,
    summary="Train an MSG-Net generator on several styles at once; it then takes any style image, or its trained "
            "styles by name (resumable; torchrun for several processes).",
    config_type=MSGNetTrainConfig,
    inputs={"style": TrainInput("files", "Style image; repeat it, one per style the model trains on.", "-s"),
            "data": TrainInput("folder", "Folder of content photos (searched recursively)."),
            "out": TrainInput("out", "Model file to write, e.g. weights/NAME.pth.", "-o")},
    loss_layers=lambda cfg: (*cfg.content_layers, *losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers).taps),
    make_task=_task,
    model_engine=ENGINE,
    run_name=lambda paths: "+".join(p.stem for p in paths["style"]),
    check=_check,
)
