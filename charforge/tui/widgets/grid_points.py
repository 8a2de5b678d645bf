"""Where the grid stands: the status of every point, and the grid's progress with the counts.

``PointList`` names each point with a mark of its status (finished, running with its progress,
stopped, failed, not started); ``GridProgress`` is the line beneath the plot: a progress bar for
the whole grid and how many points have each status.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar, Static

from charforge.tui.grid_history import STATUSES, GridHistory

MARKS = {"finished": ("✓", "green"), "running": ("▶", "bold yellow"), "stopped": ("■", "dark_orange"),
         "failed": ("✗", "bold red"), "not started": ("·", "dim")}


def detail(history: GridHistory, name: str, status: str) -> str:
    """What a point's line says after its name: its progress while it runs, else its last step."""
    step = history.step(name)
    if status == "running":
        return f"{history.progress(name):.0%}"
    if status == "not started" or step is None:
        return ""
    return f"{step:,}"


def counts_line(counts: dict[str, int]) -> str:
    """``8 points: 3 finished · 2 running · 3 not started`` (statuses no point has left out, but finished)."""
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts.get(s) or s == "finished"]
    return f"{total} point{'s' if total != 1 else ''}: " + " · ".join(parts)


class PointList(Static):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple | None = None
        self._last: tuple[GridHistory, dict[str, str]] | None = None

    def show(self, history: GridHistory, statuses: dict[str, str]) -> None:
        """One line per point, in the grid's order, redrawn only when a line changed."""
        self._last = (history, statuses)
        width = max(self.content_size.width, 20)
        lines = tuple((statuses[p.name], p.name, detail(history, p.name, statuses[p.name])) for p in history.points)
        if (width, lines) == self._shown:
            return
        self._shown = (width, lines)
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (status, name, more) in enumerate(lines):
            mark, colour = MARKS.get(status, ("?", ""))
            room = width - 2 - (len(more) + 1 if more else 0)
            shown = name if len(name) <= room else name[:max(room - 1, 0)] + "…"
            text.append(("\n" if i else "") + mark + " ", style=colour)
            text.append(shown.ljust(room), style="dim" if status == "not started" else "")
            if more:
                text.append(" " + more, style=colour)
        self.update(text)

    def on_resize(self) -> None:
        if self._last is not None:
            self.show(*self._last)

    @property
    def text(self) -> str:
        """What the list shows, as plain text (tests read it)."""
        return str(self.render())


class GridProgress(Horizontal):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple[float, str] | None = None

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=100, show_eta=False)
        yield Label("", id="counts")

    def show(self, history: GridHistory, counts: dict[str, int]) -> None:
        shown = (round(history.overall() * 100, 1), counts_line(counts))
        if shown == self._shown:
            return
        if self._shown is None or shown[0] != self._shown[0]:
            self.query_one(ProgressBar).update(progress=shown[0])
        self._shown = shown
        self.query_one("#counts", Label).update(shown[1])
