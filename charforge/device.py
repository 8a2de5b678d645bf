"""Where a model runs and how many CPU threads it uses: shared by training, generation, the API and the TUI.

Kept apart from the trainer so that loading a model to sample never imports the training loop.
"""

from __future__ import annotations

import os

import torch

from charforge.config import TrainConfig
from charforge.errors import CharforgeError

SAMPLING_THREAD_ROWS = 32  # rows of a generation batch from which a second thread pays (benchmarks/NOTES.md)
_TINY_TRAINING = 1024  # batch x hidden below which one training thread beats several (benchmarks/NOTES.md)


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


def training_threads(config: TrainConfig) -> int:
    """CPU threads for training: one for tiny models (thread hand-offs cost more than they save), all
    cores above."""
    return 1 if config.batch_size * config.hidden_size < _TINY_TRAINING else (os.cpu_count() or 1)


def sampling_threads(device: torch.device, threads: int, rows: int) -> None:
    """Set ``threads`` CPU threads, or by default one below :data:`SAMPLING_THREAD_ROWS` rows (where a
    second thread only adds hand-offs) and all cores from there."""
    if threads:
        torch.set_num_threads(threads)
    elif device.type == "cpu" and rows < SAMPLING_THREAD_ROWS:
        torch.set_num_threads(1)
