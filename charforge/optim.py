"""Optimizer plugins' spec, learning-rate schedules and gradient clipping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from charforge.errors import CharforgeError
from charforge.options import Option, resolve_options


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer a plugin provides: ``build(params, lr=..., **options)`` returns a torch optimizer."""

    name: str
    build: Callable[..., torch.optim.Optimizer]
    options: dict[str, Option] = field(default_factory=dict)
    help: str = ""


@dataclass(frozen=True)
class Schedule:
    """Learning-rate multiplier as a function of the step and of the budget spent (0..1)."""

    kind: str = "constant"
    warmup: int = 0  # steps of linear warmup from 0
    decay: float = 0.95  # step schedule: multiply by this ...
    decay_every: int = 10_000  # ... every this many steps
    min_ratio: float = 0.1  # cosine schedule: final lr as a fraction of the initial one

    def factor(self, step: int, progress: float) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.kind == "step":
            return warm * self.decay ** (step // self.decay_every)
        if self.kind == "cosine":
            p = min(max(progress, 0.0), 1.0)
            return warm * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
        return warm


def clip_gradients(params: Iterable[torch.Tensor], mode: str, value: float) -> torch.Tensor:
    """Clip in place by global norm or by value; returns the global norm before clipping."""
    params = [p for p in params if p.grad is not None]
    if mode == "norm":
        return torch.nn.utils.clip_grad_norm_(params, value, foreach=True)
    norm = torch.nn.utils.clip_grad_norm_(params, math.inf, foreach=True)
    if mode == "value":
        torch.nn.utils.clip_grad_value_(params, value, foreach=True)
    return norm


def build_optimizer(config, model: torch.nn.Module, registry) -> torch.optim.Optimizer:
    """The configured optimizer over ``model``'s parameters; fills in ``config.optimizer_options``."""
    spec = registry.get("optimizer", config.optimizer).obj
    config.optimizer_options = resolve_options(f"optimizer {config.optimizer!r}", spec.options,
                                               config.optimizer_options)
    try:
        return spec.build(model.parameters(), lr=config.lr, **config.optimizer_options)
    except ValueError as exc:  # the optimizer's own range checks, e.g. torch's "Invalid epsilon value: -1"
        raise CharforgeError(f"optimizer {config.optimizer!r} rejects its options: {exc}") from None
