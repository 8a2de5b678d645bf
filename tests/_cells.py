"""A third-party cell of the step contract alone, shared by the plugin tests and the test-kit tests."""

from __future__ import annotations

import torch
from torch import nn

from charforge.plugin import Cell, Option


class TinyCell(Cell):
    """A third-party cell that implements only ``step``: the base class loops it over a sequence."""

    name = "tiny"
    help = "A test cell: h' = tanh(W [x, gain * h] + b)."
    options = {"gain": Option(1.0, "scale of the recurrent input")}

    def __init__(self, input_size: int, hidden_size: int, gain: float = 1.0):
        super().__init__(input_size, hidden_size)
        self.gain = gain
        self.linear = nn.Linear(input_size + hidden_size, hidden_size)

    def step(self, x, state, t=None):
        h = torch.tanh(self.linear(torch.cat([x, self.gain * state[0]], dim=-1)))
        return h, (h,)
