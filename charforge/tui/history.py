"""A run's history as the training screen needs it, built from the events of its metrics.jsonl.

Pure Python (no Textual): ``add`` takes each event dict in order; the screen reads the series,
the latest figures and the samples, and redraws from a downsampled copy on a timer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LN2 = math.log(2)


@dataclass
class Sample:
    step: int
    text: str
    title: str


def downsample(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` points: the mean of each run of neighbours, the last point kept as is."""
    n = len(points)
    if n <= limit or limit < 2:
        return list(points)
    out = []
    buckets = limit - 1
    for b in range(buckets):
        chunk = points[b * (n - 1) // buckets:(b + 1) * (n - 1) // buckets] or [points[b * (n - 1) // buckets]]
        out.append((chunk[-1][0], sum(p[1] for p in chunk) / len(chunk)))
    out.append(points[-1])
    return out


@dataclass
class RunHistory:
    train: list[tuple[float, float]] = field(default_factory=list)  # (step, loss in nats/char)
    val: list[tuple[float, float]] = field(default_factory=list)
    latest: dict = field(default_factory=dict)  # the last "step" event, with the last validation merged
    samples: list[Sample] = field(default_factory=list)
    start: dict = field(default_factory=dict)  # the last "start" event
    last_checkpoint: dict = field(default_factory=dict)
    best_val: float | None = None
    ended: str | None = None  # the reason of the last "end" event, None while running
    error: str | None = None
    events: int = 0
    version: int = 0  # bumped by every event that changes the plot

    def add(self, event: dict) -> None:
        self.events += 1
        kind = event.get("event")
        if kind == "start":
            self.start, self.ended, self.error = event, None, None
            step = event.get("step", 0)
            # A run resumed from an earlier checkpoint than we have seen: drop the steps it redoes.
            if self.train and self.train[-1][0] > step:
                self.train = [p for p in self.train if p[0] <= step]
                self.val = [p for p in self.val if p[0] <= step]
                self.version += 1
        elif kind == "step" and _finite(event.get("loss")):
            self.train.append((event["step"], event["loss"]))
            self.latest = {**self.latest, **event}
            self.version += 1
        elif kind == "validation":
            if _finite(event.get("val_loss")):
                self.val.append((event["step"], event["val_loss"]))
                self.best_val = min(self.best_val or math.inf, event["val_loss"])
                self.version += 1
            self.latest = {**self.latest, **{k: v for k, v in event.items() if k.startswith("val_")}}
            if event.get("sample") is not None:
                val = f" · validation {event['val_loss']:.4f} nats/char" if "val_loss" in event else ""
                self.samples.append(Sample(event["step"], event["sample"], f"step {event['step']}{val}"))
        elif kind == "checkpoint":
            self.last_checkpoint = event
        elif kind == "end":
            self.ended = event.get("reason", "ended")
            self.latest = {**self.latest, **{k: v for k, v in event.items() if k not in ("event", "time", "reason")}}
        elif kind == "error":
            self.error = event.get("message", "failed")

    # -- what the screen shows ---------------------------------------------------------------

    @property
    def config(self) -> dict:
        return self.start.get("config", {})

    @property
    def step(self) -> int:
        return int(self.latest.get("step", self.start.get("step", 0)))

    @property
    def progress(self) -> float:
        return float(self.latest.get("progress", 0.0))

    def eta(self) -> float | None:
        """Seconds of training left against the budget, from the run's own clock."""
        p, elapsed = self.progress, self.latest.get("elapsed")
        if elapsed is None or p <= 0:
            return None
        return max(elapsed * (1 - p) / p, 0.0)

    def series(self, bits: bool, limit: int) -> tuple[list, list]:
        scale = 1 / LN2 if bits else 1.0
        train = [(x, y * scale) for x, y in downsample(self.train, limit)]
        val = [(x, y * scale) for x, y in downsample(self.val, limit)]
        return train, val


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
