"""A grid's history as the grid screen needs it, built from the events of its points' metrics.jsonl.

Pure Python (no Textual, no torch): ``add`` takes a point's new events; the screen reads each
point's status, one loss curve per configuration (the mean over its seeds, as ``compare``'s own
plots draw it) and the summary table, which ``charforge.experiments.summary`` computes from the
same events, exactly as ``summary.md`` will have it once ``compare`` finishes.
"""

from __future__ import annotations


from charforge.display import finite
from charforge.experiments.curves import band
from charforge.experiments.grid import Grid
from charforge.experiments.summary import FINISHED, configurations, point_figures, timeline
from charforge.tui.history import LN2, downsample, readable

STATUSES = ("finished", "running", "stopped", "failed", "not started")  # in the order they are counted
STALE_AFTER = 600.0  # as the training screen's: a point silent this long (no end written) is taken for stopped


class _Recorded:
    """Stands in for a ``Run`` where ``point_figures`` reads one: the events already read."""

    def __init__(self, events: list[dict]):
        self._events = events

    def events(self) -> list[dict]:
        return self._events


def tally(statuses: dict[str, str]) -> dict[str, int]:
    """How many points have each status, every status listed (in STATUSES' order)."""
    return {status: sum(s == status for s in statuses.values()) for status in STATUSES}


class GridHistory:
    """Every point's events, its status, and what the screen draws from them."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.points = grid.points()
        self.axes = list(grid.axes)
        self.configurations = list(dict.fromkeys(p.configuration for p in self.points))
        self.events: dict[str, list[dict]] = {p.name: [] for p in self.points}
        self.last_time: dict[str, float | None] = {p.name: None for p in self.points}
        self.version = 0  # bumped by every new event
        self.ignored = 0  # events of no point of the grid, not events at all, or too damaged to read
        self._mark: dict[str, dict] = {}  # point name -> its last start, end or error event
        self._last_step: dict[str, dict] = {}  # point name -> its last step event
        # Figures and curves are recomputed only for points (and configurations) with new events.
        self._of = {p.name: p.configuration for p in self.points}
        self._rows: dict[str, dict] = {}  # point name -> its figures
        self._point_curves: dict[tuple[str, str], list] = {}  # (point name, x) -> its curve
        self._means: dict[tuple[str, str], list] = {}  # (configuration, x) -> its mean curve
        self._curves: dict[tuple, dict] = {}  # (x, bits, limit, version) -> the curves drawn last

    def add(self, name: str, events: list[dict]) -> None:
        """Take point ``name``'s next events, oldest first."""
        kept = self.events.get(name)
        if kept is None:
            self.ignored += len(events)
            return
        fresh = [e for e in events if isinstance(e, dict) and isinstance(e.get("event"), str) and readable(e)]
        self.ignored += len(events) - len(fresh)
        if not fresh:
            return
        kept.extend(fresh)
        for event in fresh:
            if event["event"] in ("start", "end", "error"):
                self._mark[name] = event
            elif event["event"] == "step":
                self._last_step[name] = event
            if finite(event.get("time")):
                self.last_time[name] = max(self.last_time[name] or event["time"], event["time"])
        self._rows.pop(name, None)
        for x in ("step", "elapsed"):
            self._point_curves.pop((name, x), None)
            self._means.pop((self._of[name], x), None)
        self.version += 1

    # -- points ---------------------------------------------------------------------------------

    def status(self, name: str, now: float | None = None) -> str:
        """One of STATUSES. ``now``: the wall clock, to tell a point that stopped writing (its process
        killed) from one that trains; None takes every point without an end for running."""
        last = self._mark.get(name)
        if last is None:
            return "running" if self.events[name] else "not started"
        if last["event"] == "error":
            return "failed"
        if last["event"] == "end":
            return "finished" if last.get("reason") in FINISHED else "stopped"
        at = self.last_time[name]
        if now is not None and at is not None and now - at > STALE_AFTER:
            return "stopped"
        return "running"

    def statuses(self, now: float | None = None) -> dict[str, str]:
        return {p.name: self.status(p.name, now) for p in self.points}

    def counts(self, now: float | None = None) -> dict[str, int]:
        """How many points have each status, every status listed (in STATUSES' order)."""
        return tally(self.statuses(now))

    def progress(self, name: str) -> float:
        """How far point ``name`` is through its budget, 0 to 1, from its last step's own figure."""
        if self.status(name) == "finished":
            return 1.0
        progress = self._last_step.get(name, {}).get("progress")
        return min(max(float(progress), 0.0), 1.0) if finite(progress) else 0.0

    def step(self, name: str) -> int | None:
        """The step point ``name`` logged last (its end's, once it ended), None before its first."""
        for event in (self._mark.get(name, {}), self._last_step.get(name, {})):
            if event.get("event") in ("end", "step") and finite(event.get("step")):
                return int(event["step"])
        return None

    def overall(self) -> float:
        """The grid's progress, 0 to 1: the mean of its points'."""
        return sum(self.progress(p.name) for p in self.points) / len(self.points) if self.points else 0.0

    # -- what the screen draws -------------------------------------------------------------------

    def rows(self) -> list[dict]:
        """One row of figures per point, in the grid's order (``point_figures``, recomputed only for
        points with new events); a point whose events cannot be read shows as ``unreadable``."""
        out = []
        for point in self.points:
            row = self._rows.get(point.name)
            if row is None:
                try:
                    row = point_figures(point, _Recorded(self.events[point.name]), self.grid.target_loss)
                except (KeyError, TypeError, ValueError, AttributeError, IndexError):
                    row = {"name": point.name, "configuration": point.configuration, "seed": point.seed,
                           **point.values, "status": "unreadable"}
                self._rows[point.name] = row
            out.append(row)
        return out

    def summary(self) -> list[dict]:
        """One row per configuration: the mean and spread of each figure over its seeds."""
        return configurations(self.rows(), self.axes)

    def curve(self, name: str, x: str = "step") -> list[tuple[float, float]]:
        """Point ``name``'s training loss (nats/char) against ``x`` (``step`` or ``elapsed``), a resumed
        run's redone steps counted once."""
        if (name, x) not in self._point_curves:
            try:
                kept = timeline(self.events[name])
            except (KeyError, TypeError):
                kept = self.events[name]
            self._point_curves[(name, x)] = [(e[x], e["loss"]) for e in kept
                                             if e["event"] == "step" and finite(e.get(x)) and finite(e.get("loss"))]
        return self._point_curves[(name, x)]

    def curves(self, x: str = "step", bits: bool = False, limit: int = 200) -> dict[str, list[tuple[float, float]]]:
        """Per configuration with logged steps, the mean training loss over its seeds against ``x``, in
        bits or nats per character, at most ``limit`` points (cached until the next event)."""
        key = (x, bits, limit, self.version)
        if key not in self._curves:
            scale = 1 / LN2 if bits else 1.0
            out = {}
            for configuration in self.configurations:
                if (configuration, x) not in self._means:
                    runs = [self.curve(p.name, x) for p in self.points if p.configuration == configuration]
                    self._means[(configuration, x)] = [(a, mean) for a, mean, _, _ in band(runs)]
                mean = self._means[(configuration, x)]
                if mean:
                    out[configuration] = [(a, b * scale) for a, b in downsample(mean, limit)]
            self._curves = {key: out}
        return self._curves[key]

    def seeds_done(self, configuration: str, statuses: dict[str, str]) -> str:
        """How many of a configuration's seeds finished (``1/2``), and how many train now, given every
        point's status (``statuses``)."""
        shown = [statuses[p.name] for p in self.points if p.configuration == configuration]
        running = shown.count("running")
        return f"{shown.count('finished')}/{len(shown)}" + (f" · {running} running" if running else "")
