"""The task contract: a problem that is not a text corpus makes its own data and may score its own
metrics, and trains through the same trainer, run directory and checkpoints as a corpus does.

A plugin registers a :class:`Task` subclass with ``register_tasks(register)``. The trainer asks it
for a :class:`TaskData` (a vocabulary and batches of ids), calls :meth:`Task.evaluate` at each
validation, and stops the run when :meth:`Task.solved` says the metrics are good enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from charforge.options import Option
from charforge.vocab import Vocab

IGNORE = -100  # a target that is not scored (cross_entropy's ignore_index)


@dataclass
class TaskData:
    """What a task trains on: its alphabet and its batches (``val`` None: nothing held out)."""

    vocab: Vocab
    train: Any  # a charforge.data.Streams or a Sequences
    val: Any | None


class Sequences:
    """Independent sequences (the state starts afresh for each batch), made by ``make(i)`` on demand.

    ``make(i)`` returns batch ``i``'s inputs and targets, (batch, length) int64 each, the targets
    :data:`IGNORE` where nothing is scored; it must give the same batch for the same ``i``, so that a
    resumed run reads the data the interrupted one would have.
    """

    carries_state = False

    def __init__(self, make: Callable[[int], tuple[Tensor, Tensor]], windows: int, batch: int, length: int,
                 device: torch.device | str = "cpu"):
        self.make, self.windows, self.batch, self.seq_len, self.device = make, windows, batch, length, device
        self._offsets = torch.arange(length, dtype=torch.float64, device=device).expand(batch, length)

    @property
    def chars_per_window(self) -> int:
        return self.batch * self.seq_len

    def window(self, i: int, with_time: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        x, y = self.make(i)
        return x.to(self.device), y.to(self.device), self._offsets if with_time else None


class Task:
    """A problem a model trains on. Subclass it, set ``name``, ``help`` and ``options``, and register it."""

    name: ClassVar[str]
    help: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    metric: ClassVar[str] = "val_loss"  # the figure a comparison reports (a column of charforge compare's summary)

    def __init__(self, **settings: Any):
        """``settings``: every option of :attr:`options`, resolved (charforge checks them first)."""
        self.settings = settings

    def defaults(self) -> dict[str, Any]:
        """Training settings this task suits (``batch_size``, ``eval_every``...); the user's override them."""
        return {}

    def data(self, batch_size: int, seq_len: int, seed: int, device: torch.device) -> TaskData:
        raise NotImplementedError

    def evaluate(self, model, vocab: Vocab, device: torch.device) -> dict[str, float]:
        """Metrics of the task's own, measured at each validation (beside the held-out loss and accuracy)."""
        return {}

    def solved(self, metrics: dict[str, float]) -> bool:
        """Whether training may stop: the metrics (a validation's) reach what the task asks."""
        return False

