"""The grid's loss plot: one line per configuration (the mean over its seeds), in colours of its own.

It is the training screen's :class:`LossPlot` (built in a thread, served as lines) drawing other
lines. The colours are 256-colour codes, so that the summary table beneath can mark each
configuration's row in its line's colour (``style``) and the two read together.
"""

from __future__ import annotations

from charforge.tui.widgets.loss_plot import LossPlot

# Told apart on dark and light backgrounds alike; a grid with more configurations reuses them.
PALETTE = (39, 208, 41, 170, 196, 178, 44, 99, 130, 250)
LEGEND_MOST = 8  # more lines than this and the legend would hide the plot: the table's marks tell them apart
X_AXES = {"step": "step", "elapsed": "seconds"}


def colour(index: int) -> int:
    """The plotext colour of the ``index``-th configuration."""
    return PALETTE[index % len(PALETTE)]


def style(code: int) -> str:
    """The Rich style of a plotext colour code."""
    return f"color({code})"


class GridPlot(LossPlot):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.curves: dict[str, list[tuple[float, float]]] = {}
        self.colours: dict[str, int] = {}

    def show_curves(self, curves: dict[str, list], colours: dict[str, int], unit: str, x: str = "step") -> None:
        """New lines (configuration -> its points) to draw at the next ``redraw``, against ``x``
        (``step`` or ``elapsed``)."""
        self.curves, self.colours, self.unit = curves, colours, unit
        self.xlabel, self.whole_x = X_AXES[x], x == "step"
        self.legend = len(curves) <= LEGEND_MOST
        self._wanted += 1

    def lines(self) -> list[tuple[str, list, object]]:
        return [(name, points, self.colours.get(name, colour(0))) for name, points in self.curves.items()]
