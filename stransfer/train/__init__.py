"""Training runs for the feed-forward engines: a run folder records everything needed to resume it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stransfer import config as config_mod
from stransfer.backbone import VGGFeatures, deepest_layer
from stransfer.device import make_runtime
from stransfer.distributed import World, runtime_for
from stransfer.errors import UsageError, WeightsError
from stransfer.events import EventCallback, ignore
from stransfer.fileio import atomic_write
from stransfer.train.loop import CHECKPOINT, Task, TrainResult, place_loss_network, train
from stransfer.train.spec import TaskContext, TrainerSpec
from stransfer.weights import find_model, load_model, resolve

RUN_CONFIG = "config.json"


def _registry() -> dict[str, TrainerSpec]:
    from stransfer.train import adain, johnson, mgan, msgnet, stylebank, texture

    specs = (johnson.SPEC, adain.SPEC, texture.SPEC, mgan.SPEC, stylebank.SPEC, msgnet.SPEC)
    return {spec.name: spec for spec in specs}


TRAINERS: dict[str, TrainerSpec] = _registry()


def trainer(kind: str) -> TrainerSpec:
    if kind not in TRAINERS:
        raise UsageError(f"unknown training task '{kind}' (known: {', '.join(TRAINERS)})")
    return TRAINERS[kind]


def config_type(kind: str) -> type:
    return trainer(kind).config_type


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
    spec = trainer(kind)
    try:
        path = find_model(name_or_path)
        payload = load_model(path, spec.model_engine)
        more = spec.describe_init(payload, path)
    except WeightsError as e:
        raise UsageError(f"--init {e}") from None
    return {"path": str(path.resolve()), "lineage": lineage_of(payload),
            "arch": payload.get("arch"), "backbone": payload.get("backbone"), **more}


def init_overrides(spec: TrainerSpec, init: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """Settings a run started from a model inherits: its architecture and backbone (a flag that contradicts
    them is an error, but for one of the trainer's `grows` keys raised, e.g. a Johnson network widened), and a
    seed past the batches the model already trained on, unless --seed says otherwise."""
    inherited = {**(init["arch"] or {}), "backbone": init["backbone"]}
    for key, value in inherited.items():
        grows = key in spec.grows and flags.get(key, value) > value
        if key in flags and flags[key] != value and not grows:
            raise UsageError(f"--{key.replace('_', '-')} {flags[key]} contradicts --init {init['path']} ({key} "
                             f"{value}); a model keeps its architecture"
                             + (f", though it may grow in {', '.join(spec.grows)}" if spec.grows else ""))
    # Batches are a function of (seed, step) and a new stage counts steps from 0: with the same seed it would
    # replay the first stage's batches.
    seed = sum(int(stage.get("steps") or 0) for stage in init["lineage"])
    return {"seed": seed, **inherited, **flags}


Inputs = dict[str, Path | list[Path] | None]


def _check_inputs(spec: TrainerSpec, inputs: Inputs, world: World) -> dict[str, list[Path]]:
    """The trainer's inputs as lists of paths: every one given, "files" and "folder" existing, "out" not."""
    missing = [k for k in spec.inputs if inputs.get(k) in (None, [])]
    if missing:
        wanted = ", ".join("--" + k.replace("_", "-") for k in spec.inputs)
        raise UsageError(f"train {spec.name} needs {wanted} (or --resume RUN_DIR)")
    paths = {k: [Path(p) for p in (v if isinstance(v, list) else [v])] for k, v in inputs.items() if v is not None}
    for key, declared in spec.inputs.items():
        flag = "--" + key.replace("_", "-")
        for path in paths[key]:
            if declared.kind == "files" and not path.is_file():
                raise UsageError(f"{flag} {path}: no such file")
            if declared.kind == "folder" and not path.is_dir():
                raise UsageError(f"{flag} {path}: not a folder")
            if declared.kind == "out" and path.exists() and world.is_main:
                raise UsageError(f"{path} already exists: choose another --out or remove it")
    return paths


def start(kind: str, inputs: Inputs, flags: dict[str, Any], toml: Path | None, init: str | None,
          run_dir: Path | None, runtime: dict[str, Any], world: World = World(), add_style: bool = False) -> Path:
    """Check a new run's inputs and settings and write its run folder (on the main rank); its path.
    `add_style`: the style images are new styles for the --init model, and only their norm parameters train."""
    spec = trainer(kind)
    if add_style and spec.adds_styles_to is None:
        raise UsageError(f"train {kind} does not add styles to a model (no --add-style)")
    paths = _check_inputs(spec, inputs, world)
    if add_style and init is None:
        raise UsageError("--add-style adds styles to a trained model: give it with --init MODEL")
    start_from = read_init(kind, init) if init is not None else None
    cfg = config_mod.build(spec.config_type, toml, init_overrides(spec, start_from, flags) if start_from else flags)
    spec.check(cfg, paths, start_from, add_style)
    name = spec.run_name(paths)
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
    spec = trainer(record["task"])
    overrides = {**record["config"], **({"steps": steps} if steps is not None else {})}
    cfg = config_mod.build(spec.config_type, None, overrides)
    settings = record["runtime"]
    runtime = runtime_for(make_runtime(device or settings["device"], settings["precision"], threads, cfg.seed), world)
    inputs = {k: [Path(p) for p in v] if isinstance(v, list) else [Path(v)] for k, v in record["inputs"].items()}

    backbone = VGGFeatures(cfg.backbone, deepest=deepest_layer(cfg.backbone, spec.loss_layers(cfg)))
    backbone.load_weights(resolve(cfg.backbone, vgg_weights, on_event)[0])
    backbone = place_loss_network(backbone, runtime)
    task = spec.make_task(TaskContext(cfg, runtime, backbone, inputs, record.get("init"),
                                      bool(record.get("add_style")), world.rank))
    init = record.get("init")
    if init and not resume:
        _load_init(task, Path(init["path"]), spec.model_engine)
    out = inputs["out"][0] if "out" in inputs else None
    return train(task, cfg, runtime, run_dir, out, on_event, resume=resume, world=world,
                 lineage=init["lineage"] if init else [])


def _load_init(task: Task, path: Path, engine: str) -> None:
    try:
        task.load_init(load_model(path, engine)["state_dict"])
    except (KeyError, RuntimeError) as e:
        raise UsageError(f"--init {path}: does not fit this run's network ({str(e).splitlines()[0]})") from None
