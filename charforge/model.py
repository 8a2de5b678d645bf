"""The character model: input (one-hot or embedding), a stack of cells, a linear read-out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charforge.cell import Cell, State


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
            key = layers[i].stack_key(x) if hasattr(layers[i], "stack_key") else None
            j = i + 1
            while key is not None and j < len(layers) and getattr(layers[j], "stack_key", None) \
                    and layers[j].stack_key(x) == key:
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


def detach_state(state: list[State]) -> list[State]:
    return [tuple(s.detach() for s in layer) for layer in state]


def build_model(config, vocab_size: int, registry, input_size=None) -> CharModel:
    """The model a :class:`~charforge.config.TrainConfig` describes, its cell taken from the plugins;
    ``input_size``: a task's ``TaskData.input_size``, for inputs that are vectors."""
    from charforge.options import resolve_options

    cell = registry.get("cell", config.cell).obj
    options = resolve_options(f"cell {config.cell!r}", cell.options, config.cell_options)
    config.cell_options = options
    return CharModel(vocab_size, cell, config.hidden_size, config.num_layers, config.dropout,
                     config.embedding_dim, config.output_bias, options,
                     input_size(cell.uses_time) if input_size else None)
