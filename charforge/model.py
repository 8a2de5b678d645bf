"""The character model: input (one-hot or embedding), a stack of cells, a linear read-out."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charforge.cell import Cell, State
from charforge.errors import CharforgeError

FLOAT_BYTES = 4  # a float32, the type charforge trains in


class CharModel(nn.Module):
    """Predicts the next character at every position; any registered cell, any depth."""

    def __init__(self, vocab_size: int, cell: type[Cell], hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, embedding_dim: int = 0, output_bias: bool = True,
                 cell_options: dict | None = None, input_size: int | None = None):
        """``input_size``: inputs that are vectors of this width (a task's values), not character ids."""
        super().__init__()
        self.vocab_size = vocab_size
        self.input_size = input_size
        self.embed = nn.Embedding(vocab_size, embedding_dim) if embedding_dim and not input_size else None
        sizes = [input_size or embedding_dim or vocab_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(cell(size, hidden_size, **(cell_options or {})) for size in sizes)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size, bias=output_bias)
        self.uses_time = cell.uses_time

    def initial_state(self, batch: int, device=None) -> list[State]:
        dtype = self.head.weight.dtype  # a model in float64 (or half) starts from a state of its type
        return [layer.initial_state(batch, device=device, dtype=dtype) for layer in self.layers]

    def _inputs(self, tokens: Tensor) -> Tensor:
        if self.input_size:
            return tokens.to(self.head.weight.dtype)
        if self.embed is not None:
            return self.embed(tokens)
        return F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)

    def forward(self, tokens: Tensor, state: list[State], t: Tensor | None = None
                ) -> tuple[Tensor, list[State]]:
        """``tokens`` (batch, steps) -> logits (batch, steps, vocab) and the new state."""
        x = self._inputs(tokens)
        new_state: list[State] = []
        layers, i = list(self.layers), 0
        while i < len(layers):  # runs of layers that allow it go through one multi-layer kernel call
            key = None if self.uses_time else layers[i].stack_key(x)  # Cell.stack_key: no timestamps
            j = i + 1
            while key is not None and j < len(layers) and layers[j].stack_key(x) == key:
                j += 1
            if j - i > 1:
                x, states = layers[i].forward_stack(layers[i:j], x, state[i:j], self.drop.p, self.training)
                new_state.extend(states)
            else:
                x, s = layers[i](x, state[i], t)
                new_state.append(s)
            x = self.drop(x)
            i = j
        return self.head(x), new_state

    def step(self, tokens: Tensor, state: list[State], t: Tensor | None = None
             ) -> tuple[Tensor, list[State]]:
        """``tokens`` (batch,) -> logits (batch, vocab): one step, for sampling."""
        x = self._inputs(tokens)
        new_state = []
        for layer, s in zip(self.layers, state):
            x, s = layer.step(x, s, t)
            x = self.drop(x)
            new_state.append(s)
        return self.head(x), new_state

    def inspect(self, tokens: Tensor, state: list[State], t: Tensor | None = None
                ) -> tuple[Tensor, list[State], list[dict[str, Tensor]]]:
        """:meth:`forward` layer by layer through each cell's :meth:`~charforge.cell.Cell.inspect`:
        the logits, the new state and every layer's named traces (batch, steps, hidden)."""
        x = self._inputs(tokens)
        new_state, traces = [], []
        for layer, s in zip(self.layers, state):
            x, s, named = layer.inspect(x, s, t)
            x = self.drop(x)
            new_state.append(s)
            traces.append(named)
        return self.head(x), new_state, traces


def detach_state(state: list[State]) -> list[State]:
    return [tuple(s.detach() for s in layer) for layer in state]


def build_model(config, vocab_size: int, registry, input_size=None, training: bool = True) -> CharModel:
    """The model a :class:`~charforge.config.TrainConfig` describes, its cell taken from the plugins;
    ``input_size``: a task's ``TaskData.input_size``, for inputs that are vectors. ``training``: the
    memory check (:func:`check_memory`) counts what training adds to the weights (sampling: not)."""
    from charforge.options import resolve_options

    cell = registry.get("cell", config.cell).obj
    options = resolve_options(f"cell {config.cell!r}", cell.options, config.cell_options)
    config.cell_options = options
    inputs = input_size(cell.uses_time) if input_size else None
    # a task's sequences may be shorter than --seq-len: one step of them is the least a window holds
    steps = 1 if config.corpus in registry.names("task") else config.seq_len
    check_memory(config, vocab_size, cell, options, inputs, steps if training else 0)
    return CharModel(vocab_size, cell, config.hidden_size, config.num_layers, config.dropout,
                     config.embedding_dim, config.output_bias, options, inputs)


def check_memory(config, vocab_size: int, cell: type[Cell], options: dict, input_size: int | None,
                 steps: int) -> None:
    """Refuse, with one line, a model that cannot fit in the memory available, before anything is
    allocated, so that no size (a typo, a stranger's checkpoint) exhausts memory or overflows. What
    it counts is a lower bound: the embedding and the read-out from their shapes, the recurrent
    layers from one of each input width built on the meta device (so any depth costs the same to
    count); in training (``steps`` > 0, the steps of a window) also the gradients and a window's
    activations. The optimizer's state is left out: it is the plugin's."""
    available = available_memory()
    if available is None:
        return
    hidden, layers, training = config.hidden_size, config.num_layers, steps > 0
    copies = 2 if training else 1  # the weights, and in training their gradients
    weights = hidden * vocab_size + (vocab_size if config.output_bias else 0)  # the read-out
    if config.embedding_dim and not input_size:
        weights += vocab_size * config.embedding_dim
    activations = config.batch_size * steps * (hidden * layers + vocab_size)
    needed = FLOAT_BYTES * (copies * weights + activations)
    if needed <= available:  # only then are the layers counted: sizes far past memory could overflow even there
        needed += copies * _layer_bytes(cell, input_size or config.embedding_dim or vocab_size, hidden, options)
        if layers > 1:
            needed += copies * (layers - 1) * _layer_bytes(cell, hidden, hidden, options)
    if needed > available:
        what = "its weights and their gradients, and one window's activations" if training else "its weights"
        advice = (" Use a smaller --hidden-size, --layers, --embedding-dim, --batch-size or --seq-len."
                  if training else "")
        raise CharforgeError(f"this model needs at least {needed / 1e9:.3g} GB of memory ({what}); this machine "
                             f"has {available / 1e9:.3g} GB available.{advice}")


def _layer_bytes(cell: type[Cell], input_size: int, hidden_size: int, options: dict) -> int:
    """The bytes of one layer's parameters and buffers (0 for a cell that cannot be built on meta)."""
    layer = meta_layer(cell, input_size, hidden_size, options)
    return 0 if layer is None else sum(t.numel() * t.element_size() for t in (*layer.parameters(), *layer.buffers()))


def meta_layer(cell: type[Cell], input_size: int, hidden_size: int, options: dict) -> Cell | None:
    """One layer built on the meta device (shapes, no data), to count or compare before anything is
    allocated; None for a plugin cell that reads values as it builds. An option out of its bounds
    raises the same line the real build would."""
    try:
        with torch.device("meta"):
            return cell(input_size, hidden_size, **options)
    except CharforgeError:
        raise
    except Exception:
        return None


def available_memory() -> int | None:
    """Bytes of memory free for this process now (Linux's MemAvailable), else the machine's physical
    memory, or None where neither is known."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
