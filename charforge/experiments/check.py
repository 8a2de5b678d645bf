"""Every point of a grid checked before anything trains: its settings, its cell's, optimizer's and
task's options, and its data, by building what its run would build (without training it)."""

from __future__ import annotations

import torch

from charforge.config import TrainConfig
from charforge.data import target_defaults, training_data
from charforge.errors import CharforgeError
from charforge.model import build_model
from charforge.trainer import build_optimizer


def configure(settings: dict, registry) -> TrainConfig:
    """The whole configuration of a run: TrainConfig's defaults, overlaid with the task's (when
    ``settings["corpus"]`` names one), overlaid with ``settings``; each field's type checked."""
    defaults = target_defaults(settings["corpus"], settings.get("task_options"), registry)
    return TrainConfig.from_dict({**defaults, **settings}).check()


def check_point(name: str, settings: dict, registry) -> TrainConfig:
    """The point's configuration with every option resolved, or one CharforgeError naming the point."""
    try:
        config = configure(settings, registry)
        with torch.no_grad():
            data = training_data(config, registry, torch.device("cpu"))
            build_optimizer(config, build_model(config, len(data.vocab), registry), registry)
    except CharforgeError as exc:
        raise CharforgeError(f"point {name}: {exc}") from None
    return config
