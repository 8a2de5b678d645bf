"""A run's history as the training screen needs it, built from the events of its metrics.jsonl.

Pure Python (no Textual): ``add`` takes each event dict in order; the screen reads the series,
the latest figures and the samples, and redraws from a downsampled copy on a timer.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from charforge.display import finite

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
    validating: dict | None = None  # the "validation_start" event of a validation under way
    last_time: float | None = None  # the wall-clock time of the newest event that has one
    events: int = 0
    ignored: int = 0  # events of a kind this version does not know, or too damaged to read
    version: int = 0  # bumped by every event that changes the plot
    _clock: tuple[float, float] | None = None  # (elapsed, wall-clock time) of the newest anchor
    _eta: tuple[float, float] | None = None  # (seconds left, wall-clock time) of the last estimate

    def add(self, event: dict) -> None:
        """Take the next event; one this version cannot read is counted in ``ignored``, never raised."""
        self.events += 1
        try:
            known = readable(event) and self._add(event)
        except (TypeError, ValueError, KeyError, AttributeError):
            known = False
        if not known:
            self.ignored += 1
            return
        at = event.get("time")
        if finite(at):
            self.last_time = max(self.last_time or at, at)

    def _add(self, event: dict) -> bool:
        kind = event.get("event")
        if kind == "start":
            step = event.get("step", 0)
            if not finite(step):
                return False
            self.start, self.ended, self.error, self.validating = event, None, None, None
            # A run resumed from an earlier checkpoint than we have seen: drop the steps it redoes.
            if self.train and self.train[-1][0] > step:
                self.train = [p for p in self.train if p[0] <= step]
                self.val = [p for p in self.val if p[0] <= step]
                self.version += 1
            # The clock starts again from what the run had spent, not from the time since the last
            # step of the process before (a pause spends nothing).
            spent = 0.0 if not step else self.latest.get("elapsed")
            self._clock = (spent, event["time"]) if finite(spent) and finite(event.get("time")) else None
            self._eta = None
        elif kind == "step":
            if not (finite(event.get("loss")) and finite(event.get("step"))):
                return False
            self.train.append((event["step"], event["loss"]))
            self.latest = {**self.latest, **event}
            self.version += 1
            at = event.get("time")
            if finite(event.get("elapsed")) and finite(at):
                self._clock = (event["elapsed"], at)
                eta = event["eta"] if finite(event.get("eta")) else self._extrapolated()
                self._eta = (eta, at) if eta is not None else None
        elif kind == "validation_start":
            self.validating = event
        elif kind == "validation":
            step = event.get("step", self.step)
            if not finite(step):
                return False
            self.validating = None
            val = event.get("val_loss")
            if finite(val):
                self.val.append((step, val))
                # the run judges its best on the fixed sample, which a final validation reports apart
                judged = event.get("sample_loss") if finite(event.get("sample_loss")) else val
                self.best_val = min(self.best_val or math.inf, judged)
                self.version += 1
            self.latest = {**self.latest, **{k: v for k, v in event.items() if k.startswith("val_") and finite(v)}}
            if isinstance(event.get("sample"), str):
                shown = f" · validation {val:.4f} nats/char" if finite(val) else ""
                self.samples.append(Sample(step, event["sample"], f"step {step}{shown}"))
        elif kind == "checkpoint":
            self.last_checkpoint = event
        elif kind == "end":
            self.ended, self.validating = str(event.get("reason", "ended")), None
            self.latest = {**self.latest, **{k: v for k, v in event.items() if k not in ("event", "time", "reason")}}
        elif kind == "error":
            self.error, self.validating = str(event.get("message", "failed")), None
        else:
            return False
        return True

    # -- what the screen shows ---------------------------------------------------------------

    @property
    def config(self) -> dict:
        config = self.start.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def step(self) -> int:
        step = self.latest.get("step", self.start.get("step", 0))
        return int(step) if finite(step) else 0

    @property
    def progress(self) -> float:
        progress = self.latest.get("progress")
        return float(progress) if finite(progress) else 0.0

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds of training; with ``now`` (the wall clock, for a run still going) it moves on
        from the last step's figure by the time passed since that step was written."""
        if now is not None and self._clock is not None:
            spent, at = self._clock
            return spent + max(now - at, 0.0)
        value = self.latest.get("elapsed")
        return value if finite(value) else None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: the run's own estimate (or one from its progress), counted down from when
        it was made when ``now`` is given."""
        if self._eta is None:
            return self._extrapolated()
        left, at = self._eta
        return max(left - (max(now - at, 0.0) if now is not None else 0.0), 0.0)

    def _extrapolated(self) -> float | None:
        p, elapsed = self.progress, self.latest.get("elapsed")
        if not finite(elapsed) or p <= 0:
            return None
        return max(elapsed * (1 - p) / p, 0.0)

    def series(self, bits: bool, limit: int) -> tuple[list, list]:
        scale = 1 / LN2 if bits else 1.0
        train = [(x, y * scale) for x, y in downsample(self.train, limit)]
        val = [(x, y * scale) for x, y in downsample(self.val, limit)]
        return train, val


def readable(event) -> bool:
    """Whether every number in ``event``, nested ones too, can be shown: an integer past a float's
    range (a hand-edited or damaged line) stops whatever formats it, so the event is not taken."""
    todo = [event]
    while todo:  # a loop, not recursion: a line may nest as deep as JSON allows
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, int) and abs(value) > sys.float_info.max:
            return False
    return True
