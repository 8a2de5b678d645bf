"""Every point of a grid checked before anything trains: its settings, its cell's, optimizer's and
task's options, and its data, by building what its run would build (without training it)."""

from __future__ import annotations

import torch

from charforge.config import TrainConfig
from charforge.data import run_config, training_data
from charforge.errors import CharforgeError
from charforge.model import build_model
from charforge.optim import build_optimizer


def check_point(name: str, settings: dict, registry) -> TrainConfig:
    """The point's configuration with every option resolved, or one CharforgeError naming the point."""
    try:
        config = run_config(settings, registry)
        with torch.no_grad():
            data = training_data(config, registry, torch.device("cpu"))
            build_optimizer(config, build_model(config, len(data.vocab), registry, data.input_size), registry)
    except CharforgeError as exc:
        raise CharforgeError(f"point {name}: {exc}") from None
    return config
