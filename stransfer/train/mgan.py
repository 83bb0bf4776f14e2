"""Training an MGAN generator (Li & Wand 2016; stransfer/engines/mgan.py) for one style: a critic of neural patches
(windows of VGG relu3_1 features) learns to tell the output's patches from the style image's, augmented by scale,
rotation and mirroring; the generator learns to fool it, and CNNMRF's patch energy pulls its patches toward the
style's, while its output still encodes to the photo's relu4_1.

Where this departs from the paper: the paper first makes photo/teacher pairs with an optimiser (its MDAN) and trains
the generator on a pixel loss to the teacher beside the critic, whose real patches are the teacher's. Here there
are no teacher images: the critic's real patches are the style image's own (as MDAN's discriminator has them),
the teacher's energy is a loss of the generator, and the content term is perceptual; docs/methods.md says why."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from stransfer import losses
from stransfer.backbone import VGGFeatures
from stransfer.config import as_dict, param
from stransfer.device import Runtime
from stransfer.engines.decoder import load_decoder
from stransfer.engines.mgan import ENGINE, Generator, save_generator
from stransfer.engines.onepass import ENCODER_LAYER
from stransfer.errors import InputError, ModelError, UsageError
from stransfer.images import fit_long_side, grid, load_image, resize
from stransfer.train.data import CropSampler, list_images, load_previews, split
from stransfer.train.loop import CriticTrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput
from stransfer.weights import find_model


@dataclass(frozen=True)
class MganTrainConfig(CriticTrainConfig):
    steps: int = param(3000, ge=1)
    batch_size: int = param(2, ge=1, help="Photo crops per step (the critic sees as many style windows).")
    # The generator starts from a decoder that already works (start_decoder); at 1e-4 it hardly moved from it in
    # a hundred steps (docs/methods.md).
    learning_rate: float = param(5e-4, gt=0.0, help="Adam learning rate of the generator.")
    crop_size: int = param(384, ge=32, help="Side of the square photo crops (the paper's 128).")
    # The style's strokes are learnt at the scale they have when its long side is this: a 384 px crop is most of
    # a 512 px output, the size results are judged at.
    style_size: int = param(512, ge=32, help="Long side of the style image before augmentation.")
    # The paper's augmentation: 1.1x larger and smaller, 10 degrees each way, mirrored. Each variant's patches are
    # computed once, so they cost nothing per step.
    style_scales: tuple[float, ...] = param((0.9, 1.0, 1.1), gt=0.0, le=4.0, help=(
        "Scales of the style image among its real patches, e.g. 0.9,1,1.1."))
    style_rotations: tuple[float, ...] = param((-10.0, 0.0, 10.0), ge=-45.0, le=45.0, help=(
        "Rotations of the style image among its real patches, in degrees."))
    # The paper's choice (VGG19's relu3_1): windows that hold a stroke and its colour together.
    patch_layer: str = param("relu3_1", choices=("relu2_1", "relu3_1", "relu4_1"), help=(
        "VGG layer whose patches the critic judges."))
    # Channels of the critic's two 4x4 stride-2 convolutions: width and 2 x width. Half the paper's 256 is a quarter
    # of its multiply-adds, on a critic that runs twice a step on 384 px crops.
    critic_width: int = param(128, ge=4, help="Channels of the critic's first layer (the paper's 256).")
    # The paper weighs its critic 1e-2 against a pixel loss to the teacher; here the content term is a relative error
    # of order 0.5 and the hinge of order 1, so at 0.1 the critic has a say without tearing the layout apart.
    adversarial_weight: float = param(0.1, ge=0.0, help="Weight of the adversarial (patch) loss.")
    # CNNMRF's energy (the mrf style loss: each output patch pulled to its best-matching style patch) at
    # patch_layer, on the generator's outputs: what the paper's optimiser teacher minimises per photo, trained into
    # the generator without making teacher images. It gives the generator a dense pull toward the style's patches
    # from the first step, while the critic is still learning what they look like.
    mrf_weight: float = param(1.0, ge=0.0, help="Weight of the CNNMRF patch loss against the style (0: off).")
    # Matching every output patch against thousands of style patches costs as much as the generator's own pass;
    # every 2nd position in each direction is a quarter of it, and the 3x3 patches still overlap every cell.
    mrf_stride: int = param(2, ge=1, le=3, help="Step between the output's patches the mrf loss matches.")
    # relu4_1 is what the generator decodes: its output must encode back to the photo's own features there,
    # which keeps the layout and leaves the finer layers, where strokes live, to the critic.
    content_layer: str = param("relu4_1", choices=("relu3_1", "relu4_1"), help="Layer of the content loss.")
    content_weight: float = param(1.0, ge=0.0, help="Weight of the content loss.")
    tv_weight: float = param(1.0, ge=0.0, help="Weight of total variation (smoothness).")
    start_decoder: str = param("adain_vgg16", help=(
        "AdaIN decoder model (NAME or .pth) the generator starts from; empty: random weights."))
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"), help="Encoder and loss network.")


class PatchCritic(nn.Module):
    """The paper's discriminator of neural patches: two 4x4 stride-2 convolutions and a 1x1 one score every window
    of the features (about 10x10 cells at the input) as style (> 0) or not (< 0). Spectral norm (Miyato et al.
    2018) replaces the paper's batch norm: a batch of a few crops gives batch statistics too noisy to normalise
    by, and real and fake batches normalised apart can be told apart by their statistics alone; a bounded
    Lipschitz constant also keeps the generator's gradients from growing as the critic sharpens."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        # 1 / RMS of the style's features (set by the task): inputs of order 1 at any layer, so the critic's first
        # Adam steps, each moving every weight by about the learning rate, move its scores by order 1 too.
        self.register_buffer("scale", torch.ones(()))
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, width, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * width, 1, 1)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Each inner window's score, (N, K) in fp32. The ring of windows at the border is left out, as in the
        paper: they see the zero padding of the convolutions, which no style window away from its edges does."""
        scores = self.net(features * self.scale.to(features.dtype)).float()
        if min(scores.shape[-2:]) > 2:
            scores = scores[..., 1:-1, 1:-1]
        return scores.flatten(1)


def critic_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The paper's max-margin loss: every real window's score above 1, every generated one's below -1."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def strided_mrf(features: torch.Tensor, patches: torch.Tensor, stride: int, offset: tuple[int, int]) -> torch.Tensor:
    """The mrf loss (losses.mrf_loss: each patch pulled to the style patch of highest normalised cross-correlation,
    relative squared error per item) over every `stride`-th patch position from `offset`, matched by the shared
    matcher (losses.best_patch_index) as 1x1 correlations of flattened patches."""
    own = F.unfold(features[..., offset[0]:, offset[1]:].float(), losses.MRF_PATCH, stride=stride)  # (B, C*9, L)
    flat = patches.flatten(1)
    chunks = flat.view(*flat.shape, 1, 1).split(losses.MRF_CHUNK)
    index = losses.best_patch_index(own.unsqueeze(2), chunks).flatten(1)  # (B, L)
    matched = flat[index].transpose(1, 2)  # (B, C*9, L)
    return (own - matched).pow(2).sum(dim=(1, 2)) / matched.pow(2).sum(dim=(1, 2)).clamp_min(1e-12)


def generator_hinge(fake: torch.Tensor) -> torch.Tensor:
    """The same margin with the generated windows labelled real, as the paper trains its generator."""
    return F.relu(1.0 - fake).mean()


def rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """The image turned about its centre, cut to the largest centred rectangle of its own shape that the turned
    picture covers, so no corner of empty canvas becomes a patch the critic learns as style."""
    h, w = image.shape[-2:]
    if degrees == 0:
        return image
    a = math.radians(degrees)
    cos, sin = math.cos(a), abs(math.sin(a))
    shrink = min(w / (w * cos + h * sin), h / (w * sin + h * cos))
    oh, ow = max(1, int(h * shrink)), max(1, int(w * shrink))
    y, x = torch.meshgrid(torch.arange(oh) - (oh - 1) / 2, torch.arange(ow) - (ow - 1) / 2, indexing="ij")
    # Output pixel (x, y) from the centre samples the input at the point turned by the angle; grid_sample wants it
    # in [-1, 1] of the input's width and height (align_corners False: a pixel's centre at (2i + 1) / n - 1).
    xs = (math.cos(a) * x - math.sin(a) * y) * 2 / w
    ys = (math.sin(a) * x + math.cos(a) * y) * 2 / h
    grid_ = torch.stack([xs, ys], dim=-1)[None].to(image)
    return F.grid_sample(image, grid_, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


def style_variants(style: torch.Tensor, cfg: MganTrainConfig) -> list[torch.Tensor]:
    """The style image at style_size times each scale, turned by each rotation, and each of those mirrored."""
    variants = []
    for scale in cfg.style_scales:
        side = max(16, round(cfg.style_size * scale))
        sized = resize(style, fit_long_side(style.shape[-2], style.shape[-1], side))
        for degrees in cfg.style_rotations:
            turned = rotate(sized, degrees)
            variants += [turned, turned.flip(-1)]
    return variants


def start_weights(name: str, arch: str) -> dict[str, torch.Tensor]:
    """The generator's starting weights from an AdaIN decoder model: its layers, without its content skips."""
    try:
        decoder, payload = load_decoder(find_model(name))
    except ModelError as e:
        raise UsageError(f"`start_decoder` {e}") from None
    if payload.get("backbone") != arch:
        raise UsageError(f"`start_decoder` {name} decodes {payload.get('backbone')} features, not {arch}'s: give "
                         "a decoder for this backbone, or an empty `start_decoder` for random weights")
    return {f"net.{k}": v for k, v in decoder.net.state_dict().items()}


@dataclass(frozen=True)
class Batch:
    photos: torch.Tensor  # (N, 3, S, S) crops
    real: torch.Tensor  # (N, C, w, w) windows of the style variants' patch_layer features
    # Where the critic looks in each output's feature map: a window of the real ones' size, so both go through
    # the critic as one batch (one pass, as DistributedDataParallel wants).
    fake_top: int
    fake_left: int
    mrf_offset: tuple[int, int]  # where the mrf loss's strided patch grid starts, so every position takes its turn


class MganTask:
    """One generator for the style `style_path`, trained against a PatchCritic on crops of `photos`."""

    name = "mgan"
    # The generator trains in the contiguous layout: its wide convolutions' weight gradients ran 2-3x slower in
    # channels-last on the CPUs measured (benchmarks/mgan.py --train-layouts), which cost more than the layout
    # speeds up the rest.
    memory_format = torch.contiguous_format

    def __init__(self, cfg: MganTrainConfig, runtime: Runtime, backbone: VGGFeatures, style: torch.Tensor,
                 style_path: Path, photos: list[Path], previews: list[Path], rank: int = 0) -> None:
        self.cfg, self.runtime, self.backbone, self.style_path = cfg, runtime, backbone, style_path
        self.model = Generator(cfg.backbone)
        if cfg.start_decoder:
            self.model.load_state_dict(start_weights(cfg.start_decoder, cfg.backbone))
        self.photos = CropSampler(photos, cfg.crop_size, cfg.seed, rank)
        self.rank = rank
        self.real = [self._features(variant) for variant in style_variants(style, cfg)]  # computed once
        self.critic = PatchCritic(self.real[0].shape[1], cfg.critic_width)
        self.critic.scale.fill_(torch.cat([f.float().flatten() for f in self.real]).pow(2).mean().rsqrt().item())
        # The style as it is at style_size, with as many patches as the mrf loss keeps for Gatys.
        plain = resize(style, fit_long_side(style.shape[-2], style.shape[-1], cfg.style_size))
        self.mrf_patches = (losses.mrf_targets(self._features(plain), losses.MRF_PATCH_BUDGET) if cfg.mrf_weight
                            else None)
        # Real windows as wide as a crop's feature map, or as the narrowest variant allows.
        self.cells = cfg.crop_size // 2 ** (int(cfg.patch_layer[4]) - 1)  # a crop's cells at patch_layer
        self.window = min(self.cells, *(min(f.shape[-2:]) for f in self.real))
        self.previews = load_previews(previews, cfg.crop_size)
        self._judged: tuple[Batch, torch.Tensor] | None = None

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        """patch_layer features of one style image."""
        with torch.no_grad(), self.runtime.autocast():
            return self.backbone(image.to(self.runtime.device), (self.cfg.patch_layer,))[self.cfg.patch_layer]

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start from a trained MGAN generator (--init); the critic starts afresh."""
        self.model.load_state_dict(state_dict)

    def batch(self, step: int) -> Batch:
        """Photo crops, as many windows of the style's variants, and where to look in the outputs' features, all a
        function of (seed, step)."""
        crops = self.photos.batch(step, self.cfg.batch_size)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 7919 + self.rank * 104_729 + 3)
        windows = []
        for _ in range(self.cfg.batch_size):
            f = self.real[int(torch.randint(0, len(self.real), (), generator=g))]
            top = int(torch.randint(0, f.shape[-2] - self.window + 1, (), generator=g))
            left = int(torch.randint(0, f.shape[-1] - self.window + 1, (), generator=g))
            windows.append(f[..., top: top + self.window, left: left + self.window])
        fake_top, fake_left = (int(torch.randint(0, self.cells - self.window + 1, (), generator=g)) for _ in "yx")
        offset = tuple(int(torch.randint(0, self.cfg.mrf_stride, (), generator=g)) for _ in "yx")
        cl = torch.channels_last
        return Batch(crops.to(self.runtime.device, memory_format=cl), torch.cat(windows).contiguous(memory_format=cl),
                     fake_top, fake_left, offset)

    def loss(self, batch: Batch, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        with torch.no_grad(), self.runtime.autocast():
            own = self.backbone(batch.photos, {ENCODER_LAYER, cfg.content_layer})
        taps = {cfg.patch_layer, cfg.content_layer}
        with self.runtime.autocast():
            out = model(own[ENCODER_LAYER].contiguous(memory_format=self.memory_format))
            feats = self.backbone(out, taps)
            adversarial = generator_hinge(self.critic(feats[cfg.patch_layer]))
        # Kept for critic_loss on this same batch: the critic learns from these outputs without a second pass.
        self._judged = (batch, feats[cfg.patch_layer].detach())
        terms = {"adversarial": adversarial,
                 "content": losses.relative_sq_error(feats[cfg.content_layer], own[cfg.content_layer]).mean(),
                 "tv": losses.total_variation(out.float())}
        if self.mrf_patches is not None:
            terms["mrf"] = strided_mrf(feats[cfg.patch_layer], self.mrf_patches, cfg.mrf_stride,
                                       batch.mrf_offset).mean()
        return losses.weighted_total(terms, {"adversarial": cfg.adversarial_weight, "content": cfg.content_weight,
                                             "tv": cfg.tv_weight, "mrf": cfg.mrf_weight})

    def generated(self, batch: Batch, model: nn.Module) -> torch.Tensor:
        """patch_layer features of the generator's outputs for `batch`, without gradients."""
        if self._judged is not None and self._judged[0] is batch:
            return self._judged[1]
        with torch.no_grad(), self.runtime.autocast():
            out = model(self.backbone(batch.photos, (ENCODER_LAYER,))[ENCODER_LAYER].contiguous(
                memory_format=self.memory_format))
            return self.backbone(out, (self.cfg.patch_layer,))[self.cfg.patch_layer]

    def critic_loss(self, batch: Batch, model: nn.Module,
                    critic: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        fake = self.generated(batch, model)
        self._judged = None
        fake = fake[..., batch.fake_top: batch.fake_top + self.window, batch.fake_left: batch.fake_left + self.window]
        with self.runtime.autocast():
            scores = critic(torch.cat([batch.real, fake.to(batch.real.dtype)]))
        real_scores, fake_scores = scores.split(batch.real.shape[0])
        loss = critic_hinge(real_scores, fake_scores)
        return loss, {"critic": loss.item(), "critic_real": real_scores.mean().item(),
                      "critic_fake": fake_scores.mean().item()}

    def preview(self) -> torch.Tensor:
        """Held-out photos, and the generator's output for each."""
        outs = []
        for photo in self.previews:
            x = photo.to(self.runtime.device)
            outs.append(self.model(self.backbone(x, (ENCODER_LAYER,))[ENCODER_LAYER]).float().clamp(0, 1).cpu())
        return grid([self.previews, outs])

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        save_generator(path, self.model, self.style_path.stem, self.style_path.name, self.backbone,
                       train_config=as_dict(self.cfg), steps=steps, record=record)


def _task(context: TaskContext) -> MganTask:
    style_path = context.inputs["style"][0]
    try:
        style = load_image(style_path).rgb
    except InputError as e:
        raise UsageError(f"style {e}") from None
    train_files, held_out = split(list_images(context.inputs["data"][0]))
    return MganTask(context.cfg, context.runtime, context.backbone, style, style_path, train_files,
                    held_out or train_files, context.rank)


def _check(cfg: MganTrainConfig, paths: dict[str, list[Path]], init: dict[str, Any] | None,
           add_style: bool) -> None:
    if len(paths["style"]) != 1:
        raise UsageError(f"train mgan trains a network for one style: give one -s (got {len(paths['style'])})")


SPEC = TrainerSpec(
    name="mgan",
    summary="Train an MGAN generator for one style against a critic of neural patches (resumable).",
    config_type=MganTrainConfig,
    inputs={"style": TrainInput("files", "Style image.", "-s", example="examples/the_scream.jpg"),
            "data": TrainInput("folder", "Folder of content photos (searched recursively)."),
            "out": TrainInput("out", "Model file to write, e.g. weights/mgan_STYLE.pth.", "-o",
                              example="mgan_the_scream.pth")},
    loss_layers=lambda cfg: (ENCODER_LAYER, cfg.content_layer, cfg.patch_layer),
    make_task=_task,
    model_engine=ENGINE,
    run_name=lambda paths: paths["style"][0].stem,
    check=_check,
)
