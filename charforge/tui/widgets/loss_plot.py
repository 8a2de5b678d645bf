"""The loss plot: train and validation loss against step, drawn with textual-plotext.

Building a plotext figure costs 15-60 ms of pure Python, and turning its text into lines
for the screen another 5-20 ms, too long for the event loop. So ``redraw`` builds both in a
thread worker from a downsampled copy of the history, and the widget serves the finished
lines (Textual's line API); nothing is built when nothing changed. The step axis gets ticks of
its own, at whole steps: plotext spaces its ticks evenly, which early in a run falls between steps.
A subclass draws other lines by overriding ``lines`` (the grid screen's, one per configuration).
"""

from __future__ import annotations

import math

from rich.text import Text
from textual import work
from textual.strip import Strip
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot


def integer_ticks(low: float, high: float, most: int) -> list[int]:
    """At most ``most`` whole numbers from ``low`` to ``high``, a round distance apart (1, 2 or 5 times
    a power of ten)."""
    first, last = math.ceil(low), math.floor(high)
    if last <= first:
        return [first if first <= high else round(low)]
    wanted = (last - first) / max(most - 1, 1)
    power = 1
    while True:
        spacing = next((f * power for f in (1, 2, 5) if f * power >= wanted), None)
        if spacing is not None:
            break
        power *= 10
    start = math.ceil(first / spacing) * spacing
    return list(range(start, last + 1, spacing)) or [first]


class LossPlot(PlotextPlot):
    xlabel = "step"
    whole_x = True  # ticks at whole numbers (steps); False leaves the ticks to plotext (seconds)
    legend = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.train: list[tuple[float, float]] = []
        self.val: list[tuple[float, float]] = []
        self.unit = "nats/char"
        self.builds = 0  # how many figures were built (tests read it)
        self._lines: list[Strip] | None = None
        self._wanted = 0  # bumped by every change of data or size
        self._drawn = -1
        self._building = False

    def show(self, train: list, val: list, unit: str) -> None:
        """New data to draw at the next ``redraw``."""
        self.train, self.val, self.unit = train, val, unit
        self._wanted += 1

    def on_resize(self) -> None:
        self._wanted += 1

    def lines(self) -> list[tuple[str, list, object]]:
        """(label, points, plotext colour) of each line to draw: here the train and validation loss."""
        return [("train", self.train, "cyan"), ("validation", self.val, "orange")]

    def redraw(self) -> None:
        """Build the figure in a thread if the data or the size changed since the last one."""
        width, height = self.content_size
        if self._building or self._drawn == self._wanted or width < 10 or height < 4:
            return
        lines = [(label, list(points), color) for label, points, color in self.lines() if points]
        if not lines:
            return
        self._building = True
        theme = self._get_plotext_theme_name(self.app.theme) if self.theme == "auto" else self.theme
        self._build(self._wanted, lines, (self.unit, self.xlabel, self.whole_x, self.legend), width, height, theme)

    @work(thread=True, group="plot", exit_on_error=False)
    def _build(self, wanted: int, lines: list, axes: tuple, width: int, height: int, theme: str) -> None:
        unit, xlabel, whole_x, legend = axes
        try:
            plt = Plot()
            plt.theme(theme)
            plt.plotsize(width, height)
            plt._set_size(width, height)  # as PlotextPlot.render does: plotsize alone does not stick
            for label, series, color in lines:
                plt.plot([p[0] for p in series], [p[1] for p in series], label=label if legend else None,
                         marker="braille", color=color)
            if whole_x:
                steps = [p[0] for _, series, _ in lines for p in series]
                room = len(str(int(max(steps)))) + 4  # columns per label, so that labels never touch
                ticks = integer_ticks(min(steps), max(steps), max(2, (width - 10) // room))
                plt.xticks(ticks, [str(t) for t in ticks])
            plt.xlabel(xlabel)
            plt.ylabel(unit)
            text = Text.from_ansi(plt.build())
        except Exception as exc:  # noqa: BLE001 - a plot that cannot be drawn must not take the UI down
            text = Text(f"(the plot could not be drawn: {exc})")
        console = self.app.console
        lines = [Strip(list(line.render(console, end=""))) for line in text.split("\n", allow_blank=True)]
        self.app.call_from_thread(self._built, wanted, lines)

    def _built(self, wanted: int, lines: list[Strip]) -> None:
        self._lines, self._drawn, self._building = lines, wanted, False
        self.builds += 1
        self.refresh()

    @property
    def text(self) -> str:
        """What the plot shows, as plain text."""
        return "\n".join(line.text for line in self._lines or [])

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if self._lines is None:
            line = Strip(list(Text("waiting for the first logged steps…", style="dim").render(self.app.console))) \
                if y == 0 else Strip.blank(width)
        else:
            line = self._lines[y] if y < len(self._lines) else Strip.blank(width)
        return line.crop_extend(0, width, self.rich_style)
