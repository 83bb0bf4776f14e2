"""Training a Johnson network for one style or several (conditional instance norm), or adding styles to a trained
one: perceptual losses from the shared backbone and loss functions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.config import as_dict, each, param
from stransfer.device import Runtime
from stransfer.errors import InputError, UsageError
from stransfer.engines.johnson import (ConvLayer, InstanceNorm, JohnsonArch, TransformerNet,
                                      save_transformer)
from stransfer.images import fit_long_side, grid, load_image, resize
from stransfer.train.data import CropSampler, balanced_choices, list_images, load_previews, split
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput
from stransfer.train.styles import NewRows, check_styles, one_hot_styles, styles_of_init


@dataclass(frozen=True)
class JohnsonTrainConfig(TrainConfig):
    # Half the paper's width (32): a quarter of the multiply-adds, so a CPU stylises a photo in a fraction of a
    # second (benchmarks/johnson_speed.py times both widths), while 5 residual blocks keep the receptive field
    # that makes strokes coherent.
    width: int = param(16, ge=4, help="Channels of the first layer (32 in the paper).")
    residual_blocks: int = param(5, ge=0, help="Residual blocks (5 in the paper).")
    # Training crops are square; the network is fully convolutional and runs on any size afterwards.
    image_size: int = param(256, ge=32, help="Side of the square training crops.")
    # Long side of the style image when its Grams are taken: sets the scale of the strokes it learns. A 256 px
    # crop is a piece of a 512 px output, the default --size, so the style is seen as it is at 512 px; seen at
    # 256 px, its strokes came out relatively twice as small at 512 px (weights/records/starry_night.json).
    style_size: int = param(512, ge=32, help="Long side of the style image for its Grams.")
    content_layers: tuple[str, ...] = param(("relu3_3",), help="Comma-separated layers of the content loss.")
    style_layers: tuple[str, ...] = param(("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                                         help="Comma-separated layers of the style loss.")
    # Relative losses, as in the Gatys engine (losses.py), so the weights mean the same thing there and here.
    # A network cannot fit each photo as the optimiser does, so the style weights that suit Gatys (5, even 2)
    # make it give up the scene; 0.5 keeps it (weights/records/the_scream.json has such a run).
    content_weight: float = param(1.0, ge=0.0, help="Weight of the content loss.")
    # One weight for every style, or one per style in the order of -s (or of --add-style's new styles): in one
    # network, styles far from photos need more weight than styles near them to take as much of their style.
    style_weight: tuple[float, ...] = param((0.5,), ge=0.0, help=(
        "Style weight: one number, or one per style in the order of -s or --add-style, e.g. 2,4,1."))
    # The style losses of the registry (losses.py), as in the Gatys engine.
    style_loss: str = param("gram", check=losses.parse_style_loss, help="Style loss, as for stylize -m gatys.")
    tv_weight: float = param(1.0, ge=0.0, help="Weight of total variation (smoothness).")
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Loss network.")


def new_styles(base: TransformerNet, count: int) -> NewRows:
    """`base`, frozen, with norm rows for `count` new styles (--add-style)."""
    return NewRows(base, [f"net.{name}" for name in base.table_names], count)


def _channel_spaces(residual_blocks: int) -> list[tuple[str, str]]:
    """(input, output) channel space of each ConvLayer of a TransformerNet, in module order. The residual
    blocks read and write one stream ("s"), which therefore widens with one channel map throughout."""
    blocks = [pair for i in range(residual_blocks) for pair in (("s", f"mid{i}"), (f"mid{i}", "s"))]
    return [("rgb", "a"), ("a", "b"), ("b", "s"), *blocks, ("s", "up1"), ("up1", "up2"), ("up2", "rgb")]


def widened(small: TransformerNet, width: int, generator: torch.Generator) -> TransformerNet:
    """`small` at `width` computing the same function (Chen et al. 2016, Net2Net's wider operator): each added
    channel copies one of the layer's channels, and the layer reading them shares that channel's weights among
    its copies in random proportions (summing to one), so copies get different gradients and can learn apart.
    Instance norm keeps it exact: a copy has its original's statistics."""
    if width < small.arch.width:
        raise ValueError(f"cannot widen a width-{small.arch.width} network to {width}")
    big = TransformerNet(JohnsonArch(width, small.arch.residual_blocks), small.styles)
    pairs = list(zip((m for m in small.net.modules() if isinstance(m, ConvLayer)),
                     (m for m in big.net.modules() if isinstance(m, ConvLayer))))
    spaces = _channel_spaces(small.arch.residual_blocks)
    assert len(pairs) == len(spaces)
    source: dict[str, torch.Tensor] = {"rgb": torch.arange(3)}  # per space: the old channel each new one copies
    share: dict[str, torch.Tensor] = {"rgb": torch.ones(3)}  # per space: each copy's part of its original's weights
    for (old, new), (_, out) in zip(pairs, spaces):
        if out in source:
            continue
        n_old, n_new = old[1].out_channels, new[1].out_channels
        index = torch.cat([torch.arange(n_old), torch.randint(n_old, (n_new - n_old,), generator=generator)])
        part = torch.rand(n_new, generator=generator) + 0.5
        total = torch.zeros(n_old).index_add_(0, index, part)
        source[out], share[out] = index, part / total[index]
    with torch.no_grad():
        for (old, new), (cin, cout) in zip(pairs, spaces):
            conv_old, conv_new = old[1], new[1]
            weight = conv_old.weight[source[cout]][:, source[cin]] * share[cin].view(1, -1, 1, 1)
            conv_new.weight.copy_(weight)
            conv_new.bias.copy_(conv_old.bias[source[cout]])
            norms = [(a, b) for a, b in zip(old, new) if isinstance(a, InstanceNorm)]
            for norm_old, norm_new in norms:
                norm_new.weight.copy_(norm_old.weight[:, source[cout]])
                norm_new.bias.copy_(norm_old.bias[:, source[cout]])
    return big


class JohnsonTask:
    """One network for the styles `style_paths` (several: Dumoulin et al.'s conditional instance norm, each item
    of a batch trained for one style, every style equally often), or, given `frozen` (the names and image names of
    a trained model's styles), only the norm parameters of the new styles beside them (--add-style)."""

    name = "johnson"

    def __init__(self, cfg: JohnsonTrainConfig, runtime: Runtime, backbone: VGGFeatures, styles: list[torch.Tensor],
                 style_paths: list[Path], train_files: list[Path], preview_files: list[Path], rank: int = 0,
                 frozen: tuple[list[str], list[str]] | None = None) -> None:
        self.cfg, self.runtime, self.backbone, self.rank = cfg, runtime, backbone, rank
        self.style_paths, self.frozen = style_paths, frozen
        arch = JohnsonArch(cfg.width, cfg.residual_blocks)
        # Rows of the norm tables before the styles this run trains (all of them but with --add-style).
        self.offset = len(frozen[0]) if frozen else 0
        self.model: nn.Module = (new_styles(TransformerNet(arch, self.offset), len(styles)) if frozen
                                 else TransformerNet(arch, len(styles)))
        self.sampler = CropSampler(train_files, cfg.image_size, cfg.seed, rank)
        self.objective = losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers)
        self.taps = set(cfg.content_layers) | self.objective.taps
        self.style_targets = [self._targets(style) for style in styles]  # once per style
        self.style_weights = each(cfg.style_weight, len(styles))  # check_styles checked the count
        self.previews = load_previews(preview_files, cfg.image_size)

    def _targets(self, style: torch.Tensor) -> dict[str, dict[str, Any]]:
        style = resize(style, fit_long_side(style.shape[-2], style.shape[-1], self.cfg.style_size))
        with torch.no_grad(), self.runtime.autocast():
            return self.objective.targets(self.backbone(style.to(self.runtime.device), self.objective.taps))

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start from a trained model's weights (--init); a narrower model is first widened to this run's
        width (widened)."""
        width = state_dict["net.0.1.weight"].shape[0]
        if width < self.cfg.width:
            rows = state_dict["net.0.2.weight"].shape[0] if state_dict["net.0.2.weight"].dim() == 2 else 1
            small = TransformerNet(JohnsonArch(width, self.cfg.residual_blocks), rows)
            small.load_state_dict(state_dict)
            state_dict = widened(small, self.cfg.width, torch.Generator().manual_seed(self.cfg.seed)).state_dict()
        if isinstance(self.model, NewRows):
            self.model.base.load_state_dict(state_dict)
            self.model.restart_new()
        else:
            self.model.load_state_dict(state_dict)

    def _code(self, ids: list[int]) -> torch.Tensor | None:
        return one_hot_styles(ids, self.offset, self.offset + len(self.style_targets), self.runtime.device)

    def batch(self, step: int) -> tuple[torch.Tensor, list[int]]:
        """Crops and the style each one trains for, both functions of (seed, step) alone. Channels-last, like the
        networks (loop.place)."""
        crops = self.sampler.batch(step, self.cfg.batch_size)
        ids = balanced_choices(len(self.style_targets), self.cfg.batch_size, self.cfg.seed, step, self.rank)
        return crops.to(self.runtime.device, memory_format=torch.channels_last), ids

    def loss(self, batch: tuple[torch.Tensor, list[int]], model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        content, ids = batch
        code = self._code(ids)
        with self.runtime.autocast():
            out = model(content) if code is None else model(content, code)
            feats = self.backbone(out, self.taps)
            with torch.no_grad():
                targets = self.backbone(content, cfg.content_layers)
        style = self.objective.of_styles(feats, ids, self.style_targets.__getitem__, self.style_weights)
        return losses.perceptual_total(feats, targets, out, style, cfg.content_weight, cfg.tv_weight)

    def preview(self) -> torch.Tensor:
        """Held-out images, then a row of outputs for each style this run trains."""
        rows = [self.previews]
        for s in range(len(self.style_targets)):
            code = self._code([s] * len(self.previews))
            rows.append([(self.model(p.to(self.runtime.device)) if code is None
                          else self.model(p.to(self.runtime.device), code[0])).float().clamp(0, 1).cpu()
                         for p in self.previews])
        return grid(rows)

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        net = self.model
        if isinstance(net, NewRows):
            net = net.merged_into(TransformerNet(net.base.arch, self.offset + len(self.style_targets)))
        assert isinstance(net, TransformerNet)
        names, images = self.frozen or ([], [])
        save_transformer(path, net, [*names, *(p.stem for p in self.style_paths)],
                         [*images, *(p.name for p in self.style_paths)], arch=dataclasses.asdict(net.arch),
                         backbone=self.cfg.backbone, train_config=as_dict(self.cfg), steps=steps, record=record)


def _check(cfg: JohnsonTrainConfig, paths: dict[str, list[Path]], init: dict[str, Any] | None,
           add_style: bool) -> None:
    check_styles(paths["style"], init, add_style, cfg.style_weight)


def _task(context: TaskContext) -> JohnsonTask:
    try:
        styles = [load_image(p).rgb for p in context.inputs["style"]]
    except InputError as e:
        raise UsageError(f"style {e}") from None
    train_files, held_out = split(list_images(context.inputs["data"][0]))
    init = context.init
    frozen = (init["styles"], init["style_images"]) if context.add_style and init else None
    return JohnsonTask(context.cfg, context.runtime, context.backbone, styles, context.inputs["style"], train_files,
                       held_out or train_files, context.rank, frozen)


SPEC = TrainerSpec(
    name="johnson",
    summary="Train a Johnson feed-forward network for one style or several, or add styles to a trained one "
            "(resumable; torchrun for several processes).",
    config_type=JohnsonTrainConfig,
    inputs={"style": TrainInput("files", "Style image; repeat it for one network holding several styles.", "-s"),
            "data": TrainInput("folder", "Folder of content photos (searched recursively)."),
            "out": TrainInput("out", "Model file to write, e.g. weights/NAME.pth.", "-o")},
    loss_layers=lambda cfg: (*cfg.content_layers, *losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers).taps),
    make_task=_task,
    model_engine="johnson",
    run_name=lambda paths: "+".join(p.stem for p in paths["style"]),
    check=_check,
    describe_init=styles_of_init,
    grows=("width",),
    adds_styles_to="style",
)
