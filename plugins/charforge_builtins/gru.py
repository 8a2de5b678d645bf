"""The gated recurrent unit (Cho et al. 2014)."""

from __future__ import annotations

import torch
from torch import nn

from charforge.hookspecs import hookimpl

from charforge_builtins.fused import FusedCell


class GRUCell(FusedCell):
    name = "gru"
    help = "Gated recurrent unit, fused kernels for training."

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size, nn.GRU(input_size, hidden_size, batch_first=True),
                         torch.gru_cell)


@hookimpl
def register_cells(register):
    register(GRUCell)
