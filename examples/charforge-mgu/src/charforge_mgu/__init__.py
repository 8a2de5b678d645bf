"""The Minimal Gated Unit (Zhou, Wu, Zhang and Zhou 2016) as a charforge cell plugin.

One gate does the work of the GRU's two: the forget gate ``f`` both hides the old state from the
candidate and mixes the candidate in::

    f_t  = sigmoid(W_f x_t + U_f h_{t-1} + b_f)
    h~_t = tanh(W_h x_t + U_h (f_t * h_{t-1}) + b_h)
    h_t  = (1 - f_t) * h_{t-1} + f_t * h~_t
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from charforge.plugin import GATE_BIAS_LIMIT, Cell, Option, State, check_range, hookimpl


class MGU(Cell):
    name = "mgu"
    help = "Minimal gated unit (Zhou et al. 2016): a single forget gate, a third fewer weights than a GRU."
    options = {"forget_bias": Option(1.0, "initial forget-gate bias b_f: above 0 lets new input in at first")}

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size)
        check_range(self.name, "forget_bias", forget_bias, -GATE_BIAS_LIMIT, GATE_BIAS_LIMIT)
        # W_f and W_h side by side, with b_f and b_h: every step's input terms are one product
        self.input = nn.Linear(input_size, 2 * hidden_size)
        self.forget = nn.Linear(hidden_size, hidden_size, bias=False)  # U_f
        self.candidate = nn.Linear(hidden_size, hidden_size, bias=False)  # U_h
        with torch.no_grad():
            self.input.bias[:hidden_size].fill_(forget_bias)

    def _recur(self, projected: Tensor, h: Tensor) -> Tensor:
        """The new state from one step's input terms (batch, 2 * hidden) and the old state."""
        x_f, x_h = projected.chunk(2, dim=-1)
        f = torch.sigmoid(x_f + self.forget(h))
        return (1 - f) * h + f * torch.tanh(x_h + self.candidate(f * h))

    def step(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        h = self._recur(self.input(x), state[0])
        return h, (h,)

    def forward(self, x: Tensor, state: State, t: Tensor | None = None) -> tuple[Tensor, State]:
        """The input terms of all steps in one product; only the recurrence loops."""
        projected = self.input(x)
        (h,) = state
        outputs = []
        for i in range(x.shape[1]):
            h = self._recur(projected[:, i], h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h,)


@hookimpl
def register_cells(register):
    register(MGU)
