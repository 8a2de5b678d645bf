"""The grid screen (``charforge watch runs/GRID``): a grid's loss curves together, its points and its table.

One line per configuration (the mean training loss over its seeds), every point's status beside
the plot, the grid's progress, and beneath, the summary table ``summary.md`` will hold, live. It
follows the grid read-only, from an injected source (``charforge.tui.sources.grid``) polled a few
times a second; the figures, the table and the plot are rebuilt on a slower timer, and only when
an event arrived. Quitting leaves the grid training.
"""

from __future__ import annotations

import time
from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header

from charforge.experiments.summary import markdown
from charforge.tui.grid_history import GridHistory, tally
from charforge.tui.sources.grid import GridSource
from charforge.tui.widgets.grid_plot import GridPlot, colour
from charforge.tui.widgets.grid_points import GridProgress, PointList
from charforge.tui.widgets.grid_table import GridTable, layout


class GridScreen(Screen):
    BINDINGS = [
        Binding("b", "toggle_bits", "Bits/nats"),
        Binding("t", "toggle_x", "Steps/seconds"),
        Binding("q", "quit", "Quit"),
    ]

    bits = reactive(False)
    x = reactive("step")  # what the plot's lines are drawn against: "step" or "elapsed" (seconds)

    def __init__(self, source: GridSource, *, poll_interval: float = 0.5, redraw_interval: float = 1.0,
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self.source = source
        self.history = GridHistory(source.grid)
        self.colours = {c: colour(i) for i, c in enumerate(self.history.configurations)}
        self._poll_interval, self._redraw_interval = poll_interval, redraw_interval
        self._clock = clock
        self._shown: tuple | None = None  # (history version, statuses) last shown in the panels
        self._plotted: tuple | None = None  # (history version, bits, x, width) last handed to the plot

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="grid-top"):
            yield GridPlot(id="grid-plot")
            with VerticalScroll(id="points"):
                yield PointList(id="point-list")
        yield GridProgress(id="grid-progress")
        yield GridTable(id="summary")
        yield Footer()

    def on_mount(self) -> None:
        grid, h = self.source.grid, self.history
        self.title = "charforge · watching a grid"
        seeds = len(grid.seeds)
        self.sub_title = (f"{self.source.describe()} · {grid.target}: {len(h.configurations)} configuration"
                          f"{'s' if len(h.configurations) != 1 else ''} × {seeds} seed{'s' if seeds != 1 else ''}")
        self._titles()
        self.query_one("#points").border_title = "points"
        self.query_one(GridTable).border_title = "summary: mean ± spread over seeds"
        self.source.start()
        self.poll()
        self.set_interval(self._poll_interval, self.poll)
        self.set_interval(self._redraw_interval, self.redraw)
        self.call_after_refresh(self.redraw)

    def poll(self) -> None:
        for name, events in self.source.poll().items():
            self.history.add(name, events)

    def redraw(self) -> None:
        """The slower timer: the panels where a point's events or status changed, then the plot."""
        h = self.history
        statuses = h.statuses(self._clock())
        if self._shown != (h.version, statuses):
            self._shown = (h.version, statuses)
            self.query_one(PointList).show(h, statuses)
            self.query_one(GridProgress).show(h, tally(statuses))
            summary = h.summary()
            names = [row["configuration"] for row in summary]
            done = {c: h.seeds_done(c, statuses) for c in names}
            header, rows = layout(markdown(summary, h.axes), names, done)
            self.query_one(GridTable).show(header, rows, names, self.colours)
        plot = self.query_one(GridPlot)
        width = plot.content_size.width
        if self._plotted != (h.version, self.bits, self.x, width):
            self._plotted = (h.version, self.bits, self.x, width)
            curves = h.curves(self.x, self.bits, limit=max(width, 40))
            plot.show_curves(curves, self.colours, "bits/char" if self.bits else "nats/char", self.x)
        plot.redraw()

    def _titles(self) -> None:
        unit = "bits" if self.bits else "nats"
        against = "step" if self.x == "step" else "seconds of training"
        self.query_one(GridPlot).border_title = f"training loss ({unit}/char) against {against}, mean over seeds"

    def watch_bits(self) -> None:
        if self.is_mounted:
            self._titles()
            self.call_after_refresh(self.redraw)

    def watch_x(self) -> None:
        if self.is_mounted:
            self._titles()
            self.call_after_refresh(self.redraw)

    def action_toggle_bits(self) -> None:
        self.bits = not self.bits

    def action_toggle_x(self) -> None:
        self.x = "elapsed" if self.x == "step" else "step"

    def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        """Nothing to stop: the grid is followed read-only, so quitting leaves at once."""
        self.app.exit(self.goodbye())

    def goodbye(self) -> str:
        counts = self.history.counts(self._clock())
        where = self.source.describe()
        if not counts["running"] or not where:
            return ""
        return (f"{where} goes on training ({counts['finished']} of {sum(counts.values())} points finished). "
                f"Follow it again: charforge watch {where}")

    def on_unmount(self) -> None:
        self.source.close()
