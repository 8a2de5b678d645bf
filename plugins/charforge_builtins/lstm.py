"""The LSTM (Hochreiter & Schmidhuber 1997), with its forget-gate bias initialised to 1."""

from __future__ import annotations

import torch
from torch import nn

from charforge.cell import GATE_BIAS_LIMIT, check_range
from charforge.hookspecs import hookimpl
from charforge.options import Option

from charforge_builtins.fused import FusedCell


class LSTMCell(FusedCell):
    name = "lstm"
    help = "Long short-term memory, fused kernels for training, forget-gate bias 1 (Jozefowicz et al. 2015)."
    options = {"forget_bias": Option(1.0, "initial forget-gate bias")}
    state_count = 2
    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0):
        check_range(self.name, "forget_bias", forget_bias, -GATE_BIAS_LIMIT, GATE_BIAS_LIMIT)
        rnn = nn.LSTM(input_size, hidden_size, batch_first=True)
        super().__init__(input_size, hidden_size, rnn, torch.lstm_cell)
        with torch.no_grad():  # gates are ordered i, f, g, o; the two biases add up
            rnn.bias_ih_l0[hidden_size:2 * hidden_size].fill_(forget_bias)
            rnn.bias_hh_l0[hidden_size:2 * hidden_size].zero_()


@hookimpl
def register_cells(register):
    register(LSTMCell)
