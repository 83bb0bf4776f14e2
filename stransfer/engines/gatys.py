"""Gatys et al. (2016), "Image Style Transfer Using Convolutional Neural Networks": optimise the pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from stransfer import losses
from stransfer.backbone import VGGFeatures, deepest_layer
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.engines import EngineInputs, EngineSpec
from stransfer.events import EventCallback, Snapshot, Step, ignore
from stransfer.images import fit_long_side, resize
from stransfer.weights import resolve


@dataclass(frozen=True)
class GatysConfig:
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"))
    # Max pooling, as VGG was trained; Gatys et al. preferred average pooling, available for comparison.
    pooling: str = param("max", choices=("max", "avg"))
    # relu3_3 keeps the layout and edges of the photo while leaving textures free (Johnson et al.'s choice
    # for VGG16); deeper layers let the style move objects.
    content_layers: tuple[str, ...] = ("relu3_3",)
    # One layer per VGG16 block up to block 4: fine strokes to larger motifs. Block 5 adds little at 512 px.
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    # Both losses are relative squared errors (scale-free, see losses.py), so these weights read directly
    # as "how much more style than content". Measured at 256 px, chicago x matisse, 150 evaluations:
    # 2 -> style ratio 0.12, content 0.23; 5 -> 0.07, 0.40; 10 -> 0.05, 0.57. 5 paints while edges stay.
    content_weight: float = param(1.0, ge=0.0)
    style_weight: float = param(5.0, ge=0.0)
    # A little smoothness removes the high-frequency speckle L-BFGS leaves in flat regions.
    tv_weight: float = param(1.0, ge=0.0)
    init: str = param("content", choices=("content", "noise", "style"))
    optimizer: str = param("lbfgs", choices=("lbfgs", "adam"))
    # Function evaluations (forward + backward passes): the unit of cost, for L-BFGS and Adam alike.
    iterations: int = param(300, ge=1)
    # Adam only; pixels live in [0, 1], so 0.02 moves each by at most ~2% per step.
    learning_rate: float = param(0.02, gt=0.0)
    save_every: int = param(0, ge=0)


class Gatys:
    """Optimises the output image itself so its VGG features match the content and its Grams the style."""

    name: ClassVar[str] = "gatys"

    def __init__(self, config: GatysConfig, runtime: Runtime, backbone: VGGFeatures,
                 styles: list[torch.Tensor], style_name: str = "style") -> None:
        if not styles:
            raise ValueError("gatys needs a style image")
        self.config, self.runtime, self.backbone = config, runtime, backbone
        self.styles, self.style_name = styles, style_name
        self._style_targets: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def style_targets(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Gram targets for an output of `size`; the style is resized so its long side matches the output's.
        Computed once per output size, however many content images share it."""
        if size not in self._style_targets:
            long_side = max(size)
            grams: dict[str, torch.Tensor] = {}
            weight = 1.0 / len(self.styles)
            for style in self.styles:
                s = resize(style, fit_long_side(style.shape[-2], style.shape[-1], long_side))
                with torch.no_grad(), self.runtime.autocast():
                    feats = self.backbone(s.to(self.runtime.device), self.config.style_layers)
                for layer in self.config.style_layers:
                    g = weight * losses.gram(feats[layer])
                    grams[layer] = grams[layer] + g if layer in grams else g
            self._style_targets[size] = grams
        return self._style_targets[size]

    def _initial_image(self, content: torch.Tensor) -> torch.Tensor:
        if self.config.init == "noise":
            return torch.rand(content.shape, generator=self.runtime.generator()).to(content.device)
        if self.config.init == "style":
            return resize(self.styles[0], tuple(content.shape[-2:])).to(content.device)
        return content.clone()

    def stylize(self, content: torch.Tensor, on_event: EventCallback = ignore) -> torch.Tensor:
        cfg, device = self.config, self.runtime.device
        content = content.to(device)
        grams = self.style_targets(tuple(content.shape[-2:]))
        with torch.no_grad(), self.runtime.autocast():
            content_targets = {k: v.float() for k, v in self.backbone(content, cfg.content_layers).items()}
        taps = set(cfg.content_layers) | set(cfg.style_layers)

        x = self._initial_image(content).requires_grad_(True)
        evaluations = 0

        def closure() -> torch.Tensor:
            nonlocal evaluations
            optimizer.zero_grad(set_to_none=True)
            with self.runtime.autocast():
                feats = self.backbone(x, taps)
            content_term = losses.content_loss(feats, content_targets)
            style_term = losses.style_loss(feats, grams)
            tv_term = losses.total_variation(x)
            loss = cfg.content_weight * content_term + cfg.style_weight * style_term + cfg.tv_weight * tv_term
            loss.backward()
            evaluations += 1
            on_event(Step(evaluations, cfg.iterations, {
                "content": content_term.item(), "style": style_term.item(), "tv": tv_term.item(), "total": loss.item(),
            }))
            if cfg.save_every and evaluations % cfg.save_every == 0 and evaluations < cfg.iterations:
                on_event(Snapshot(evaluations, x.detach().clamp(0, 1).cpu()))
            return loss

        if cfg.optimizer == "lbfgs":
            # Tolerances at zero: stop after exactly `iterations` evaluations, never silently early.
            optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
                [x], lr=1.0, max_iter=cfg.iterations, max_eval=cfg.iterations,
                tolerance_grad=0.0, tolerance_change=0.0, history_size=50)
            while evaluations < cfg.iterations:
                optimizer.step(closure)
        else:
            optimizer = torch.optim.Adam([x], lr=cfg.learning_rate)
            while evaluations < cfg.iterations:
                optimizer.step(closure)
                with torch.no_grad():
                    x.clamp_(0, 1)  # projected gradient: pixels stay displayable
        return x.detach().clamp(0, 1).cpu()


def build(config: GatysConfig, runtime: Runtime, inputs: EngineInputs) -> Gatys:
    deepest = deepest_layer(config.backbone, (*config.content_layers, *config.style_layers))
    backbone = VGGFeatures(config.backbone, pooling=config.pooling, deepest=deepest)
    state, _origin = resolve(config.backbone, inputs.vgg_weights, inputs.on_event)
    backbone.load_weights(state)
    return Gatys(config, runtime, backbone.to(runtime.device), inputs.styles, "+".join(inputs.style_names))


SPEC = EngineSpec(name="gatys", config_type=GatysConfig, build=build, needs_style=True,
                  summary="optimise the pixels (Gatys et al.): best quality, slowest")
