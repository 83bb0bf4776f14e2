"""Training a StyleBank network (stransfer/engines/stylebank.py): the paper's (T+1) schedule, T steps of the
stylising branch (encoder, each item's bank, decoder; perceptual losses from the shared backbone and loss
functions) then one of the auto-encoder branch (encoder, decoder; reconstruction), so the styles live in the
banks alone; or new banks beside a trained model's, with everything else frozen (--add-style)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from stransfer import losses
from stransfer.config import as_dict, each, param
from stransfer.device import Runtime
from stransfer.engines.stylebank import ENGINE, StyleBankArch, StyleBankNet, save_network
from stransfer.errors import InputError, UsageError
from stransfer.images import fit_long_side, grid, load_image, resize
from stransfer.train.data import CropSampler, balanced_choices, list_images, load_previews, split
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput
from stransfer.train.styles import check_styles, styles_of_init


@dataclass(frozen=True)
class StyleBankTrainConfig(TrainConfig):
    width: int = param(StyleBankArch.width, ge=4, help=(
        "Channels of the encoder's first layer; the banks work on 4x as many (the paper's 32, so 128)."))
    bank_layers: int = param(StyleBankArch.bank_layers, ge=1, help="3x3 convolutions in each style's bank.")
    # The size of use is a 512 px output: a 384 px crop is most of one, so strokes are learnt at that scale.
    image_size: int = param(384, ge=32, help="Side of the square training crops.")
    # The style image's long side when its Grams are taken: a training crop is a piece of a 512 px output.
    style_size: int = param(512, ge=32, help="Long side of the style image for its Grams.")
    stylize_steps: int = param(2, ge=1, help=(
        "T of the (T+1) schedule: stylising steps before each auto-encoder step (the paper's 2)."))
    # The auto-encoder step's loss is minus the batch's PSNR in dB, so its gradient does not fade as the
    # reconstruction improves (a plain mean square error's does, and the Adam moments the two branches share
    # would soon be the stylising branch's alone); this weight sets its share of them.
    reconstruction_weight: float = param(0.1, gt=0.0, help=(
        "Weight of the auto-encoder step's loss (minus the reconstruction's PSNR in dB)."))
    content_layers: tuple[str, ...] = param(("relu3_3",), help="Comma-separated layers of the content loss.")
    style_layers: tuple[str, ...] = param(("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                                          help="Comma-separated layers of the style loss.")
    content_weight: float = param(1.0, ge=0.0, help="Weight of the content loss.")
    # The multistyle Johnson model trained its eight styles at 2 (1.2 to 5 per style); a one-style network at 0.5.
    style_weight: tuple[float, ...] = param((2.0,), ge=0.0, help=(
        "Style weight: one number, or one per style in the order of -s or --add-style, e.g. 2,4,1."))
    style_loss: str = param("gram", check=losses.parse_style_loss, help="Style loss, as for stylize -m gatys.")
    tv_weight: float = param(1.0, ge=0.0, help="Weight of total variation (smoothness).")
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Loss network.")


def autoencoder_step(step: int, stylize_steps: int) -> bool:
    """Whether optimiser step `step` (from 0) is the auto-encoder's: every (T+1)-th, after T stylising steps. A
    function of the step number alone, so a resumed run takes the branches the whole run would have."""
    return (step + 1) % (stylize_steps + 1) == 0


def stylising_index(step: int, stylize_steps: int) -> int:
    """How many stylising steps come before step `step`: what picks a stylising step's styles, so every style
    comes equally often across the stylising steps."""
    return step - step // (stylize_steps + 1)


@dataclass(frozen=True)
class Batch:
    crops: torch.Tensor
    styles: list[int] | None  # each crop's bank; None: an auto-encoder step


class StyleBankTask:
    """One network for the styles `style_paths`, trained on the (T+1) schedule; or, given `frozen` (the names and
    image names of a trained model's styles), only new banks for them beside the trained ones (--add-style)."""

    name = ENGINE

    def __init__(self, cfg: StyleBankTrainConfig, runtime: Runtime, backbone: nn.Module, styles: list[torch.Tensor],
                 style_paths: list[Path], train_files: list[Path], preview_files: list[Path], rank: int = 0,
                 frozen: tuple[list[str], list[str]] | None = None) -> None:
        self.cfg, self.runtime, self.backbone, self.rank = cfg, runtime, backbone, rank
        self.style_paths, self.frozen = style_paths, frozen
        self.offset = len(frozen[0]) if frozen else 0  # banks before the ones this run trains
        self.model = StyleBankNet(StyleBankArch(cfg.width, cfg.bank_layers), self.offset + len(styles))
        if frozen:
            for module in (self.model.encoder, self.model.decoder, *self.model.banks[:self.offset]):
                module.requires_grad_(False)
        self.sampler = CropSampler(train_files, cfg.image_size, cfg.seed, rank)
        self.objective = losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers)
        self.taps = set(cfg.content_layers) | self.objective.taps
        self.style_targets = [self._targets(style) for style in styles]
        self.style_weights = each(cfg.style_weight, len(styles))  # check_styles checked the count
        self.previews = load_previews(preview_files, cfg.image_size)

    def _targets(self, style: torch.Tensor) -> dict[str, dict[str, Any]]:
        style = resize(style, fit_long_side(style.shape[-2], style.shape[-1], self.cfg.style_size))
        with torch.no_grad(), self.runtime.autocast():
            return self.objective.targets(self.backbone(style.to(self.runtime.device), self.objective.taps))

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start from a trained model's weights (--init). With --add-style each new bank starts as a copy of the
        model's first bank, which the decoder already renders, rather than from random filters."""
        if not self.frozen:
            self.model.load_state_dict(state_dict)
            return
        missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
        new = {f"banks.{i}." for i in range(self.offset, self.model.styles)}
        if unexpected or any(not key.startswith(tuple(new)) for key in missing):
            raise RuntimeError(f"the model holds other tensors than {self.offset} banks of this architecture")
        for bank in self.model.banks[self.offset:]:
            bank.load_state_dict(self.model.banks[0].state_dict())

    def autoencodes(self, step: int) -> bool:
        """Adding styles trains banks alone: every step stylises; the encoder and decoder are frozen."""
        return not self.frozen and autoencoder_step(step, self.cfg.stylize_steps)

    def batch(self, step: int) -> Batch:
        """Crops and, for a stylising step, the style each one trains for: functions of (seed, step) alone."""
        crops = self.sampler.batch(step, self.cfg.batch_size).to(self.runtime.device,
                                                                 memory_format=torch.channels_last)
        if self.autoencodes(step):
            return Batch(crops, None)
        index = step if self.frozen else stylising_index(step, self.cfg.stylize_steps)
        ids = balanced_choices(len(self.style_targets), self.cfg.batch_size, self.cfg.seed, index, self.rank)
        return Batch(crops, ids)

    def loss(self, batch: Batch, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.styles is None:
            return self._reconstruction(batch.crops, model)
        return self._stylising(batch.crops, batch.styles, model)

    def _reconstruction(self, crops: torch.Tensor, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """The auto-encoder branch: minus the PSNR (dB) of the batch through the encoder and decoder."""
        with self.runtime.autocast():
            out = model(crops)
        psnr = -10 * torch.log10((out.float() - crops.float()).pow(2).mean().clamp_min(1e-10))
        total, logged = losses.weighted_total({"reconstruction": -psnr},
                                              {"reconstruction": self.cfg.reconstruction_weight})
        return total, {"psnr_db": psnr.item(), "total": logged["total"]}

    def _stylising(self, content: torch.Tensor, ids: list[int],
                   model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """The stylising branch: each crop through its style's bank, perceptual losses against its style."""
        cfg = self.cfg
        with self.runtime.autocast():
            out = model(content, ids=[i + self.offset for i in ids])
            feats = self.backbone(out, self.taps)
            with torch.no_grad():
                targets = self.backbone(content, cfg.content_layers)
        style = self.objective.of_styles(feats, ids, self.style_targets.__getitem__, self.style_weights)
        return losses.perceptual_total(feats, targets, out, style, cfg.content_weight, cfg.tv_weight)

    def preview(self) -> torch.Tensor:
        """Held-out images, their reconstructions, then a row of outputs for each style this run trains."""
        rows = [self.previews]
        picks: list[torch.Tensor | None] = [None]
        picks += [torch.nn.functional.one_hot(torch.tensor(self.offset + s), self.model.styles).float()
                  for s in range(len(self.style_targets))]
        for code in picks:
            rows.append([self.model(p.to(self.runtime.device), code).float().clamp(0, 1).cpu()
                         for p in self.previews])
        return grid(rows)

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        names, images = self.frozen or ([], [])
        save_network(path, self.model, [*names, *(p.stem for p in self.style_paths)],
                     [*images, *(p.name for p in self.style_paths)], backbone=self.cfg.backbone,
                     train_config=as_dict(self.cfg), steps=steps, record=record)


def _check(cfg: StyleBankTrainConfig, paths: dict[str, list[Path]], init: dict[str, Any] | None,
           add_style: bool) -> None:
    check_styles(paths["style"], init, add_style, cfg.style_weight)


def _task(context: TaskContext) -> StyleBankTask:
    # Each step leaves some weights out (an auto-encoder step every bank, a stylising step the banks of styles
    # not in its batch), which DistributedDataParallel as the loop builds it refuses.
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise UsageError("train stylebank runs in one process (not under torchrun)")
    try:
        styles = [load_image(p).rgb for p in context.inputs["style"]]
    except InputError as e:
        raise UsageError(f"style {e}") from None
    train_files, held_out = split(list_images(context.inputs["data"][0]))
    init = context.init
    frozen = (init["styles"], init["style_images"]) if context.add_style and init else None
    return StyleBankTask(context.cfg, context.runtime, context.backbone, styles, context.inputs["style"],
                         train_files, held_out or train_files, context.rank, frozen)


def _layers(cfg: StyleBankTrainConfig) -> tuple[str, ...]:
    return (*cfg.content_layers, *losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers).taps)


SPEC = TrainerSpec(
    name=ENGINE,
    summary="Train a StyleBank network (one encoder and decoder, a filter bank per style) on the (T+1) schedule, "
            "or add new styles' banks (resumable).",
    config_type=StyleBankTrainConfig,
    inputs={"style": TrainInput("files", "Style image; repeat it for one bank per style.", "-s"),
            "data": TrainInput("folder", "Folder of content photos (searched recursively)."),
            "out": TrainInput("out", "Model file to write, e.g. weights/NAME.pth.", "-o")},
    loss_layers=_layers,
    make_task=_task,
    model_engine=ENGINE,
    run_name=lambda paths: "+".join(p.stem for p in paths["style"]),
    check=_check,
    describe_init=styles_of_init,
    adds_styles_to="style",
)
