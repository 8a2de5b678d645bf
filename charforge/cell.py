"""The cell contract: one recurrent layer that runs a whole sequence or one step at a time.

A plugin cell subclasses :class:`Cell`, sets ``name`` (and ``options``, ``help``) and
implements :meth:`Cell.step`. The default :meth:`Cell.forward` loops over ``step``;
cells with a fused kernel (or a vectorised form) override ``forward`` for speed, and must
then compute what the step loop computes. State is a tuple of ``(batch, hidden)`` tensors,
carried in and out of both paths. Cells with ``uses_time = True`` also receive one
timestamp per sample and step (float64). A cell bounds its numeric options with
:func:`check_range` as it is built, so a value from the command line or a checkpoint that torch
could not store is one line.

Two fast paths are opt-in, each an optional method whose default declines it:
:meth:`Cell.stack_key` with :meth:`Cell.forward_stack` (consecutive layers in one kernel call,
in training and scoring) and :meth:`Cell.step_kernel` (generation's compiled loop, and its
8-bit products). Whatever a cell declares must compute what its ``step`` computes;
:func:`charforge.testing.check_cell` checks that it does.

For ``charforge inspect``, :meth:`Cell.inspect` runs a sequence and names what the layer computed at
every step (its state by ``state_names``; the built-ins add their gates), and :meth:`Cell.clock`
gives a time cell's learned clock; both have defaults, so any cell can be inspected.
"""

from __future__ import annotations

from typing import ClassVar, Hashable, Sequence

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
    state_names: ClassVar[tuple[str, ...]] = ("h",)  # what inspection calls them, in order (h first)
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

    def stack_key(self, x: Tensor) -> Hashable | None:
        """A key for running this layer together with its neighbours, or None (the default) to run
        it alone. The model asks every layer of a run for its key on ``x``, the input of the run's
        first layer (for its device and dtype), and hands each maximal run of consecutive layers
        with equal, non-None keys to the first one's :meth:`forward_stack`; a key must therefore
        hold all that makes two layers stackable (their class, sizes, kernel)."""
        return None

    @staticmethod
    def forward_stack(layers: Sequence["Cell"], x: Tensor, states: Sequence[State], dropout: float,
                      training: bool) -> tuple[Tensor, list[State]]:
        """Layers with equal :meth:`stack_key` in one call: ``x`` (batch, steps, input) through each
        layer in turn, with dropout of probability ``dropout`` (when ``training``) between layers but
        not after the last; returns the last layer's output and each layer's new state, in order.
        Only a cell whose ``stack_key`` returns keys implements it. It takes no timestamps: the
        model never stacks layers of a cell with ``uses_time``."""
        raise NotImplementedError(f"{layers[0].name} returns a stack_key but has no forward_stack")

    def step_kernel(self) -> tuple[str, tuple[Tensor, Tensor, Tensor | None, Tensor | None]] | None:
        """``(kind, (w_ih, w_hh, b_ih, b_hh))`` when :meth:`step` is exactly ``torch.<kind>_cell``
        (kind ``lstm``, ``gru``, ``rnn_tanh`` or ``rnn_relu``) on these weights, in PyTorch's gate
        order and shapes ((gates * hidden, input), (gates * hidden, hidden), biases (gates * hidden,)
        or None); None (the default) otherwise. A model on the CPU whose every layer returns the
        same kind (and whose cell has no ``uses_time``) then generates through charforge's compiled
        loop (:mod:`charforge.sampling.fastpath`) and, but for ``rnn_relu`` (an unbounded state), may
        use its 8-bit products, which assume every state fed forward lies within (-1, 1)."""
        return None

    def inspect(self, x: Tensor, state: State, t: Tensor | None = None
                ) -> tuple[Tensor, State, dict[str, Tensor]]:
        """:meth:`forward`'s result, and the layer's named traces at every step, (batch, steps,
        hidden) each: the state after each step by ``state_names`` (a state past them by its
        index), ``gate.<g>`` for a gate's values in [0, 1] and ``time.k`` for a time gate. The
        default steps through :meth:`step` and records the state; a cell overrides it to add its
        gates, or to use its fast kernel, and must then compute what its ``step`` computes."""
        names = [self.state_names[i] if i < len(self.state_names) else f"state{i}" for i in range(self.state_count)]
        outputs, kept = [], [[] for _ in names]
        for i in range(x.shape[1]):
            h, state = self.step(x[:, i], state, None if t is None else t[:, i])
            outputs.append(h)
            for values, s in zip(kept, state):
                values.append(s)
        if not outputs:
            empty = x.new_zeros(x.shape[0], 0, self.hidden_size)
            return empty, state, {name: empty for name in names}
        return (torch.stack(outputs, dim=1), state,
                {name: torch.stack(values, dim=1) for name, values in zip(names, kept)})

    def clock(self) -> dict[str, Tensor] | None:
        """A time cell's learned clock, (hidden,) per name (the Phased LSTM's ``period``,
        ``open_ratio`` and ``shift``), for inspection; None (the default) for a cell without one."""
        return None
