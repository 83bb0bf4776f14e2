"""One training loop for the feed-forward engines: run folder, atomic checkpoints, JSONL log, previews, resume."""

from __future__ import annotations

import contextlib
import json
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stransfer import winograd
from stransfer.config import as_dict as config_as_dict
from stransfer.config import param
from stransfer.device import Runtime
from stransfer.distributed import World
from stransfer.errors import UsageError, WeightsError
from stransfer.events import EventCallback, Note, Step, ignore
from stransfer.fileio import atomic_write
from stransfer.drawing import loss_curves
from stransfer.images import pil_to_tensor, save_image
from stransfer.weights.models import MAX_MODEL_BYTES
from stransfer.weights.safeload import load_untrusted
from stransfer.winograd import ModuleT

CHECKPOINT = "checkpoint.pth"
LOG = "log.jsonl"
RUN_RECORD = "run.json"
# A checkpoint holds the model, Adam's two moments of every weight and a few small states.
MAX_CHECKPOINT_BYTES = 4 * MAX_MODEL_BYTES


@dataclass(frozen=True)
class TrainConfig:
    """Settings every feed-forward trainer shares; the tasks extend this with their own."""

    steps: int = param(2000, ge=1, help="Total optimiser steps (on --resume: extend to this).")
    batch_size: int = param(4, ge=1, help="Images per step.")
    learning_rate: float = param(1e-3, gt=0.0, help="Adam learning rate.")
    # Inverse-time decay, lr_t = lr / (1 + decay * t), as in Huang & Belongie; 0 keeps the rate constant.
    lr_decay: float = param(0.0, ge=0.0, help="Inverse-time decay: lr / (1 + decay * step).")
    checkpoint_every: int = param(100, ge=1, help="Steps between checkpoints.")
    log_every: int = param(10, ge=1, help="Steps between lines of log.jsonl.")
    preview_every: int = param(500, ge=1, help="Steps between preview sheets.")
    seed: int = param(0, ge=0, help="Seed of the data order and initial weights.")


@dataclass(frozen=True)
class CriticTrainConfig(TrainConfig):
    """Settings of a trainer whose task also trains a critic (a GAN's discriminator) beside its model."""

    # Two time-scales (Heusel et al. 2017): the critic learns faster than the model it judges, so the model is
    # always answered by a critic that has caught up with it, not by a stale one.
    critic_learning_rate: float = param(4e-4, gt=0.0, help="Adam learning rate of the critic.")
    # GANs train with a short memory of past gradients (Radford et al. 2016; MGAN's own setting): with the usual
    # 0.9 each network keeps pushing against where the other one was several steps ago, and the pair oscillates.
    adam_beta1: float = param(0.5, ge=0.0, le=0.99, help="Adam's beta1, for the model and the critic.")


class Task(Protocol):
    """What the loop needs from a trainer: the trainable module, batches, a loss, previews, a model file. A task
    may also name the memory layout its networks train in (`memory_format`; channels-last when it does not)."""

    name: str
    model: nn.Module

    def batch(self, step: int) -> Any: ...

    def loss(self, batch: Any, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of `batch` through `model`: the task's own model, or its DistributedDataParallel wrapper."""
        ...

    def load_init(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start from a trained model's weights (--init), before the first step."""
        ...

    def preview(self) -> torch.Tensor: ...

    def save(self, path: Path, steps: int, record: dict[str, Any]) -> None: ...


class CriticTask(Task, Protocol):
    """A task that also trains a critic (its config a CriticTrainConfig). Each step the loop trains the model on
    `loss` with the critic frozen, then the critic on `critic_loss` of the same batch with its own Adam; both
    networks and both optimisers are checkpointed, so a resumed run continues both curves."""

    critic: nn.Module

    def critic_loss(self, batch: Any, model: nn.Module,
                    critic: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """The critic's loss on `batch`: real samples against the model's outputs, with no gradient to the model.
        It runs right after `loss` on the same batch, so a task may reuse the outputs `loss` made."""
        ...


def place(module: ModuleT, runtime: Runtime, memory_format: torch.memory_format = torch.channels_last) -> ModuleT:
    """A network on the run's device in channels-last, the layout the tasks' batches come in: oneDNN's
    convolutions run fastest in it, as do cuDNN's in bf16 (benchmarks/layout.py). A task whose model trains faster
    in another layout says so (Task.memory_format)."""
    return module.to(runtime.device, memory_format=memory_format)


def _layout(task: Task) -> torch.memory_format:
    return getattr(task, "memory_format", torch.channels_last)


def place_loss_network(backbone: ModuleT, runtime: Runtime) -> ModuleT:
    """The frozen VGG of a task's losses, placed, with its wide convolutions by Winograd where the runtime
    wants them (CPU fp32: stransfer/winograd.py)."""
    return winograd.adopt(place(backbone, runtime), runtime)


def _lr(cfg: TrainConfig, step: int, rate: float | None = None) -> float:
    """The rate at `step` (the model's, or `rate` decayed alike)."""
    return (cfg.learning_rate if rate is None else rate) / (1.0 + cfg.lr_decay * step)


@dataclass
class Critic:
    """A task's critic as the loop trains it: placed, wrapped for DDP where several ranks run, its own Adam."""

    module: nn.Module
    runner: nn.Module
    optimizer: torch.optim.Optimizer
    learning_rate: float


def _adam(module: nn.Module, rate: float, cfg: TrainConfig) -> torch.optim.Adam:
    params = [p for p in module.parameters() if p.requires_grad]
    if isinstance(cfg, CriticTrainConfig):
        return torch.optim.Adam(params, lr=rate, betas=(cfg.adam_beta1, 0.999))
    return torch.optim.Adam(params, lr=rate)


def _ddp(module: nn.Module, runtime: Runtime, world: World) -> nn.Module:
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids) if world.size > 1 else module


def _critic(task: Task, cfg: TrainConfig, runtime: Runtime, world: World) -> Critic | None:
    """The task's critic ready to train, or None for a task without one."""
    module = getattr(task, "critic", None)
    if module is None:
        return None
    if not isinstance(cfg, CriticTrainConfig):
        raise TypeError(f"task {task.name} trains a critic: its config must be a CriticTrainConfig")
    module = place(module, runtime, _layout(task)).train()
    return Critic(module, _ddp(module, runtime, world), _adam(module, cfg.critic_learning_rate, cfg),
                  cfg.critic_learning_rate)


def _step(task: Task, cfg: TrainConfig, step: int, runner: nn.Module, optimizer: torch.optim.Optimizer,
          critic: Critic | None) -> dict[str, float]:
    """One optimiser step of the model, then, for a task with a critic, one of the critic; the losses logged."""
    for group in optimizer.param_groups:
        group["lr"] = _lr(cfg, step)
    batch = task.batch(step)
    optimizer.zero_grad(set_to_none=True)
    if critic is None:
        loss, losses = task.loss(batch, runner)
        loss.backward()
        optimizer.step()
        return losses
    # The model's loss passes through the critic; frozen, the critic computes no gradients of its own there.
    trainable = [p for p in critic.module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        loss, losses = task.loss(batch, runner)
        loss.backward()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    optimizer.step()
    for group in critic.optimizer.param_groups:
        group["lr"] = _lr(cfg, step, critic.learning_rate)
    critic.optimizer.zero_grad(set_to_none=True)
    critic_loss, critic_losses = task.critic_loss(batch, runner, critic.runner)  # type: ignore[attr-defined]
    critic_loss.backward()
    critic.optimizer.step()
    return {**losses, **critic_losses}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    threads = torch.get_num_threads()
    return f"{platform.machine()} CPU, {threads} thread{'s' * (threads != 1)}"


_NOT_LOSSES = ("step", "lr", "elapsed_s", "steps_per_s")


def _truncate_log(log: Path, step: int) -> dict[str, float]:
    """Drop log lines past the checkpoint we resume from: those steps run again, the curve continues.

    Returns the losses last logged, so a run resumed only to be finished still records them."""
    if not log.exists():
        return {}
    kept = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    with atomic_write(log, "w") as f:
        f.write("".join(line + "\n" for line in kept))
    return {k: v for k, v in json.loads(kept[-1]).items() if k not in _NOT_LOSSES} if kept else {}


def _plot_losses(run_dir: Path) -> None:
    """loss_curve.png from log.jsonl, redrawn with every preview."""
    records = [json.loads(line) for line in (run_dir / LOG).read_text().splitlines() if line.strip()]
    if records:
        keys = [k for k in records[-1] if k not in _NOT_LOSSES]
        save_image(pil_to_tensor(loss_curves(records, keys)), run_dir / "loss_curve.png", overwrite=True)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    final_losses: dict[str, float]


def _load_checkpoint(checkpoint: Path) -> dict[str, Any]:
    if not checkpoint.exists():
        raise UsageError(f"{checkpoint.parent}: no {CHECKPOINT} to resume from")
    return load_untrusted(checkpoint, MAX_CHECKPOINT_BYTES, WeightsError, "checkpoint to resume from")


def _restore(name: str, model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint: Path,
             world: World, critic: Critic | None = None) -> tuple[int, float]:
    """Model, optimiser, critic and its optimiser, and random state from the run's checkpoint; (step, elapsed
    seconds) reached."""
    state = world.broadcast(_load_checkpoint(checkpoint) if world.is_main else None)
    if not isinstance(state, dict) or state.get("task") != name:
        found = state.get("task") if isinstance(state, dict) else type(state).__name__
        raise WeightsError(f"{checkpoint}: a checkpoint of '{found}', not of a {name} run")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _reshape_moments(optimizer)
        if critic is not None:
            critic.module.load_state_dict(state["critic"])
            critic.optimizer.load_state_dict(state["critic_optimizer"])
        _set_rng_state(state["rng"])
        return int(state["step"]), float(state["elapsed"])
    except (KeyError, RuntimeError, ValueError, EOFError) as e:
        raise WeightsError(f"{checkpoint}: cannot resume from it ({type(e).__name__}: {e})") from None


def _reshape_moments(optimizer: torch.optim.Optimizer) -> None:
    """Optimiser state in each parameter's shape. A checkpoint written before Johnson's instance norms became
    per-style tables holds their Adam moments as (C,), where the parameters are now (1, C): same numbers."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.shape != p.shape and value.numel() == p.numel():
                    optimizer.state[p][key] = value.reshape(p.shape)


def _save_checkpoint(path: Path, task: Task, model: nn.Module, optimizer: torch.optim.Optimizer,
                     critic: Critic | None, step: int, elapsed: float) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed,
             "rng": _rng_state(), "task": task.name}
    if critic is not None:
        state |= {"critic": critic.module.state_dict(), "critic_optimizer": critic.optimizer.state_dict()}
    with atomic_write(path) as f:
        torch.save(state, f)


def _preview(task: Task, model: nn.Module, run_dir: Path, step: int) -> None:
    """A sheet of the model's outputs on held-out images, and the loss curves so far."""
    model.eval()
    with torch.no_grad():
        sheet = task.preview()
    model.train()
    save_image(sheet, run_dir / f"preview_{step:06d}.png", overwrite=True)
    _plot_losses(run_dir)


def train(task: Task, cfg: TrainConfig, runtime: Runtime, run_dir: Path, out: Path | None,
          on_event: EventCallback = ignore, resume: bool = False, world: World = World(),
          lineage: Sequence[dict[str, Any]] = ()) -> TrainResult:
    """Train `task.model` for cfg.steps, checkpointing into `run_dir`; on resume, continue from its checkpoint.

    `lineage` lists the stages that trained the model this run started from (--init); the model file's
    record appends this run's stage to it, and its step count is the total over every stage.

    Under torchrun each rank trains on its own stream of batches through DistributedDataParallel (gradients
    averaged: the effective batch is batch_size x world size); only rank 0 reads and writes the run folder,
    and broadcasts what it read. A task with a critic (CriticTask) trains it too, step for step.
    """
    model = place(task.model, runtime, _layout(task)).train()
    optimizer = _adam(model, cfg.learning_rate, cfg)
    critic = _critic(task, cfg, runtime, world)
    step, elapsed = 0, 0.0
    losses: dict[str, float] = {}
    checkpoint = run_dir / CHECKPOINT
    writer = world.is_main
    if resume:
        step, elapsed = _restore(task.name, model, optimizer, checkpoint, world, critic)
        on_event(Note(f"resuming {task.name} at step {step} of {cfg.steps}"))
        if writer:
            losses = _truncate_log(run_dir / LOG, step)
    elif writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / LOG).unlink(missing_ok=True)

    runner = _ddp(model, runtime, world)
    window_start, window_steps = time.perf_counter(), 0
    with (run_dir / LOG).open("a") if writer else contextlib.nullcontext(None) as log:
        while step < cfg.steps:
            start = time.perf_counter()
            losses = _step(task, cfg, step, runner, optimizer, critic)
            step += 1
            elapsed += time.perf_counter() - start
            window_steps += 1
            on_event(Step(step, cfg.steps, losses, stage=f"train {task.name}"))
            if log is not None and (step % cfg.log_every == 0 or step == cfg.steps):
                rate = window_steps / max(time.perf_counter() - window_start, 1e-9)
                log.write(json.dumps({"step": step, "lr": _lr(cfg, step - 1), "elapsed_s": round(elapsed, 2),
                                      "steps_per_s": round(rate, 4), **losses}) + "\n")
                log.flush()
                window_start, window_steps = time.perf_counter(), 0
            if writer and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                _save_checkpoint(checkpoint, task, model, optimizer, critic, step, elapsed)
            if writer and (step % cfg.preview_every == 0 or step == cfg.steps):
                _preview(task, model, run_dir, step)
    model.eval()
    if writer:
        _record(task, cfg, run_dir, out, TrainResult(step, elapsed, losses), lineage)
    return TrainResult(step, elapsed, losses)


def _record(task: Task, cfg: TrainConfig, run_dir: Path, out: Path | None, result: TrainResult,
            lineage: Sequence[dict[str, Any]]) -> None:
    """The run's record (this stage appended to the lineage it started from), and the model file."""
    stage = {"steps": result.steps, "wall_time_s": round(result.seconds, 1), "machine": _machine(),
             "final_losses": {k: round(v, 5) for k, v in result.final_losses.items()},
             "date": time.strftime("%Y-%m-%d"), "train_config": config_as_dict(cfg)}
    record = {**stage, "lineage": [*lineage, stage]}
    (run_dir / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if out is not None:
        task.save(out, sum(int(s.get("steps") or 0) for s in record["lineage"]), record)
