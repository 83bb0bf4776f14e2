"""Frozen VGG feature extractor (Simonyan & Zisserman, 2014): layers by name, stops at the deepest tap."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from stransfer.errors import ConfigError, WeightsError

# torchvision's `features` layouts: channel counts, "M" = 2x2 pooling. Building them here (rather than
# calling torchvision.models.vgg16()) skips the 120M-parameter classifier, and keeps the same indices, so
# torchvision state-dict keys ("features.28.weight") map one to one onto ours ("28.weight").
ARCHITECTURES: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names(arch: str) -> list[str]:
    """Names of the `features` layers in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ..."""
    names, block, index = [], 1, 1
    for item in ARCHITECTURES[arch]:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


def deepest_layer(arch: str, layers: Iterable[str]) -> str:
    """The layer of `layers` furthest into the network; ConfigError for a name `arch` does not have."""
    known = layer_names(arch)
    layers = list(layers)
    for layer in layers:
        if layer not in known:
            raise ConfigError(f"unknown {arch} layer '{layer}' (known: relu1_1 ... {known[-2]})")
    return max(layers, key=known.index)


class VGGFeatures(nn.Module):
    """The convolutional part of VGG16/VGG19, frozen, taking RGB in [0, 1] and returning named features.

    `deepest` truncates the network at construction: layers past it are never built, so an AdaIN encoder
    (relu4_1) holds a third of VGG16's weights. `forward` also stops at the deepest tap it is asked for.
    """

    def __init__(self, arch: str = "vgg16", pooling: str = "max", deepest: str | None = None) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown backbone '{arch}' (known: {', '.join(ARCHITECTURES)})")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg' (got {pooling!r})")
        self.arch, self.pooling = arch, pooling
        names = layer_names(arch)
        if deepest is not None:
            deepest_layer(arch, [deepest])
            names = names[: names.index(deepest) + 1]
        self.names = names

        layers: list[nn.Module] = []
        channels = 3
        for item in ARCHITECTURES[arch]:
            if item == "M":
                # Gatys et al. found average pooling gives smoother results; max is what VGG was trained with.
                layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.layers = nn.Sequential(*layers[: len(names)])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def deepest(self) -> str:
        return self.names[-1]

    def channels(self, layer: str) -> int:
        """Channel count of the output of `layer`."""
        convs = [m for m in self.layers[: self.names.index(layer) + 1] if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels if convs else 3

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a features-only state dict ("0.weight", ...); keys past the truncation point are ignored."""
        wanted = {f"layers.{k}": v for k, v in state_dict.items() if f"layers.{k}" in self.state_dict()}
        missing = set(self.state_dict()) - set(wanted)
        if missing:
            raise WeightsError(f"weights lack {len(missing)} tensors of {self.arch}, e.g. {sorted(missing)[0]}")
        for key, tensor in wanted.items():
            expected = self.state_dict()[key].shape
            if tensor.shape != expected:
                raise WeightsError(f"weights: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected)}")
        self.load_state_dict(wanted)

    def train(self, mode: bool = True) -> VGGFeatures:
        # Frozen for good: there is no dropout or batch norm, and nothing here may ever be trained.
        return super().train(False)

    def forward(self, image: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features at `taps` for an RGB image in [0, 1]; no layer past the deepest tap is computed."""
        wanted = set(taps)
        for tap in wanted:
            if tap not in self.names:
                if tap in layer_names(self.arch):
                    raise ValueError(f"layer '{tap}' lies past this backbone's truncation at {self.deepest}")
                deepest_layer(self.arch, [tap])
        last = max(self.names.index(t) for t in wanted)
        x = (image - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for name, layer in zip(self.names[: last + 1], self.layers):
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out
