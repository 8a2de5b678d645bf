"""The grid's summary table: one row per configuration, each figure's mean ± spread over its seeds.

The cells are those of ``summary.md`` (``charforge.experiments.summary.markdown``, read back from
its Markdown), so that the screen and the file never disagree on a figure. Two columns are the
screen's own: a mark in the colour of the configuration's line, and how many of its seeds finished.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from charforge.tui.widgets.grid_plot import style

MARK = "━━"


def parse_markdown(table: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a Markdown table as ``markdown`` writes it: ``| a | b |`` lines, the second
    one the rule under the header."""
    lines = [line.strip() for line in table.splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip() for cell in line[1:-1].split("|")] for line in lines]
    return (cells[0], cells[2:]) if cells else ([], [])


def layout(table: str, configurations: list[str], done: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """The header and rows shown: the mark column first, "done" after "seeds". ``configurations``:
    the table's rows' names, in its order; ``done``: what the "done" column says of each."""
    header, rows = parse_markdown(table)
    at = header.index("seeds") + 1 if "seeds" in header else len(header)
    header = ["", *header[:at], "done", *header[at:]]
    shown = [[MARK, *row[:at], done.get(name, ""), *row[at:]] for name, row in zip(configurations, rows)]
    return header, shown


class GridTable(DataTable):
    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._header: list[str] | None = None
        self._shown: list[list[str]] | None = None
        self.configurations: list[str] = []

    def show(self, header: list[str], rows: list[list[str]], configurations: list[str],
             colours: dict[str, int]) -> None:
        """Show these rows (``layout``'s), one per configuration, redrawn only where they changed;
        the row under the cursor stays under it."""
        if header != self._header:
            self.clear(columns=True)
            self.add_columns(*header)
            self._header, self._shown = header, None
        if rows == self._shown:
            return
        cursor = self.cursor_row
        self.clear()
        numbers = header.index("done") + 1 if "done" in header else len(header)
        for name, row in zip(configurations, rows):
            cells = [Text(row[0], style=style(colours.get(name, 0)))]
            cells += [Text(cell, justify="right" if i >= numbers else "left") for i, cell in enumerate(row) if i]
            self.add_row(*cells, key=name)
        self._shown, self.configurations = rows, list(configurations)
        if rows:
            self.move_cursor(row=min(max(cursor, 0), len(rows) - 1), scroll=False)

    def row_cells(self) -> list[list[str]]:
        """The rows as plain text (tests read them)."""
        return [list(row) for row in self._shown or []]
