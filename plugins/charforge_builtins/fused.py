"""A cell backed by one layer of PyTorch's fused recurrent modules.

Sequences run through ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (cuDNN or oneDNN kernels); single
steps run through the matching ``torch.*_cell`` op on the very same weights, so the two
paths compute the same function.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from charforge.cell import Cell, State


class FusedCell(Cell):
    """Shared plumbing of the built-in RNN, LSTM and GRU cells."""

    def __init__(self, input_size: int, hidden_size: int, rnn: nn.RNNBase, cell_op):
        super().__init__(input_size, hidden_size)
        self.rnn = rnn
        self._cell_op = cell_op

    def _weights(self) -> tuple:
        rnn = self.rnn
        if rnn.bias:
            return rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
        return rnn.weight_ih_l0, rnn.weight_hh_l0, None, None

    def forward(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        hx = tuple(s.unsqueeze(0) for s in state) if self.state_count == 2 else state[0].unsqueeze(0)
        out, hn = self.rnn(x, hx)
        if self.state_count == 2:
            return out, tuple(s.squeeze(0) for s in hn)
        return out, (hn.squeeze(0),)

    def step(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        if self.state_count == 2:
            h, c = self._cell_op(x, state, *self._weights())
            return h, (h, c)
        h = self._cell_op(x, state[0], *self._weights())
        return h, (h,)
