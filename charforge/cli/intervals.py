"""Intervals given on the command line as steps (``500``) or as time (``90s``, ``2m``), and the
TrainConfig fields they set: shared by ``charforge train`` and the terminal UI's check of it."""

from __future__ import annotations

from typing import NamedTuple

import click

from charforge.config import TrainConfig


class Every(NamedTuple):
    """An interval given as steps (``500``) or as time (``90s``, ``2m``); printed back as it was given."""

    steps: int | None
    seconds: float | None

    def __str__(self) -> str:
        return str(self.steps) if self.steps is not None else f"{self.seconds:g}s"


class EveryType(click.ParamType):
    name = "N|TIME"
    _UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}

    def convert(self, value, param, ctx):
        if isinstance(value, Every):
            return value
        text = str(value).strip().lower()
        unit = next((u for u in sorted(self._UNITS, key=len, reverse=True) if text.endswith(u)), None)
        try:
            if unit is None:
                return Every(int(text), None)
            return Every(None, float(text[:-len(unit)]) * self._UNITS[unit])
        except ValueError:
            self.fail(f"{value!r} is neither a number of steps (500) nor a time (90s, 2m).", param, ctx)


def config_fields(options: dict) -> dict:
    """The TrainConfig fields the given train options set: ``--eval-every 500`` sets ``eval_every``,
    ``--eval-every 90s`` sets ``eval_seconds``; options not given are left out."""
    fields = {}
    for key, value in options.items():
        if isinstance(value, Every):
            key, value = (key, value.steps) if value.steps is not None else (key.replace("every", "seconds"),
                                                                              value.seconds)
        if value is not None and key in TrainConfig.__dataclass_fields__:
            fields[key] = value
    return fields
