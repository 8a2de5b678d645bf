"""A cell backed by one layer of PyTorch's fused recurrent modules.

Sequences run through ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (cuDNN or oneDNN kernels); single
steps run through the matching ``torch.*_cell`` op on the very same weights, so the two
paths compute the same function. On the CPU, a stack of identical fused layers runs as one
multi-layer call of the same kernel (:meth:`FusedCell.forward_stack`), as one ``nn.LSTM(...,
num_layers=N)`` would: each layer keeps its own parameters, and the result is the same.
Inspection (:meth:`FusedCell.inspect`) runs the same kernel and recomputes the gates from its
outputs in a few matrix products, so that only an LSTM's cell state needs a loop over steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn

from charforge.cell import Cell, State

_KERNELS = {torch.lstm_cell: "lstm", torch.gru_cell: "gru", torch.rnn_tanh_cell: "rnn_tanh",
            torch.rnn_relu_cell: "rnn_relu"}
_SEQUENCE_OPS = {"lstm": _VF.lstm, "gru": _VF.gru, "rnn_tanh": _VF.rnn_tanh, "rnn_relu": _VF.rnn_relu}


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

    def step_kernel(self) -> tuple[str, tuple] | None:
        """:meth:`Cell.step_kernel`: this layer's op and weights; None for a subclass whose step differs."""
        if type(self).step is not FusedCell.step or self._cell_op not in _KERNELS:
            return None
        return _KERNELS[self._cell_op], self._weights()

    def stack_key(self, x: Tensor) -> tuple | None:
        """:meth:`Cell.stack_key`; None when this layer runs alone: a subclass with its own ``forward``,
        or off the CPU, where each layer's cuDNN weights are already packed and a joint call would
        repack them every time."""
        if type(self).forward is not FusedCell.forward or x.device.type != "cpu":
            return None
        return (type(self), self._cell_op, self.hidden_size, self.rnn.bias)

    @staticmethod
    def forward_stack(layers: list["FusedCell"], x: Tensor, states: list[State], dropout: float,
                      training: bool) -> tuple[Tensor, list[State]]:
        """Layers with equal :meth:`stack_key` as one call of PyTorch's multi-layer kernel: what
        calling each layer in turn computes, with ``dropout`` between layers (not after the last)."""
        first, n = layers[0], len(layers)
        weights = [w for layer in layers for w in layer._weights() if w is not None]
        op = _SEQUENCE_OPS[_KERNELS[first._cell_op]]
        if first.state_count == 2:
            hx = [torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states])]
            out, h, c = op(x, hx, weights, first.rnn.bias, n, dropout, training, False, True)
            return out, [(h[i], c[i]) for i in range(n)]
        out, h = op(x, torch.stack([s[0] for s in states]), weights, first.rnn.bias, n, dropout, training,
                    False, True)
        return out, [(h[i],) for i in range(n)]

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

    def inspect(self, x: Tensor, state: State, t: Tensor | None = None
                ) -> tuple[Tensor, State, dict[str, Tensor]]:
        """:meth:`Cell.inspect` from the fused kernel's outputs: each step's gates follow from its
        input and the previous output, all steps at once; an LSTM's c is the one recurrence left."""
        if type(self).step is not FusedCell.step or self._cell_op not in _KERNELS:
            return super().inspect(x, state, t)
        out, final = self(x, state)
        w_ih, w_hh, b_ih, b_hh = self._weights()
        previous = torch.cat([state[0].unsqueeze(1), out[:, :-1]], dim=1)
        from_x, from_h = F.linear(x, w_ih, b_ih), F.linear(previous, w_hh, b_hh)
        kind = _KERNELS[self._cell_op]
        if kind == "lstm":  # gates i, f, g, o
            i, f, g, o = (from_x + from_h).chunk(4, dim=-1)
            i, f, o = i.sigmoid(), f.sigmoid(), o.sigmoid()
            written = i * g.tanh()
            c, cs = state[1], []
            for step in range(x.shape[1]):
                c = torch.addcmul(written[:, step], f[:, step], c)
                cs.append(c)
            cs = torch.stack(cs, dim=1) if cs else torch.empty_like(out)
            return out, final, {"h": out, "c": cs, "gate.i": i, "gate.f": f, "gate.o": o}
        if kind == "gru":  # gates r, z (and the candidate n)
            r, z = (from_x[..., :2 * self.hidden_size] + from_h[..., :2 * self.hidden_size]).sigmoid().chunk(2, dim=-1)
            return out, final, {"h": out, "gate.r": r, "gate.z": z}
        return out, final, {"h": out}
