"""A grid of runs: the settings every point shares, the axes that vary, and the seeds.

A grid is JSON-able (``grid.json`` in its directory) and comes from the command line or from a
TOML file. Settings are TrainConfig fields; an option of the cell, the optimizer or the task is
``cell.KEY``, ``optimizer.KEY`` or ``task.KEY``. Each point is named after its values on the axes
(``cell=rnn,hidden-size=8,seed=1``), so that the same grid always names its points alike and a
grown grid keeps the points it had.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.runs.files import atomic_write

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

GRID_FILE = "grid.json"
OPTION_GROUPS = {"cell": "cell_options", "optimizer": "optimizer_options", "task": "task_options"}
_FIELDS = set(TrainConfig.__dataclass_fields__) - {"corpus", "seed"}


@dataclass(frozen=True)
class Point:
    """One run of the grid: its name (its place on the axes and its seed) and its settings."""

    name: str
    values: dict[str, Any]  # axis -> value
    seed: int
    settings: dict[str, Any]  # TrainConfig fields, the corpus or task included

    @property
    def configuration(self) -> str:
        """The point's name without its seed: the points of one configuration differ only in seed."""
        return label(self.values) or "all"


def label(values: dict[str, Any]) -> str:
    return ",".join(f"{key.replace('_', '-')}={_shown(value)}" for key, value in values.items())


def _shown(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace("/", "-")


@dataclass
class Grid:
    """``target`` (a corpus or a task) trained at every combination of ``axes``, once per seed."""

    target: str
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [1])
    target_loss: float | None = None  # the summary reports steps and seconds to reach it

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Refuse a setting that is not one, an empty or repeating axis, seeds that are not integers."""
        for key in [*self.fixed, *self.axes]:
            group = key.split(".", 1)[0]
            if "." in key and group not in OPTION_GROUPS or "." not in key and key not in _FIELDS:
                raise CharforgeError(f"the grid sets {key!r}, which is neither a training setting nor "
                                     f"cell.KEY, optimizer.KEY or task.KEY.")
        for key, values in self.axes.items():
            if not isinstance(values, list) or not values:
                raise CharforgeError(f"the grid's axis {key!r} needs a list of values.")
            if len(set(map(repr, values))) != len(values):
                raise CharforgeError(f"the grid's axis {key!r} repeats a value: {values}.")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise CharforgeError(f"the grid's seeds must be a list of integers, not {self.seeds!r}.")

    def points(self) -> list[Point]:
        """Every combination of the axes (the first axis varying slowest), each seed in turn."""
        points = []
        for combo in itertools.product(*self.axes.values()):
            values = dict(zip(self.axes, combo))
            for seed in self.seeds:
                settings = _settings(self.target, {**self.fixed, **values}, seed)
                name = label(values)
                points.append(Point(f"{name},seed={seed}" if name else f"seed={seed}", values, seed, settings))
        return points

    def to_dict(self) -> dict:
        return {"target": self.target, "fixed": self.fixed, "axes": self.axes, "seeds": self.seeds,
                "target_loss": self.target_loss}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / GRID_FILE, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def from_toml(cls, path: str | Path) -> tuple["Grid", str | None]:
        """(the grid, its name when the file gives one) from a TOML file: ``target``, ``name``, ``seeds``
        (a count or a list), ``target-loss``, and settings, where a list is an axis::

            target = "faith"
            seeds = 2
            steps = 300
            cell = ["rnn", "lstm"]
            hidden-size = [10, 20, 30]
            [cell-options]
            bias = [true, false]
        """
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise CharforgeError(f"{path}: cannot read the grid: {exc}") from None
        data = {key.replace("-", "_"): value for key, value in data.items()}
        target, name = data.pop("target", None), data.pop("name", None)
        if not isinstance(target, str):
            raise CharforgeError(f"{path}: the grid needs target = \"CORPUS or TASK\".")
        seeds = data.pop("seeds", 1)
        seeds = list(range(1, seeds + 1)) if isinstance(seeds, int) else seeds
        if "seed" in data:
            seeds = data.pop("seed") if isinstance(data["seed"], list) else [data.pop("seed")]
        target_loss = data.pop("target_loss", None)
        settings: dict[str, Any] = {}
        for key, value in data.items():
            group = key.removesuffix("_options")
            if isinstance(value, dict) and group in OPTION_GROUPS:
                settings.update({f"{group}.{k}": v for k, v in value.items()})
            else:
                settings[key] = value
        settings = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in settings.items()}
        fixed = {k: v for k, v in settings.items() if not isinstance(v, list)}  # one value: not an axis,
        axes = {k: v for k, v in settings.items() if isinstance(v, list)}  # as on the command line
        return cls(target, fixed, axes, seeds, target_loss), name

    @classmethod
    def load(cls, directory: Path) -> "Grid":
        try:
            data = json.loads((directory / GRID_FILE).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise CharforgeError(f"{directory} holds no readable {GRID_FILE} ({exc}).") from None


def _settings(target: str, given: dict[str, Any], seed: int) -> dict[str, Any]:
    """TrainConfig fields of one point: options of a group gathered into its ``*_options`` dict."""
    settings: dict[str, Any] = {"corpus": target, "seed": seed}
    for key, value in given.items():
        if "." in key:
            group, option = key.split(".", 1)
            settings.setdefault(OPTION_GROUPS[group], {})[option] = value
        else:
            settings[key] = value
    return settings
