"""Training a texture generator (stransfer/engines/texturenet.py) for one texture or several: Gram (or any
registered style) loss against each texture's exemplar, the diversity term of Improved Texture Networks, and
textures added to a trained generator (its own weights frozen, only the new textures' norm rows trained)."""

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
from stransfer.engines.texturenet import ENGINE, CodedNorm, TextureGenerator, TextureNetArch, noise, save_generator
from stransfer.errors import InputError, UsageError
from stransfer.images import fit_long_side, grid, load_image, resize
from stransfer.train.data import balanced_choices
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput
from stransfer.train.styles import NewRows, check_styles, one_hot_styles, styles_of_init

PREVIEW_SEEDS = (0, 1, 2, 3)


@dataclass(frozen=True)
class TextureTrainConfig(TrainConfig):
    steps: int = param(3000, ge=1)
    batch_size: int = param(4, ge=1, help="Samples per step, a multiple of --samples-per-texture.")
    # The diversity term compares samples of one texture, so each texture in a batch comes with this many.
    samples_per_texture: int = param(2, ge=1, help="Samples of each texture in a batch (2 or more for diversity).")
    # The papers train on 256 px samples; 128 px costs a quarter of the step, and a fully convolutional generator
    # learns local statistics that hold at any size.
    image_size: int = param(128, ge=32, help="Side of the square training samples.")
    # The exemplar's statistics are taken at the size its texture is meant to be seen at: a training sample is a
    # piece of a 512 px texture whose strokes have the exemplar's proportions at 512 px.
    style_size: int = param(512, ge=32, help="Long side of each texture image when its statistics are taken.")
    scales: int = param(6, ge=1, le=10, help="Noise scales: the full size, 1/2, 1/4, ... (the paper's 6).")
    noise_channels: int = param(3, ge=1, help="Noise channels at each scale.")
    width: int = param(8, ge=1, help="Channels each scale adds to the generator (the paper's 8).")
    # The reference metric's layers, so what trains is what is judged.
    style_layers: tuple[str, ...] = param(("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                                          help="Comma-separated layers of the style loss.")
    style_loss: str = param("gram", check=losses.parse_style_loss, help="Style loss, as for stylize -m gatys.")
    style_weight: tuple[float, ...] = param((1.0,), ge=0.0, help=(
        "Style weight: one number, or one per texture in the order of -s or --add-style."))
    # Ulyanov et al. 2017: without it the generator maps every noise to nearly the same texture.
    diversity_weight: float = param(0.1, ge=0.0, help=(
        "Weight of the diversity term (an entropy estimate of the samples of a texture); 0 = Texture Networks."))
    diversity_layer: str = param("relu4_3", help="Layer whose features the diversity term spreads apart.")
    tv_weight: float = param(0.0, ge=0.0, help="Weight of total variation (smoothness).")
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Loss network.")


def diversity(features: torch.Tensor, group: int) -> torch.Tensor:
    """Kozachenko-Leonenko's entropy estimate, up to constants, as Ulyanov et al. 2017 use it: minus the mean log
    distance from each sample to its nearest other sample of the same texture (consecutive runs of `group` items),
    the distance a mean squared difference relative to the features' own mean square, so the weight does not
    depend on the layer's scale."""
    terms = []
    for batch in features.float().flatten(1).split(group):
        if batch.shape[0] < 2:
            continue
        scale = batch.pow(2).mean().detach().clamp_min(1e-12)
        distance = torch.cdist(batch, batch).pow(2) / batch.shape[1] / scale
        distance = distance + torch.eye(batch.shape[0], device=batch.device) * 1e12  # not itself
        terms.append(-torch.log(distance.min(dim=1).values.clamp_min(1e-8)).mean())
    return torch.stack(terms).mean() if terms else features.new_zeros(())


def table_names(net: TextureGenerator) -> list[str]:
    """The generator's per-texture tables: the scales and shifts of its coded norms."""
    return [f"{name}.{key}" for name, module in net.named_modules() if isinstance(module, CodedNorm)
            for key in ("weight", "bias")]


class TextureTask:
    """One generator for the textures `paths` (several: conditional norms select the texture, every texture
    equally often), or, given `frozen` (the names and image names of a trained model's textures), only the norm
    rows of the new textures beside them (--add-style): the trained ones stay exactly as they were."""

    name = "texture"

    def __init__(self, cfg: TextureTrainConfig, runtime: Runtime, backbone: VGGFeatures, images: list[torch.Tensor],
                 paths: list[Path], rank: int = 0, frozen: tuple[list[str], list[str]] | None = None) -> None:
        self.cfg, self.runtime, self.backbone, self.rank, self.paths = cfg, runtime, backbone, rank, paths
        self.arch = TextureNetArch(cfg.scales, cfg.noise_channels, cfg.width)
        self.objective = losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers)
        self.taps = self.objective.taps | {cfg.diversity_layer}
        self.frozen = frozen
        # Rows of the norm tables before the textures this run trains (all of them but with --add-style).
        self.offset = len(frozen[0]) if frozen else 0
        self.targets = [self._targets(image) for image in images]
        self.weights = each(cfg.style_weight, len(images))
        base = TextureGenerator(self.arch, self.offset or len(images))
        self.model: nn.Module = NewRows(base, table_names(base), len(images)) if frozen else base

    def _targets(self, image: torch.Tensor) -> dict[str, dict[str, Any]]:
        image = resize(image, fit_long_side(image.shape[-2], image.shape[-1], self.cfg.style_size))
        with torch.no_grad(), self.runtime.autocast():
            return self.objective.targets(self.backbone(image.to(self.runtime.device), self.objective.taps))

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start from a trained generator's weights (--init)."""
        if isinstance(self.model, NewRows):
            self.model.base.load_state_dict(state_dict)
            self.model.restart_new()
        else:
            self.model.load_state_dict(state_dict)

    def _code(self, ids: list[int]) -> torch.Tensor | None:
        return one_hot_styles(ids, self.offset, self.offset + len(self.targets), self.runtime.device)

    def batch(self, step: int) -> tuple[list[torch.Tensor], list[int]]:
        """Noise and the texture of each sample, functions of (seed, step) alone."""
        cfg = self.cfg
        groups = balanced_choices(len(self.targets), cfg.batch_size // cfg.samples_per_texture, cfg.seed, step,
                                  self.rank)
        ids = [t for t in groups for _ in range(cfg.samples_per_texture)]
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 7919 + self.rank * 104_729 + 2)
        seeds = [int(s) for s in torch.randint(0, 2**62, (len(ids),), generator=g)]
        levels = noise(self.arch, cfg.image_size, cfg.image_size, seeds)
        return [z.to(self.runtime.device) for z in levels], ids

    def loss(self, batch: tuple[list[torch.Tensor], list[int]],
             model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        levels, ids = batch
        cfg, group = self.cfg, self.cfg.samples_per_texture
        with self.runtime.autocast():
            out = model(levels, self._code(ids))
            feats = self.backbone(out, self.taps)
        style, weighted = [], []
        for start in range(0, len(ids), group):
            part = {k: v[start:start + group] for k, v in feats.items()}
            style.append(self.objective(part, self.targets[ids[start]]))
            weighted.append(self.weights[ids[start]] * style[-1])
        total, logged = losses.weighted_total(
            {"style": torch.stack(weighted).mean(), "diversity": diversity(feats[cfg.diversity_layer], group),
             "tv": losses.total_variation(out.float())},
            {"diversity": cfg.diversity_weight, "tv": cfg.tv_weight})  # each texture's weight applied above
        return total, logged | {"style": torch.stack(style).mean().item()}  # the log shows it unweighted

    def preview(self) -> torch.Tensor:
        """A row of samples (fixed seeds) per texture this run trains."""
        size = self.cfg.image_size
        rows = []
        for t in range(len(self.targets)):
            levels = [z.to(self.runtime.device) for z in noise(self.arch, size, size, list(PREVIEW_SEEDS))]
            code = self._code([t] * len(PREVIEW_SEEDS))
            rows.append(list(self.model(levels, code).float().clamp(0, 1).cpu().split(1)))
        return grid(rows)

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        net = self.model
        if isinstance(net, NewRows):
            net = net.merged_into(TextureGenerator(self.arch, self.offset + len(self.targets)))
        assert isinstance(net, TextureGenerator)
        names, images = self.frozen or ([], [])
        save_generator(path, net, [*names, *(p.stem for p in self.paths)],
                       [*images, *(p.name for p in self.paths)], backbone=self.cfg.backbone,
                       train_config=as_dict(self.cfg), steps=steps, record=record)


def _check(cfg: TextureTrainConfig, paths: dict[str, list[Path]], init: dict[str, Any] | None,
           add_style: bool) -> None:
    check_styles(paths["style"], init, add_style, cfg.style_weight)
    if cfg.batch_size % cfg.samples_per_texture:
        raise UsageError(f"--batch-size {cfg.batch_size} is not a multiple of --samples-per-texture "
                         f"{cfg.samples_per_texture}")


def _task(context: TaskContext) -> TextureTask:
    try:
        images = [load_image(p).rgb for p in context.inputs["style"]]
    except InputError as e:
        raise UsageError(f"style {e}") from None
    init = context.init
    frozen = (init["styles"], init["style_images"]) if context.add_style and init else None
    return TextureTask(context.cfg, context.runtime, context.backbone, images, context.inputs["style"],
                       context.rank, frozen)


def _layers(cfg: TextureTrainConfig) -> tuple[str, ...]:
    return (*losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers).taps, cfg.diversity_layer)


SPEC = TrainerSpec(
    name="texture",
    summary="Train a texture network for one texture or several from noise, or add textures to a trained one "
            "(resumable).",
    config_type=TextureTrainConfig,
    inputs={"style": TrainInput("files", "Texture image; repeat it for one network holding several textures.", "-s"),
            "out": TrainInput("out", "Model file to write, e.g. weights/NAME.pth.", "-o")},
    loss_layers=_layers,
    make_task=_task,
    model_engine=ENGINE,
    run_name=lambda paths: "+".join(p.stem for p in paths["style"])[:80],
    check=_check,
    describe_init=styles_of_init,
    adds_styles_to="style",
)
