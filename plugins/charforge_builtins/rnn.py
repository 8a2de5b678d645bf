"""The vanilla (Elman) RNN: h_t = act(W_ih x_t + W_hh h_{t-1} + b_h)."""

from __future__ import annotations

import math

import torch
from torch import nn

from charforge.hookspecs import hookimpl
from charforge.options import Option

from charforge_builtins.fused import FusedCell


class RNNCell(FusedCell):
    name = "rnn"
    help = "Vanilla RNN (tanh or relu), with switchable hidden bias and a choice of initialisation."
    options = {
        "nonlinearity": Option("tanh", "activation of the hidden state", choices=("tanh", "relu")),
        "bias": Option(True, "learn the hidden bias b_h (the output bias b_y is --output-bias)"),
        "init": Option("default", "recurrent weight init: PyTorch's default uniform, orthogonal, "
                       "identity (IRNN, Le et al. 2015: use with relu) or He (Kaiming normal)",
                       choices=("default", "orthogonal", "identity", "he")),
    }

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh",
                 bias: bool = True, init: str = "default"):
        rnn = nn.RNN(input_size, hidden_size, nonlinearity=nonlinearity, bias=bias, batch_first=True)
        op = torch.rnn_tanh_cell if nonlinearity == "tanh" else torch.rnn_relu_cell
        super().__init__(input_size, hidden_size, rnn, op)
        self._initialise(init)

    @torch.no_grad()
    def _initialise(self, init: str) -> None:
        w_ih, w_hh, b_ih, b_hh = self._weights()
        if w_hh.is_meta:  # built for its shapes alone (checkpoint.check_fits): no values to compute, slowly
            return
        if init == "orthogonal":
            nn.init.orthogonal_(w_hh)
        elif init == "identity":
            nn.init.eye_(w_hh)
            nn.init.normal_(w_ih, std=0.001)
        elif init == "he":
            nn.init.normal_(w_ih, std=math.sqrt(2.0 / self.input_size))
            nn.init.normal_(w_hh, std=math.sqrt(2.0 / self.hidden_size))
        if init != "default" and b_ih is not None:
            b_ih.zero_()
            b_hh.zero_()


@hookimpl
def register_cells(register):
    register(RNNCell)
