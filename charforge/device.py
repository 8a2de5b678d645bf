"""Where a model runs: shared by training, generation, the API and the TUI.

Kept apart from the trainer so that loading a model to sample never imports the training loop. How
many CPU threads it uses is measured while it runs (:mod:`charforge.threads`).
"""

from __future__ import annotations

import torch

from charforge.config import check_device_name
from charforge.errors import CharforgeError


def pick_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda[:N]`` or ``mps``: one that is there, or one line
    saying why not (never PyTorch's error, nor a device that holds no data, such as ``meta``)."""
    check_device_name(name)
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise CharforgeError(f"--device {name} was asked for, but PyTorch sees no CUDA GPU.")
        if int(name[5:] or 0) >= count:
            raise CharforgeError(f"--device {name} was asked for, but PyTorch sees {count} CUDA GPU"
                                 f"{'s' if count > 1 else ''}, the last cuda:{count - 1}.")
    if name == "mps" and not mps:
        raise CharforgeError("--device mps was asked for, but PyTorch sees no MPS device.")
    return torch.device(name)
