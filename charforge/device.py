"""Where a model runs: shared by training, generation, the API and the TUI.

Kept apart from the trainer so that loading a model to sample never imports the training loop. How
many CPU threads it uses is measured while it runs (:mod:`charforge.threads`).
"""

from __future__ import annotations

import torch

from charforge.errors import CharforgeError


def pick_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda[:N]`` or ``mps``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CharforgeError("--device cuda was asked for, but PyTorch sees no CUDA GPU.")
    return torch.device(name)
