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
    """What a task trains on: its alphabet (of outputs) and its batches (``val`` None: nothing held
    out). ``input_size``: None when the inputs are ids of ``vocab``; for inputs that are vectors
    (values, not characters), their width for a cell with a clock (True) or without (False)."""

    vocab: Vocab
    train: Any  # a charforge.data.Streams or a Sequences
    val: Any | None
    input_size: Callable[[bool], int] | None = None


class Sequences:
    """Independent sequences (the state starts afresh for each batch), made by ``make`` on demand.

    ``make(i, with_time)`` returns batch ``i``'s inputs ((batch, length) ids, or (batch, length,
    features) values), targets ((batch, length) int64, :data:`IGNORE` where nothing is scored) and
    timestamps ((batch, length) float64, or None for each step's index); ``with_time``: whether the
    model's cell has a clock. It must give the same batch for the same ``i``, so that a resumed run
    reads the data the interrupted one would have.
    """

    carries_state = False

    def __init__(self, make: Callable[[int, bool], tuple[Tensor, Tensor, Tensor | None]], windows: int,
                 batch: int, length: int, device: torch.device | str = "cpu"):
        self.make, self.windows, self.batch, self.seq_len, self.device = make, windows, batch, length, device

    @property
    def chars_per_window(self) -> int:
        return self.batch * self.seq_len

    def window(self, i: int, with_time: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        x, y, t = self.make(i, with_time)
        if t is None and with_time:  # made here, at the batch's own size: nothing is sized before the model is
            t = torch.arange(x.shape[1], dtype=torch.float64).expand(x.shape[0], -1)
        return x.to(self.device), y.to(self.device), t.to(self.device) if with_time else None


class Task:
    """A problem a model trains on. Subclass it, set ``name``, ``help`` and ``options``, and register it."""

    name: ClassVar[str]
    help: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    metric: ClassVar[str] = "val_loss"  # the figure a comparison reports (a column of charforge compare's summary)
    text: ClassVar[bool] = True  # the inputs are characters: a sampled text means something

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

