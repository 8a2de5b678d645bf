"""Where the grid screen's events come from: a grid (``charforge compare``'s directory), read-only.

The grid screen asks a source for the grid's definition and, a few times a second, for each point's
events since the last call. ``GridDirectory`` follows the points' own metrics.jsonl as they grow
(a point not started yet has none: it is read once it appears); tests bring a source of their own.
"""

from __future__ import annotations

from pathlib import Path

from charforge.experiments.grid import GRID_FILE, Grid
from charforge.runs.directory import METRICS
from charforge.tui.sources.tail import MetricsTail


def is_grid(path: str | Path) -> bool:
    """Whether ``path`` is a grid's directory (it holds a grid.json) or that grid.json itself."""
    path = Path(path)
    return (path / GRID_FILE).is_file() or (path.name == GRID_FILE and path.is_file())


class GridSource:
    """The interface: the grid, and the new events of its points. The base has none."""

    grid: Grid
    directory: Path | None = None

    def start(self) -> None:
        """Begin (the screen is mounted)."""

    def poll(self) -> dict[str, list[dict]]:
        """Point name -> the events it wrote since the last call, oldest first (points without any
        left out). Called on the UI's event loop: it must not block."""
        return {}

    def close(self) -> None:
        """The UI is closing. Nothing a grid source follows is stopped: the grid trains on."""

    def describe(self) -> str:
        return str(self.directory or "")


class GridDirectory(GridSource):
    """A grid directory: its grid.json, and a tail on every point's metrics.jsonl."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.directory = path.parent if path.name == GRID_FILE and path.is_file() else path
        self.grid = Grid.load(self.directory)  # CharforgeError, naming the folder, when unreadable
        self._tails = {p.name: MetricsTail(self.directory / p.name / METRICS) for p in self.grid.points()}

    def poll(self) -> dict[str, list[dict]]:
        out = {}
        for name, tail in self._tails.items():
            events = tail.read()
            if events:
                out[name] = events
        return out
