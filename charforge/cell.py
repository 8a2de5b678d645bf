"""The cell contract: one recurrent layer that runs a whole sequence or one step at a time.

A plugin cell subclasses :class:`Cell`, sets ``name`` (and ``options``, ``help``) and
implements :meth:`Cell.step`. The default :meth:`Cell.forward` loops over ``step``;
cells with a fused kernel (or a vectorised form) override ``forward`` for speed, and must
then compute what the step loop computes. State is a tuple of ``(batch, hidden)`` tensors,
carried in and out of both paths. Cells with ``uses_time = True`` also receive one
timestamp per sample and step (float64). A cell bounds its numeric options with
:func:`check_range` as it is built, so a value from the command line or a checkpoint that torch
could not store is one line.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from charforge.errors import CharforgeError
from charforge.options import Option

State = tuple[Tensor, ...]
# A gate's initial bias beyond this only risks overflow: a sigmoid has saturated long before, in any float type.
GATE_BIAS_LIMIT = 100.0


def check_range(cell: str, name: str, value: float, low: float, high: float) -> None:
    """Refuse an option outside [low, high] (NaN too) with one line, before torch meets a value it
    cannot store (a bias beyond float32's range overflows inside ``fill_``, far from its cause)."""
    if not low <= value <= high:
        raise CharforgeError(f"{cell}: {name} must be in [{low:g}, {high:g}], not {value!r}.")


class Cell(nn.Module):
    """Base class of every recurrent layer charforge can train and sample."""

    name: ClassVar[str]
    help: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    state_count: ClassVar[int] = 1  # how many (batch, hidden) tensors the state holds
    uses_time: ClassVar[bool] = False

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    def initial_state(self, batch: int, device=None, dtype=None) -> State:
        """The state at the start of a stream: zeros unless a cell says otherwise."""
        return tuple(torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
                     for _ in range(self.state_count))

    def step(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        """One step: ``x`` is (batch, input), ``t`` (batch,) or None; returns (h, new state)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        """A whole sequence: ``x`` is (batch, steps, input), ``t`` (batch, steps) or None."""
        outputs = []
        for i in range(x.shape[1]):
            h, state = self.step(x[:, i], state, None if t is None else t[:, i])
            outputs.append(h)
        return torch.stack(outputs, dim=1), state
