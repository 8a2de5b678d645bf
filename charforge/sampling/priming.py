"""Hidden states of a generation batch: priming prompts, and picking or joining rows of a state.

Prompts are primed in groups of equal length, each distinct prompt once, through the model's
fused sequence path, so no padding ever enters a state; the rows' states are then spliced into
the running batch. A long prompt runs :data:`WINDOW` characters at a time, so what it holds at
once (the inputs, gates and read-out of every position) does not grow with its length.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from charforge.cell import State
from charforge.model import CharModel

WINDOW = 4096  # prompt characters per forward pass


def select(state: list[State], rows: Tensor) -> list[State]:
    """The state of ``rows`` (indices into the batch), in that order."""
    return [tuple(s.index_select(0, rows) for s in layer) for layer in state]


def cat(a: list[State], b: list[State]) -> list[State]:
    """The rows of ``a`` followed by those of ``b``."""
    return [tuple(torch.cat([x, y]) for x, y in zip(la, lb)) for la, lb in zip(a, b)]


@torch.inference_mode()
def prime(model: CharModel, prompts: Sequence[Tensor], device: torch.device) -> tuple[list[State], Tensor, Tensor]:
    """(state, last prompt token, its position) for each prompt, priming each distinct prompt once.

    Every prompt but its last token runs through the model, a window at a time; generation then
    starts by feeding that last token.
    """
    unique: dict[bytes, int] = {}
    which = []
    for ids in prompts:
        which.append(unique.setdefault(ids.numpy().tobytes(), len(unique)))
    distinct = [None] * len(unique)
    for ids, u in zip(prompts, which):
        distinct[u] = ids
    by_length: dict[int, list[int]] = {}
    for u, ids in enumerate(distinct):
        by_length.setdefault(len(ids), []).append(u)
    states, order = [], []
    for length, members in by_length.items():
        group = torch.stack([distinct[u] for u in members]).to(device)
        state = model.initial_state(len(members), device)
        for start in range(0, length - 1, WINDOW):
            end = min(start + WINDOW, length - 1)
            t = (torch.arange(start, end, dtype=torch.float64, device=device).expand(len(members), -1)
                 if model.uses_time else None)
            _, state = model(group[:, start:end], state, t)
        states.append(state)
        order.extend(members)
    state = states[0]
    for more in states[1:]:
        state = cat(state, more)
    position = {u: i for i, u in enumerate(order)}
    rows = torch.tensor([position[u] for u in which], device=device)
    last = torch.stack([ids[-1] for ids in prompts]).to(device)
    where = torch.tensor([len(ids) - 1 for ids in prompts], dtype=torch.float64, device=device)
    return select(state, rows), last, where
