"""Training runs for the feed-forward engines: a run folder records everything needed to resume it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stransfer import config as config_mod
from stransfer.backbone import VGGFeatures, deepest_layer
from stransfer.device import make_runtime
from stransfer.distributed import World, runtime_for
from stransfer.errors import InputError, UsageError
from stransfer.events import EventCallback, ignore
from stransfer.fileio import atomic_write
from stransfer.images import load_image
from stransfer.train.data import list_images, split
from stransfer.engines.adain import ENCODER_LAYER
from stransfer.train.loop import CHECKPOINT, Task, TrainResult, train
from stransfer.weights import resolve

RUN_CONFIG = "config.json"


def config_type(kind: str) -> type:
    if kind == "johnson":
        from stransfer.train.johnson import JohnsonTrainConfig

        return JohnsonTrainConfig
    if kind == "adain":
        from stransfer.train.adain import AdainTrainConfig

        return AdainTrainConfig
    raise UsageError(f"unknown training task '{kind}'")


def new_run(kind: str, run_dir: Path, cfg: Any, inputs: dict[str, str], runtime: dict[str, Any]) -> None:
    """Write the run's config.json; refuse a folder that already holds a run (resume it instead)."""
    if (run_dir / RUN_CONFIG).exists() or (run_dir / CHECKPOINT).exists():
        raise UsageError(f"{run_dir} already holds a training run: continue it with --resume {run_dir}, "
                         "or choose another --run-dir")
    record = {"task": kind, "config": config_mod.as_dict(cfg), "inputs": inputs, "runtime": runtime}
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / RUN_CONFIG, "w") as f:
        json.dump(record, f, indent=2)


RUN_RECORD_KEYS = {"task": str, "config": dict, "inputs": dict, "runtime": dict}


def read_run(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((run_dir / RUN_CONFIG).read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir}: not a training run folder (no {RUN_CONFIG})") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{run_dir}/{RUN_CONFIG}: unreadable ({e})") from None
    # A hand-edited or foreign file must fail here, in one line, not as a KeyError deep in the run.
    if (not isinstance(record, dict) or any(not isinstance(record.get(k), t) for k, t in RUN_RECORD_KEYS.items())
            or not all(isinstance(record["runtime"].get(k), str) for k in ("device", "precision"))
            or not all(isinstance(v, str) for v in record["inputs"].values())):
        raise UsageError(f"{run_dir}/{RUN_CONFIG}: not a run record (an object with "
                         f"{', '.join(RUN_RECORD_KEYS)})")
    return record


def run(run_dir: Path, resume: bool, on_event: EventCallback = ignore, steps: int | None = None,
        device: str | None = None, threads: int | None = None, vgg_weights: Path | None = None,
        world: World = World()) -> TrainResult:
    """Build the task a run folder describes and train it (from its checkpoint when resuming)."""
    record = world.broadcast(read_run(run_dir) if world.is_main else None)
    kind = record["task"]
    overrides = {**record["config"], **({"steps": steps} if steps is not None else {})}
    cfg = config_mod.build(config_type(kind), None, overrides)
    settings = record["runtime"]
    runtime = runtime_for(make_runtime(device or settings["device"], settings["precision"], threads, cfg.seed), world)
    inputs = {k: Path(v) for k, v in record["inputs"].items()}

    layers = (*cfg.content_layers, *cfg.style_layers) if kind == "johnson" else (ENCODER_LAYER,)
    backbone = VGGFeatures(cfg.backbone, deepest=deepest_layer(cfg.backbone, layers))
    backbone.load_weights(resolve(cfg.backbone, vgg_weights, on_event)[0])
    backbone = backbone.to(runtime.device)

    task: Task
    if kind == "adain":
        from stransfer.train.adain import AdainTask

        content_train, content_held = split(list_images(inputs["content_data"]))
        style_train, style_held = split(list_images(inputs["style_data"]))
        # Previews come from held-out images; a folder too small to hold any out previews training images.
        task = AdainTask(cfg, runtime, backbone, content_train, style_train, content_held or content_train,
                         style_held or style_train, world.rank)
    else:
        from stransfer.train.johnson import JohnsonTask

        try:
            style = load_image(inputs["style"]).rgb
        except InputError as e:
            raise UsageError(f"style {e}") from None
        train_files, held_out = split(list_images(inputs["data"]))
        task = JohnsonTask(cfg, runtime, backbone, style, inputs["style"], train_files, held_out or train_files,
                           world.rank)
    out = inputs.get("out")
    return train(task, cfg, runtime, run_dir, out, on_event, resume=resume, world=world)
