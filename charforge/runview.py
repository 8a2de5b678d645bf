"""What lifecycle hooks see of a run: a read-only view, so that plugins never depend on the trainer's
internals, which may change while this view stays."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from charforge.config import TrainConfig
    from charforge.tasks.task import Task
    from charforge.vocab import Vocab


class RunView:
    """The run a hook is called for, handed to every lifecycle hook as ``run``; read anything, change
    nothing but by :meth:`request_stop`."""

    def __init__(self, trainer: Any):
        """``trainer``: the :class:`charforge.trainer.Trainer` it shows (not imported here: the trainer
        imports this module)."""
        self._trainer = trainer

    @property
    def config(self) -> "TrainConfig":
        """The run's settings, with every default filled in; a copy, so changing it changes nothing."""
        return copy.deepcopy(self._trainer.config)

    @property
    def model(self) -> "torch.nn.Module":
        """The model being trained (the live one: read it, sample from it, but leave its weights alone)."""
        return self._trainer.model

    @property
    def parameters(self) -> int:
        """How many numbers the model learns."""
        return sum(p.numel() for p in self._trainer.model.parameters())

    @property
    def vocab(self) -> "Vocab":
        """The characters the model reads and writes."""
        return self._trainer.vocab

    @property
    def task(self) -> "Task | None":
        """The task trained on, or None when the run reads a text corpus."""
        return self._trainer.task

    @property
    def device(self) -> "torch.device":
        """Where the model trains."""
        return self._trainer.device

    @property
    def training_chars(self) -> int:
        """Characters read in one epoch, by all the processes training the run."""
        data = self._trainer.train_data
        return data.windows * data.chars_per_window * self._trainer.world.size

    @property
    def world_size(self) -> int:
        """How many processes train the run together (torchrun's ranks; 1 without it)."""
        return self._trainer.world.size

    @property
    def step(self) -> int:
        """Optimizer steps taken, counted over resumes."""
        return self._trainer.step

    @property
    def epoch(self) -> float:
        """Epochs done, with the fraction of the current one."""
        trainer = self._trainer
        return trainer.epoch + trainer.window / trainer.train_data.windows

    @property
    def run_dir(self) -> Path:
        """The run's directory (checkpoints, metrics.jsonl)."""
        return self._trainer.directory.path

    @property
    def elapsed(self) -> float:
        """Seconds of training, validation included, summed over resumes."""
        return self._trainer.elapsed

    def progress(self) -> float:
        """The share of the budget spent (steps, epochs or minutes, whichever is furthest), 0 to 1 or past it."""
        return self._trainer.progress()

    def eta(self) -> float | None:
        """Seconds left, the final validation included; None until the run's pace is known."""
        return self._trainer.eta()

    @property
    def phase(self) -> str:
        """``"training"`` or ``"validating"``: what the run does now."""
        return self._trainer.phase

    @property
    def validation_fraction(self) -> float:
        """How far the validation under way has gone, 0 to 1 (0 while training)."""
        return self._trainer.validation_fraction

    @property
    def metrics(self) -> dict[str, Any]:
        """The last logged step's figures, with the last validation's; a copy."""
        return dict(self._trainer.last_metrics)

    @property
    def best_val_loss(self) -> float | None:
        """The best validation loss so far, or None before the first validation (or without held-out text)."""
        best = self._trainer.best_val
        return best if math.isfinite(best) else None

    @property
    def threads(self) -> int:
        """CPU threads training uses now (the tuner may change them)."""
        return self._trainer.tuner.threads

    def describe_threads(self) -> str:
        """The threads (per process, when there are several), and whether they are tuned, in words."""
        size = self._trainer.world.size
        return self._trainer.tuner.describe() + (f" in each of {size} processes" if size > 1 else "")

    @property
    def stop_reason(self) -> str | None:
        """Why training will stop after this step (a plugin's reason, ``"interrupted"``...), or None."""
        return self._trainer._stop

    def request_stop(self, reason: str = "stopped by a plugin") -> None:
        """End training after the current step, validating and saving as at the end of the budget;
        ``reason`` is what ``on_train_end`` and the run's log say."""
        self._trainer.request_stop(reason)
