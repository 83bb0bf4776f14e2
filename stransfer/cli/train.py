"""`stransfer train NAME`: one command per entry of the training registry, its flags generated from the entry's
inputs and config; stransfer.train checks them, writes the run folder and trains."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from stransfer import console, distributed
from stransfer import train as training
from stransfer.cli.generated import command, config_options, parameter
from stransfer.cli.options import (ConfigOpt, Device, DeviceOpt, Precision, PrecisionOpt, ThreadsOpt, VggWeightsOpt,
                                   given)
from stransfer.device import make_runtime
from stransfer.errors import UsageError
from stransfer.train.spec import TrainerSpec, TrainInput

RunDirOpt = Annotated[Path | None, typer.Option(
    "--run-dir", help="Run folder: checkpoints, log.jsonl, previews (default runs/<task>-<name>).")]
ResumeOpt = Annotated[Path | None, typer.Option(
    "--resume", help="Continue the run in this folder from its last checkpoint; other inputs come from it.")]
InitOpt = Annotated[str | None, typer.Option(
    "--init", help="Start from this trained model (NAME or .pth): its weights, a fresh optimiser; the new model's "
                   "record keeps the lineage.")]
AddStyleOpt = Annotated[list[Path] | None, typer.Option(
    "--add-style", help="Add this style to the --init model, training only its own parameters (repeatable).")]

RUN_OPTIONS = {"run_dir": RunDirOpt, "resume": ResumeOpt, "init": InitOpt, "config": ConfigOpt}
# What an input's value is in a help example, unless it names its own (TrainInput.example).
EXAMPLE_VALUES = {"files": "examples/starry_night.jpg", "folder": "photos/", "out": "my_model.pth"}
RUNTIME_OPTIONS = {"device": (DeviceOpt, Device["auto"]), "precision": (PrecisionOpt, Precision["auto"]),
                   "threads": (ThreadsOpt, None), "vgg_weights": (VggWeightsOpt, None)}


def _train(kind: str, inputs: training.Inputs, flags: dict[str, Any], config: Path | None,
           run_dir: Path | None, resume: Path | None, init: str | None, device: Any, precision: Any,
           threads: int | None, vgg_weights: Path | None, add_style: bool = False) -> None:
    world = distributed.init()
    if resume is not None and init is not None:
        raise UsageError("--init starts a new run; --resume continues one: give one of them")
    if resume is None:
        runtime = {"device": device.value, "precision": make_runtime(device.value, precision.value).precision}
        run_dir = training.start(kind, inputs, given(training.config_type(kind), f"train {kind}", **flags),
                                 config, init, run_dir, runtime, world, add_style)
    else:
        run_dir = resume
    with console.ProgressRenderer() as render:
        result = training.run(run_dir, resume is not None, render, steps=flags.get("steps") if resume else None,
                              device=device.value if resume and device.value != "auto" else None,
                              threads=threads, vgg_weights=vgg_weights, world=world)
    world.shutdown()
    if world.is_main:
        console.stdout.print(f"{kind}: {result.steps} steps in {result.seconds / 60:.1f} min; run folder {run_dir}")


def _input_option(name: str, declared: TrainInput) -> inspect.Parameter:
    names = ["--" + name.replace("_", "-"), *([declared.short] if declared.short else [])]
    kind = list[Path] if declared.kind == "files" else Path
    return parameter(name, Annotated[kind | None, typer.Option(*names, help=declared.help)])  # type: ignore[valid-type]


def _parameters(spec: TrainerSpec) -> list[inspect.Parameter]:
    params = [_input_option(name, declared) for name, declared in spec.inputs.items()]
    if spec.adds_styles_to:
        params.append(parameter("add_style", AddStyleOpt))
    params += [parameter(name, annotation) for name, annotation in RUN_OPTIONS.items()]
    params += config_options(spec.config_type)
    params += [parameter(name, annotation, default) for name, (annotation, default) in RUNTIME_OPTIONS.items()]
    return params


def examples(spec: TrainerSpec) -> list[str]:
    """The two help examples of `stransfer train NAME`, made from the entry's inputs, so every trainer has them
    and they name its flags as they are: a new run, and the same run resumed and extended."""
    values = {name: declared.example or EXAMPLE_VALUES[declared.kind] for name, declared in spec.inputs.items()}
    flags = " ".join(f"{declared.short or '--' + name.replace('_', '-')} {values[name]}"
                     for name, declared in spec.inputs.items())
    run_dir = f"runs/{spec.name}-{spec.run_name({k: [Path(v)] for k, v in values.items()})}"
    steps = next((f.default for f in dataclasses.fields(spec.config_type) if f.name == "steps"), 1000)
    return [f"stransfer train {spec.name} {flags}",
            f"stransfer train {spec.name} --resume {run_dir} --steps {2 * steps}"]


def group_examples(specs: Iterable[TrainerSpec]) -> list[str]:
    """`stransfer train`'s two examples: the first of each of its first two trainers (both of a lone one's)."""
    specs = list(specs)
    return [examples(spec)[0] for spec in specs[:2]] if len(specs) > 1 else examples(specs[0])


def command_for(spec: TrainerSpec) -> Callable[..., None]:
    """The `stransfer train NAME` command of one registry entry."""

    def run(**values: Any) -> None:
        inputs = {name: values.pop(name) for name in spec.inputs}
        add_style = values.pop("add_style", None)
        if add_style and spec.adds_styles_to:
            if inputs[spec.adds_styles_to]:
                flag = spec.inputs[spec.adds_styles_to].short or "--" + spec.adds_styles_to.replace("_", "-")
                raise UsageError(f"{flag} trains a network's styles, --add-style adds styles to the --init model: "
                                 "give one")
            inputs[spec.adds_styles_to] = add_style
        run_options = {name: values.pop(name) for name in RUN_OPTIONS}
        runtime = {name: values.pop(name) for name in RUNTIME_OPTIONS}
        _train(spec.name, inputs, values, **run_options, **runtime, add_style=bool(add_style))

    return command(run, _parameters(spec), spec.summary)
