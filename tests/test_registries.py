"""The engine and training registries: an entry added at run time (a toy engine, a toy trainer, neither shipped)
reaches the CLI, the API, video and the training loop with no other file touched; every entry's settings
become flags."""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import stransfer
from stransfer import weights
from stransfer.config import param
from stransfer.engines import ENGINES, EngineInputs, EngineSpec, Styles, style_set
from stransfer.train import TRAINERS
from stransfer.train.data import list_images, split
from stransfer.train.loop import TrainConfig
from stransfer.train.spec import TaskContext, TrainerSpec, TrainInput

from conftest import cli, gradient_image

PACKAGE = Path(stransfer.__file__).parent


@dataclass(frozen=True)
class ToyConfig:
    strength: float = param(0.5, ge=0.0, le=1.0, help="How far each pixel moves to the style's mean colour.")


class ToyEngine:
    """Every pixel moved toward the style images' mean colour."""

    name: ClassVar[str] = "toy"

    def __init__(self, config: ToyConfig, inputs: EngineInputs) -> None:
        self.config, self.inputs = config, inputs

    def prepare(self, styles: list[Any]) -> Styles:
        return style_set(self.name, styles, self.inputs)

    def stylize(self, content: torch.Tensor, styles: Styles, on_event: Any = None) -> torch.Tensor:
        colour = torch.stack([s.mean(dim=(2, 3), keepdim=True) for s in styles.images]).mean(0)
        return torch.lerp(content, colour.expand_as(content), self.config.strength)


TOY_ENGINE = EngineSpec(name="toy", config_type=ToyConfig, build=lambda cfg, runtime, inputs: ToyEngine(cfg, inputs),
                        style_input="images", batches=True)


@dataclass(frozen=True)
class ToyTrainConfig(TrainConfig):
    steps: int = param(4, ge=1)
    crop_size: int = param(16, ge=8, help="Side of the square training crops.")
    backbone: str = param("vgg16", choices=("vgg16", "vgg19"))


class ToyTask:
    """A 1x1 convolution that learns to give the photo back through relu1_1 of the loss network."""

    name = "toy"

    def __init__(self, context: TaskContext) -> None:
        from stransfer.train.data import CropSampler, load_previews

        self.cfg, self.backbone = context.cfg, context.backbone
        files, held = split(list_images(context.inputs["data"][0]))
        self.sampler = CropSampler(files, self.cfg.crop_size, self.cfg.seed, context.rank)
        self.previews = load_previews(held or files, self.cfg.crop_size)
        torch.manual_seed(self.cfg.seed)
        self.model = nn.Conv2d(3, 3, 1)

    def batch(self, step: int) -> torch.Tensor:
        return self.sampler.batch(step, self.cfg.batch_size)

    def loss(self, batch: torch.Tensor, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.backbone(model(batch), ["relu1_1"])["relu1_1"]
        with torch.no_grad():
            target = self.backbone(batch, ["relu1_1"])["relu1_1"]
        loss = (out - target).pow(2).mean()
        return loss, {"total": loss.item()}

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state_dict)

    def preview(self) -> torch.Tensor:
        return torch.cat([self.model(p).clamp(0, 1) for p in self.previews], dim=-1)

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None:
        weights.save_model(path, "toy", self.model.state_dict(), steps=steps, record=record,
                           train_config=dataclasses.asdict(self.cfg))


TOY_TRAINER = TrainerSpec(name="toy", summary="Train a toy network (tests only).", config_type=ToyTrainConfig,
                          inputs={"data": TrainInput("folder", "Folder of photos."),
                                  "out": TrainInput("out", "Model file to write.", "-o")},
                          loss_layers=lambda cfg: ("relu1_1",), make_task=ToyTask, model_engine="toy")


@pytest.fixture
def toy_engine(monkeypatch):
    monkeypatch.setitem(ENGINES, "toy", TOY_ENGINE)


@pytest.fixture
def toy_trainer(monkeypatch):
    monkeypatch.setitem(TRAINERS, "toy", TOY_TRAINER)


def test_a_toy_engine_registered_at_run_time_reaches_the_cli_the_api_and_video(capsys, tmp_path, toy_engine):
    code, out, _ = cli(capsys, "stylize", "--help")
    assert code == 0 and "toy" in out
    gradient_image(24, 16).save(tmp_path / "photo.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.png")
    result = stransfer.stylize(tmp_path / "photo.png", style=tmp_path / "red.png", method="toy", size=None,
                               strength=1.0)
    assert np.asarray(result)[..., 0].min() == 255 and np.asarray(result)[..., 1:].max() == 0
    code, _, err = cli(capsys, "stylize", tmp_path / "photo.png", "-m", "toy", "-s", tmp_path / "red.png",
                       "-o", tmp_path / "out.png")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "out.png"))[..., 0].mean() > np.asarray(Image.open(
        tmp_path / "photo.png"))[..., 0].mean()
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        gradient_image(24, 16, seed=i).save(frames / f"frame_{i + 1:05d}.png")
    code, _, err = cli(capsys, "stylize", frames, "--frames", "-m", "toy", "-s", tmp_path / "red.png",
                       "-o", tmp_path / "styled")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "styled").iterdir()) == [f"frame_{i:05d}.png" for i in (1, 2, 3)]


def test_a_toy_trainer_registered_at_run_time_gets_a_command_and_the_loop(capsys, tmp_path, toy_trainer,
                                                                          random_weights_file):
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0 and "toy" in out
    code, out, _ = cli(capsys, "train", "toy", "--help")
    assert code == 0 and "--crop-size" in out and "--data" in out and "--add-style" not in out
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        gradient_image(24, 20, seed=i).save(photos / f"p{i}.png")
    run, model = tmp_path / "run", tmp_path / "toy.pth"
    common = ["--vgg-weights", random_weights_file, "--device", "cpu", "--precision", "fp32", "--log-every", "1"]
    code, _, err = cli(capsys, "train", "toy", "--data", photos, "-o", model, "--run-dir", run, *common)
    assert code == 0, err
    assert weights.load_model(model, "toy")["steps"] == 4
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    code, _, err = cli(capsys, "train", "toy", "--resume", run, "--steps", "6", "--device", "cpu")
    assert code == 0, err
    assert len((run / "log.jsonl").read_text().splitlines()) == 6


@pytest.mark.parametrize("name", sorted(TRAINERS))
def test_every_training_setting_has_help_and_a_flag(capsys, name):
    from stransfer.cli.generated import field_help

    spec = TRAINERS[name]
    code, out, _ = cli(capsys, "train", name, "--help")
    assert code == 0
    for field in dataclasses.fields(spec.config_type):
        assert field_help(spec.config_type, field.name), f"{name}: {field.name} has no help"
        assert "--" + field.name.replace("_", "-") in out
    for key in spec.inputs:
        assert "--" + key.replace("_", "-") in out


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_setting_has_help_and_a_stylize_flag(capsys, name):
    from stransfer.cli.generated import field_help

    code, out, _ = cli(capsys, "stylize", "--help")
    assert code == 0
    for field in dataclasses.fields(ENGINES[name].config_type):
        assert field_help(ENGINES[name].config_type, field.name), f"{name}: {field.name} has no help"
        assert "--" + field.name.replace("_", "-") in out


def test_a_stylize_run_builds_its_typed_config_once(capsys, monkeypatch, tmp_path, tiny_johnson):
    """The CLI builds the engine's config once and the engine gets that object: every setting arrives as a typed
    field of it, none through untyped keywords."""
    from stransfer import config

    spec = ENGINES["johnson"]
    built, received = [], []
    real_build, real_engine = config.build, spec.build

    def counting(cls, *args, **kwargs):
        result = real_build(cls, *args, **kwargs)
        if cls is spec.config_type:
            built.append(result)
        return result

    def engine(cfg, runtime, inputs):
        received.append(cfg)
        return real_engine(cfg, runtime, inputs)

    monkeypatch.setattr(config, "build", counting)
    monkeypatch.setitem(ENGINES, "johnson", dataclasses.replace(spec, build=engine))
    photo = tmp_path / "photo.png"
    gradient_image(24, 20).save(photo)
    code, _, err = cli(capsys, "stylize", photo, "-m", "johnson", "--model", "tiny", "--tile", "off",
                       "--size", "24", "-o", tmp_path / "out.png", "--device", "cpu")
    assert code == 0, err
    assert len(built) == 1 and received == built
    assert received[0].tile == "off" and received[0].model == "tiny"


def test_the_training_loop_does_not_import_the_api():
    import subprocess
    import sys

    code = "import sys, stransfer.train.loop; print('stransfer.api' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_engine_module_imports_another_engines_module():
    engine_modules = {spec.build.__module__ for spec in ENGINES.values()}
    for module in engine_modules:
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not (imported & (engine_modules - {module})), (module, imported & engine_modules)


def test_no_code_compares_a_name_with_an_engine_or_trainer_name():
    names = set(ENGINES) | set(TRAINERS)
    found = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                for operand in operands:
                    constants = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                    if any(isinstance(c, ast.Constant) and c.value in names for c in constants):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, found
