"""What the model made of one character: its surprisal, what it expected there, and a unit's value."""

from __future__ import annotations

from rich.bar import Bar
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from charforge.tui.widgets.inspect_text import glyph

BAR_WIDTH = 24


def shown(char: str) -> str:
    """A character as the panel names it: quoted, with a space and invisible ones made visible."""
    return "'␣'" if char == " " else f"'{glyph(char)}'"


class Predictions(Static):
    """The panel under the coloured text, about the character under its cursor."""

    def show(self, inspection, position: int, unit: tuple[int, str, int] | None) -> None:
        """``inspection`` at ``position``; ``unit`` (layer, trace name, unit) adds that unit's value."""
        if inspection is None or not len(inspection):
            self.update(Text("nothing inspected yet: type or paste a text above", style="italic"))
            return
        char = inspection.text[position]
        head = Text()
        head.append(shown(char), style="bold")
        head.append(f"  character {position + 1:,} of {len(inspection):,}  ·  ")
        head.append(f"{float(inspection.bits[position]):.2f} bits", style="bold")
        if unit is not None:
            layer, name, index = unit
            head.append(f"  ·  layer {layer} · {name} · unit {index} = ")
            head.append(f"{float(inspection.unit(layer, index, name)[position]):+.3f}", style="bold")
        table = Table.grid(padding=(0, 1))
        table.add_column(width=4)
        table.add_column(justify="right", width=6)
        table.add_column(width=BAR_WIDTH)
        for expected, p in inspection.predictions(position):
            mark = "bold reverse" if expected == char else ""
            table.add_row(Text(shown(expected), style=mark), f"{p:.3f}", Bar(1.0, 0.0, p, width=BAR_WIDTH))
        self.update(Group(head, Text("expected here:", style="dim"), table))
