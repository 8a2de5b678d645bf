"""Fine-tuning: a new run that starts from a trained model's weights (``--init-from``), on new text.

The model keeps its shape, so the shape comes from the checkpoint; everything else (the
optimizer, the learning rate, the budget) is the new run's own, and its optimizer starts fresh.
Characters of the new text that the model has never seen extend its vocabulary at the end: the
rows they add to the embedding and the read-out keep their fresh initialisation, the others
keep what they learned.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from charforge.config import ARCHITECTURE
from charforge.errors import CharforgeError
from charforge.runs.checkpoint import Checkpoint, load_checkpoint, require_plugins, require_text


def starting_point(init_from: Any, registry) -> Checkpoint:
    """The checkpoint a fine-tuning run starts from: a file, or a run's best checkpoint (its weights only),
    of a model that reads characters."""
    if not isinstance(init_from, (str, os.PathLike)):
        raise CharforgeError(f"init_from must be a run directory or a checkpoint file, not {init_from!r}.")
    ckpt = load_checkpoint(init_from, "best", model_only=True)
    require_plugins(ckpt, registry, ("cell",))
    require_text(ckpt, registry, "its weights cannot start a model of text")
    return ckpt


def architecture_from(init_from: Any, settings: dict[str, Any], registry) -> dict[str, Any]:
    """The settings a run starting from ``init_from`` takes from it: the model's shape, and the
    checkpoint's own path. A shape in ``settings`` that differs is refused."""
    ckpt = starting_point(init_from, registry)
    stored = ckpt.config
    if settings.get("cell_options"):
        raise CharforgeError(f"--init-from takes the cell and its options from {ckpt.path}; drop the -c options.")
    for key in ARCHITECTURE:
        if key != "cell_options" and key in settings and settings[key] != getattr(stored, key):
            raise CharforgeError(f"--init-from keeps the model's shape: {ckpt.path} has {key} "
                                 f"{getattr(stored, key)!r}, not {settings[key]!r}.")
    return {**{key: getattr(stored, key) for key in ARCHITECTURE}, "init_from": str(ckpt.path)}


def initialise(model: torch.nn.Module, ckpt: Checkpoint, config) -> None:
    """Copy ``ckpt``'s weights into ``model``, built from ``config`` for a vocabulary that holds the
    checkpoint's (in its order) and perhaps more characters at its end."""
    for key in ARCHITECTURE:
        if getattr(config, key) != getattr(ckpt.config, key):
            raise CharforgeError(f"{ckpt.path}: the model to initialise has {key} {getattr(config, key)!r}, "
                                 f"the checkpoint {getattr(ckpt.config, key)!r}.")
    old, new = len(ckpt.vocab), model.vocab_size
    stored, state = ckpt.group("model"), model.state_dict()
    if stored.keys() != state.keys():
        raise CharforgeError(f"{ckpt.path}: its weights do not fit the model (their names differ).")
    with torch.no_grad():
        for name, tensor in state.items():
            source = stored[name]
            fits = source.dim() == tensor.dim() and all(
                a == b or (a == old and b == new) for a, b in zip(source.shape, tensor.shape))
            if not fits:
                raise CharforgeError(f"{ckpt.path}: weight {name} has shape {tuple(source.shape)}, the model's "
                                     f"{tuple(tensor.shape)}.")
            tensor[tuple(slice(0, n) for n in source.shape)].copy_(source)
