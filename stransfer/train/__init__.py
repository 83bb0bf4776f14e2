"""Training runs for the feed-forward engines: a run folder records everything needed to resume it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stransfer import config as config_mod
from stransfer import losses
from stransfer.backbone import VGGFeatures, deepest_layer
from stransfer.device import make_runtime
from stransfer.distributed import World, runtime_for
from stransfer.errors import InputError, UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.fileio import atomic_write
from stransfer.images import load_image
from stransfer.train.data import list_images, split
from stransfer.engines.adain import ENCODER_LAYER
from stransfer.train.loop import CHECKPOINT, Task, TrainResult, place_loss_network, train
from stransfer.weights import find_model, load_model, resolve

RUN_CONFIG = "config.json"


def config_type(kind: str) -> type:
    if kind == "johnson":
        from stransfer.train.johnson import JohnsonTrainConfig

        return JohnsonTrainConfig
    if kind == "adain":
        from stransfer.train.adain import AdainTrainConfig

        return AdainTrainConfig
    raise UsageError(f"unknown training task '{kind}'")


def lineage_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The training stages behind a model file, oldest first; a file from before lineages is one stage. Edits
    made to the file after its last stage (its record's `edits`, e.g. styles removed) go with that stage, so a
    run from the file (--init) keeps them."""
    record = payload.get("record", {})
    if isinstance(record.get("lineage"), list):
        stages = list(record["lineage"])
    else:
        stages = [{"steps": payload.get("steps"), "wall_time_s": record.get("wall_time_s"),
                   "machine": record.get("machine"), "final_losses": record.get("final_losses"),
                   "train_config": payload.get("train_config")}]
    if record.get("edits"):
        stages[-1] = {**stages[-1], "edits": [*stages[-1].get("edits", []), *record["edits"]]}
    return stages


def read_init(kind: str, name_or_path: str) -> dict[str, Any]:
    """The trained model a new run starts from (--init NAME or path): its path, architecture and lineage.

    The lineage is copied into the run folder now, since a run usually ends by replacing the very file it
    started from."""
    try:
        path = find_model(name_or_path)
        payload = load_model(path, kind)
    except WeightsError as e:
        raise UsageError(f"--init {e}") from None
    init = {"path": str(path.resolve()), "lineage": lineage_of(payload),
            "arch": payload.get("arch"), "backbone": payload.get("backbone")}
    if kind == "johnson":
        from stransfer.engines.johnson import model_styles

        try:
            styles = model_styles(payload, path)
        except WeightsError as e:
            raise UsageError(f"--init {e}") from None
        images = payload.get("style_images") or [payload.get("style_image") or name for name in styles]
        init.update(styles=styles, style_images=[str(i) for i in images])
    return init


def init_overrides(init: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Settings a run started from a model inherits: its architecture and backbone (a flag that contradicts
    them is an error, but for --width widening a Johnson network), and a seed past the batches the model already
    trained on, unless --seed says otherwise."""
    inherited = {**(init["arch"] or {}), "backbone": init["backbone"]}
    for key, value in inherited.items():
        widens = key == "width" and flags.get(key, value) > value  # train.johnson.widened; never narrower
        if key in flags and flags[key] != value and not widens:
            raise UsageError(f"--{key.replace('_', '-')} {flags[key]} contradicts --init {init['path']} ({key} "
                             f"{value}); a model keeps its architecture, though a Johnson network may widen")
    # Batches are a function of (seed, step) and a new stage counts steps from 0: with the same seed it would
    # replay the first stage's batches.
    seed = sum(int(stage.get("steps") or 0) for stage in init["lineage"])
    return {"seed": seed, **inherited, **flags}


# What each task reads and writes: "files" (one or more) and "folder" inputs must exist; "out" must not.
TASK_INPUTS = {"johnson": {"style": "files", "data": "folder", "out": "out"},
               "adain": {"content_data": "folder", "style_data": "folder", "out": "out"}}
Inputs = dict[str, Path | list[Path] | None]


def _check_inputs(kind: str, inputs: Inputs, world: World) -> dict[str, list[Path]]:
    missing = [k for k in TASK_INPUTS[kind] if inputs.get(k) in (None, [])]
    if missing:
        wanted = ", ".join("--" + k.replace("_", "-") for k in TASK_INPUTS[kind])
        raise UsageError(f"train {kind} needs {wanted} (or --resume RUN_DIR)")
    paths = {k: [Path(p) for p in (v if isinstance(v, list) else [v])] for k, v in inputs.items() if v is not None}
    for key, kind_of in TASK_INPUTS[kind].items():
        flag = "--" + key.replace("_", "-")
        for path in paths[key]:
            if kind_of == "files" and not path.is_file():
                raise UsageError(f"{flag} {path}: no such file")
            if kind_of == "folder" and not path.is_dir():
                raise UsageError(f"{flag} {path}: not a folder")
            if kind_of == "out" and path.exists() and world.is_main:
                raise UsageError(f"{path} already exists: choose another --out or remove it")
    return paths


def start(kind: str, inputs: Inputs, flags: dict[str, Any], toml: Path | None, init: str | None,
          run_dir: Path | None, runtime: dict[str, Any], world: World = World(), add_style: bool = False) -> Path:
    """Check a new run's inputs and settings and write its run folder (on the main rank); its path.
    `add_style`: the style images are new styles for the --init model, and only their norm parameters train."""
    paths = _check_inputs(kind, inputs, world)
    if add_style and init is None:
        raise UsageError("--add-style adds styles to a trained model: give it with --init MODEL")
    start_from = read_init(kind, init) if init is not None else None
    cfg = config_mod.build(config_type(kind), toml, init_overrides(start_from, flags) if start_from else flags)
    if kind == "johnson":
        from stransfer.train.johnson import check_styles

        check_styles(paths["style"], start_from, add_style, cfg.style_weight)
    name = "+".join(p.stem for p in paths["style"]) if kind == "johnson" else paths["out"][0].stem
    run_dir = run_dir or Path("runs") / f"{kind}-{name[:80]}"
    if world.is_main:
        recorded = {k: [str(p.resolve()) for p in v] if len(v) > 1 else str(v[0].resolve()) for k, v in paths.items()}
        new_run(kind, run_dir, cfg, recorded, runtime, start_from, add_style)
    return run_dir


def new_run(kind: str, run_dir: Path, cfg: Any, inputs: dict[str, str | list[str]], runtime: dict[str, Any],
            init: dict[str, Any] | None = None, add_style: bool = False) -> None:
    """Write the run's config.json; refuse a folder that already holds a run (resume it instead)."""
    if (run_dir / RUN_CONFIG).exists() or (run_dir / CHECKPOINT).exists():
        raise UsageError(f"{run_dir} already holds a training run: continue it with --resume {run_dir}, "
                         "or choose another --run-dir")
    record = {"task": kind, "config": config_mod.as_dict(cfg), "inputs": inputs, "runtime": runtime,
              "init": init, **({"add_style": True} if add_style else {})}
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
            or not all(isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(p, str) for p in v))
                       for v in record["inputs"].values())):
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
    inputs = {k: [Path(p) for p in v] if isinstance(v, list) else [Path(v)] for k, v in record["inputs"].items()}

    layers = ((*cfg.content_layers, *losses.StyleObjective.parse(cfg.style_loss, cfg.style_layers).taps)
              if kind == "johnson" else (ENCODER_LAYER,))
    backbone = VGGFeatures(cfg.backbone, deepest=deepest_layer(cfg.backbone, layers))
    backbone.load_weights(resolve(cfg.backbone, vgg_weights, on_event)[0])
    backbone = place_loss_network(backbone, runtime)

    task: Task
    if kind == "adain":
        from stransfer.train.adain import AdainTask

        content_train, content_held = split(list_images(inputs["content_data"][0]))
        style_train, style_held = split(list_images(inputs["style_data"][0]))
        # Previews come from held-out images; a folder too small to hold any out previews training images.
        task = AdainTask(cfg, runtime, backbone, content_train, style_train, content_held or content_train,
                         style_held or style_train, world.rank)
    else:
        from stransfer.train.johnson import JohnsonTask

        try:
            styles = [load_image(p).rgb for p in inputs["style"]]
        except InputError as e:
            raise UsageError(f"style {e}") from None
        train_files, held_out = split(list_images(inputs["data"][0]))
        frozen = (record["init"]["styles"], record["init"]["style_images"]) if record.get("add_style") else None
        task = JohnsonTask(cfg, runtime, backbone, styles, inputs["style"], train_files, held_out or train_files,
                           world.rank, frozen)
    init = record.get("init")
    if init and not resume:
        _load_init(task, Path(init["path"]), kind)
    out = inputs["out"][0] if "out" in inputs else None
    return train(task, cfg, runtime, run_dir, out, on_event, resume=resume, world=world,
                 lineage=init["lineage"] if init else [])


def _load_init(task: Task, path: Path, kind: str) -> None:
    try:
        task.load_init(load_model(path, kind)["state_dict"])
    except (KeyError, RuntimeError) as e:
        raise UsageError(f"--init {path}: does not fit this run's network ({str(e).splitlines()[0]})") from None
