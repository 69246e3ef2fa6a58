"""The training loop: devices, distribution, optimisation, logging, checkpoints and resumption.

The model (networks + pose source) maps a batch to outputs; the objective turns batch + outputs into losses; this
module owns everything around them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..data.registry import build_datasets
from ..evaluate.depth_eval import evaluate_depth_model
from .checkpoint import (
    EPOCH_CHECKPOINT,
    LAST_CHECKPOINT,
    PREVIOUS_CHECKPOINT,
    capture_rng_state,
    fallback_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    save_atomic,
    save_keeping_previous,
)
from .config import ExperimentConfig, config_from_dict, save_config
from .model import DepthPoseModel
from .objective import SelfSupervisedObjective
from .sampler import ResumableSampler
from .visualize import training_images

log = logging.getLogger(__name__)

TRAINER_CHECKPOINT = "a trainer checkpoint of python -m priordepth_core.train"
# Signals that end training after the current step, with a checkpoint to resume from.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """Training ended early on SIGINT/SIGTERM after saving a checkpoint that ``--resume`` continues."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; the run is saved in {checkpoint}: "
                         f"continue it with --resume")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (legacy global generator, used by third-party augmentation code)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"run.device={name!r} but CUDA is not available on this machine")
    return device


def move_to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4 and value.shape[1] == 3:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


class DistributedContext:
    """Rank, world size and process group under ``torchrun`` (gloo on CPU, NCCL on CUDA); a no-op otherwise."""

    def __init__(self, device: torch.device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (so that all ranks stop at the same step)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([int(flag)])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class Trainer:
    """Trains a :class:`~priordepth_core.train.model.DepthPoseModel` with the self-supervised objective.

    Args:
        config: the experiment.
        resume: continue from ``<out_dir>/last.pt`` (model, optimiser, data position and RNG states), so the
            continued run is bit-for-bit the uninterrupted one on the same machine; when ``last.pt`` is missing or
            unreadable, from the newest intact ``previous.pt`` / ``epoch_NNN.pt``, with a warning naming it.
        train_set, test_set: datasets to use instead of building them from ``config.data`` (tests, notebooks).
    """

    def __init__(self, config: ExperimentConfig, resume: bool = False, train_set: Dataset | None = None,
                 test_set: Dataset | None = None):
        self.config = config
        self.out_dir = Path(config.run.out_dir)
        self.device = resolve_device(config.run.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device.index or int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = DistributedContext(self.device)
        if config.run.num_threads > 0:
            torch.set_num_threads(config.run.num_threads)
        seed_everything(config.run.seed + self.dist.rank)
        # Deterministic kernels where PyTorch has them; ops without one only warn.
        torch.use_deterministic_algorithms(True, warn_only=True)

        checkpoint_path = self.out_dir / LAST_CHECKPOINT
        if checkpoint_path.exists() and not resume:
            raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another "
                                  f"run.out_dir")
        if resume and not checkpoint_path.exists() and not fallback_checkpoints(self.out_dir):
            raise FileNotFoundError(f"--resume given but {checkpoint_path} does not exist")
        if self.dist.is_main:
            stale = remove_stale_temporaries(self.out_dir)
            if stale:
                log.warning("removed %d stale temporary checkpoint file(s) left in %s by an interrupted save: %s",
                            len(stale), self.out_dir, ", ".join(p.name for p in stale))

        if train_set is None:
            train_set, built_test = build_datasets(config.data, seed=config.run.seed)
            test_set = built_test if test_set is None else test_set
        self.train_set, self.test_set = train_set, test_set
        if len(self.train_set) < config.optim.batch_size * self.dist.world_size:
            raise ValueError(f"the training set has {len(self.train_set)} samples, fewer than one batch of "
                             f"{config.optim.batch_size} per rank x {self.dist.world_size} ranks")

        self.model = DepthPoseModel(config).to(self.device)
        if self.device.type == "cuda" and config.run.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = SelfSupervisedObjective(config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr,
                                          weight_decay=config.optim.weight_decay)
        self.use_amp = config.run.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.train_module: torch.nn.Module = self.model
        if self.dist.enabled:
            self.train_module = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

        self.sampler = ResumableSampler(len(self.train_set), seed=config.run.seed, shuffle=True,
                                        rank=self.dist.rank, world_size=self.dist.world_size)
        self.step = 0
        self.epoch = 0
        self.sample_in_epoch = 0
        self.failed_pose_pairs = 0
        self.total_pose_pairs = 0
        self.history: list[dict[str, float]] = []
        self._stop_signal: int | None = None
        if resume:
            self._load(checkpoint_path)
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard")) if self.dist.is_main else None
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out_dir / "config.json")

    # ----------------------------------------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "sample_in_epoch": self.sample_in_epoch,
            "failed_pose_pairs": self.failed_pose_pairs,
            "total_pose_pairs": self.total_pose_pairs,
            "rng": capture_rng_state(),
            "config": self.config.to_dict(),
            "history": json.dumps(self.history),
        }

    def save_checkpoint(self, name: str = LAST_CHECKPOINT) -> Path | None:
        """Write the full training state atomically (rank 0 only); returns the path written."""
        if not self.dist.is_main:
            return None
        path = self.out_dir / name
        if name == LAST_CHECKPOINT:
            save_keeping_previous(self._state(), path, self.out_dir / PREVIOUS_CHECKPOINT)
        else:
            save_atomic(self._state(), path)
        return path

    def _read_resume_state(self, path: Path) -> tuple[Path, dict[str, Any]]:
        """``path``'s state, or, when it is missing or unreadable, that of the newest intact fallback checkpoint.

        The unreadable file is kept beside the run as ``last.pt.damaged`` so that the next save cannot turn it into
        ``previous.pt``.
        """
        try:
            return path, load_checkpoint(path, map_location=self.device, expected=TRAINER_CHECKPOINT)
        except (FileNotFoundError, ValueError) as exc:
            problem = str(exc)
        for candidate in fallback_checkpoints(self.out_dir):
            try:
                state = load_checkpoint(candidate, map_location=self.device, expected=TRAINER_CHECKPOINT)
            except ValueError as exc:
                log.warning("cannot resume from %s either: %s", candidate, exc)
                continue
            kept = ""
            if self.dist.is_main and path.exists():
                damaged = path.with_name(f"{path.name}.damaged")
                os.replace(path, damaged)
                kept = f"; the unreadable file is kept as {damaged}"
            log.warning("%s; resuming from %s (step %s), the newest intact checkpoint%s", problem, candidate,
                        state.get("step", "?"), kept)
            return candidate, state
        raise ValueError(f"{problem}; no intact {PREVIOUS_CHECKPOINT} or epoch_*.pt in {self.out_dir} to fall back "
                         f"to: start again in another run.out_dir")

    def _load(self, path: Path) -> None:
        path, state = self._read_resume_state(path)
        saved = config_from_dict(state["config"])
        if saved.model != self.config.model or saved.pose.source != self.config.pose.source:
            raise ValueError(f"{path} was trained with a different model or pose source; it cannot be resumed "
                             f"with this config")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.sample_in_epoch = int(state["sample_in_epoch"])
        self.failed_pose_pairs = int(state["failed_pose_pairs"])
        self.total_pose_pairs = int(state["total_pose_pairs"])
        self.history = json.loads(state["history"])
        restore_rng_state(state["rng"])
        log.info("resumed %s at step %d (epoch %d, sample %d)", path, self.step, self.epoch, self.sample_in_epoch)

    # ----------------------------------------------------------------------------------------------- training
    def _loader(self) -> DataLoader:
        self.sampler.set_position(self.epoch, self.sample_in_epoch)
        # The loader draws its worker seed from this generator, not the global RNG: creating a loader mid-epoch on
        # resume must not shift the random stream that dropout, homographies and RANSAC draw from.
        loader_rng = torch.Generator().manual_seed(self.config.run.seed * 1000 + self.epoch)
        return DataLoader(self.train_set, batch_size=self.config.optim.batch_size, sampler=self.sampler,
                          num_workers=self.config.data.num_workers, drop_last=True, generator=loader_rng,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    def _max_steps(self) -> int:
        steps_per_epoch = self.sampler.per_rank() // self.config.optim.batch_size
        total = steps_per_epoch * self.config.optim.epochs
        return min(total, self.config.optim.max_steps) if self.config.optim.max_steps > 0 else total

    def learning_rate(self, epoch: int) -> float:
        """MonoDepth2's step decay, a pure function of the epoch so that resuming needs no scheduler state."""
        optim = self.config.optim
        return optim.lr * optim.lr_gamma ** (epoch // max(optim.lr_step_epochs, 1))

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on one batch; returns scalar metrics."""
        self.train_module.train()
        batch = move_to_device(batch, self.device, self.use_amp and self.config.run.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self.train_module(batch, step=self.step)
            loss, metrics = self.objective(batch, outputs)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}; metrics: {metrics}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        pose_valid = outputs["pose_valid"]
        self.failed_pose_pairs += int((~pose_valid).sum())
        self.total_pose_pairs += pose_valid.numel()
        scalars = {key: float(value) for key, value in metrics.items() if _is_scalar(value)}
        scalars["loss"] = float(loss.detach())
        scalars["pose_failure_rate_total"] = self.failed_pose_pairs / max(self.total_pose_pairs, 1)
        self._last_visuals = (batch, outputs, metrics)
        return scalars

    def fit(self) -> list[dict[str, float]]:
        """Train until ``optim.epochs`` (or ``optim.max_steps``); returns the per-epoch evaluation history.

        Raises:
            TrainingStopped: SIGINT or SIGTERM arrived; the step in progress was finished and saved to ``last.pt``.
        """
        max_steps = self._max_steps()
        progress = tqdm(total=max_steps, initial=self.step, desc=self.config.name, disable=not self.dist.is_main,
                        dynamic_ncols=True)
        running: dict[str, list[float]] = defaultdict(list)
        previous_handlers = self._catch_stop_signals()
        try:
            while self.step < max_steps:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.learning_rate(self.epoch)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(self.epoch)  # augmentation draws are a function of the epoch
                for batch in self._loader():
                    scalars = self.train_step(batch)
                    self.step += 1
                    self.sample_in_epoch += self.config.optim.batch_size
                    for key, value in scalars.items():
                        running[key].append(value)
                    progress.update(1)
                    progress.set_postfix(loss=f"{scalars['loss']:.4f}")
                    if self.step % self.config.run.log_every == 0:
                        self._log_scalars(running)
                        running.clear()
                    if self.writer is not None and self.step % self.config.run.image_every == 0:
                        self._log_images()
                    if self.step % self.config.run.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.dist.any(self._stop_signal is not None):
                        self._stop()
                    if self.step >= max_steps:
                        break
                else:
                    self._end_epoch()
                    continue
                break
            if self.sample_in_epoch:  # stopped by max_steps mid-epoch
                self._end_epoch(partial=True)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            progress.close()
            if self.writer is not None:
                self.writer.flush()
        return self.history

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Turn SIGINT/SIGTERM into a stop after the current step (main thread only); returns the old handlers.

        Stopping between steps means no checkpoint write is ever cut short. A second signal gets the old handler,
        so a run that will not stop can still be interrupted at once.
        """
        if threading.current_thread() is not threading.main_thread():
            return {}
        # getsignal gives None for a handler installed outside Python; the default action stands in for it.
        previous = {signum: signal.getsignal(signum) or signal.SIG_DFL for signum in STOP_SIGNALS}

        def request_stop(signum: int, frame: Any) -> None:
            self._stop_signal = signum
            for number, handler in previous.items():
                signal.signal(number, handler)

        for signum in STOP_SIGNALS:
            signal.signal(signum, request_stop)
        return previous

    def _stop(self) -> None:
        path = self.save_checkpoint()
        self.dist.barrier()
        raise TrainingStopped(self._stop_signal or signal.SIGTERM, self.step, path or self.out_dir / LAST_CHECKPOINT)

    def _end_epoch(self, partial: bool = False) -> None:
        record: dict[str, float] = {"epoch": float(self.epoch), "step": float(self.step)}
        if self.config.run.eval_each_epoch and self.test_set is not None:
            record.update(self.evaluate())
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("epoch", "step"):
                    self.writer.add_scalar(f"test/{key}", value, self.step)
        self.history.append(record)
        if not partial:
            self.epoch += 1
            self.sample_in_epoch = 0
        self.save_checkpoint()
        if not partial and self.dist.is_main:
            self.save_checkpoint(EPOCH_CHECKPOINT.format(epoch=self.epoch))
        self.dist.barrier()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Depth metrics (median-scaled, MonoDepth2 protocol) on the test split; ``{}`` if it has no depth."""
        run = self.config.run
        metrics = evaluate_depth_model(self.model.depth_net, self.test_set, self.device, min_depth=run.eval_min_depth,
                                       max_depth=run.eval_max_depth, max_samples=run.eval_max_samples or None)
        return {key: self.dist.mean(value) for key, value in metrics.items()}

    def _log_scalars(self, running: dict[str, list[float]]) -> None:
        if self.writer is None:
            return
        for key, values in running.items():
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                self.writer.add_scalar(f"train/{key}", sum(finite) / len(finite), self.step)
        self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)

    def _log_images(self) -> None:
        batch, outputs, metrics = self._last_visuals
        for tag, image in training_images(batch, outputs, metrics).items():
            self.writer.add_image(tag, image, self.step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.dist.close()


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float) or (isinstance(value, torch.Tensor) and value.numel() == 1)


def train_main(config: ExperimentConfig, resume: bool = False) -> list[dict[str, float]]:
    start = time.perf_counter()
    trainer = Trainer(config, resume=resume)
    try:
        history = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.is_main:
        log.info("training finished in %.1f s; checkpoints in %s", time.perf_counter() - start, trainer.out_dir)
    return history
