"""An :class:`~charforge.inspection.extract.Inspection` as rich renderables for the terminal: the text
coloured character by character (surprisal on a scale from calm to hot, a unit on a diverging
blue-grey-red scale), its legend, and small tables of the most surprising spans, the units that
track each feature, gate saturation, a time cell's clock and the predictions at each position.
"""

from __future__ import annotations

import unicodedata

from rich.color import Color
from rich.style import Style
from rich.table import Table
from rich.text import Span, Text
from torch import Tensor

from charforge.inspection.extract import LEFT, RIGHT, SURPRISAL_TOP, Inspection, colour_range, unit_label

LEVELS = 24  # colours a scale is cut into: runs of one colour are one span, so long texts stay quick
HOT = [(0.0, (18, 28, 58)), (0.35, (110, 40, 120)), (0.7, (230, 90, 45)), (1.0, (255, 236, 130))]
DIVERGING = [(0.0, (40, 90, 210)), (0.5, (205, 205, 205)), (1.0, (205, 45, 40))]


def _palette(anchors: list[tuple[float, tuple[int, int, int]]]) -> list[Style]:
    """``LEVELS`` background styles along the piecewise-linear scale through ``anchors``, each with
    the foreground (black or white) that reads best on it."""
    styles = []
    for level in range(LEVELS):
        x = level / (LEVELS - 1)
        (x0, c0), (x1, c1) = next((a, b) for a, b in zip(anchors, anchors[1:]) if x <= b[0])
        w = (x - x0) / (x1 - x0)
        rgb = tuple(round(p + (q - p) * w) for p, q in zip(c0, c1))
        light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140
        styles.append(Style(color="black" if light else "white", bgcolor=Color.from_rgb(*rgb)))
    return styles


_HOT, _DIVERGING = _palette(HOT), _palette(DIVERGING)


def visible(char: str) -> str:
    """How one character is drawn: a tab as an arrow, other control and format characters as a
    visible symbol or code (a line break is handled by :func:`coloured`)."""
    if char == "\t":
        return "→"
    if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
        code = ord(char)
        return chr(0x2400 + code) if code < 0x20 else "␡" if code == 0x7F else f"\\u{code:04x}"
    return char


def coloured(text: str, values: Tensor, low: float, high: float, scale: str = "surprisal") -> Text:
    """``text`` with each character's background coloured by its value, from ``low`` to ``high``
    (clamped) on the ``surprisal`` or the ``diverging`` scale. A line break is a coloured space
    before the break, so its value shows and the lines stay as they were."""
    palette = _HOT if scale == "surprisal" else _DIVERGING
    span = max(high - low, 1e-12)
    levels = ((values.double() - low) / span).clamp(0, 1).mul(LEVELS - 1).round().long().tolist()
    pieces, spans, at, run_start = [], [], 0, 0
    for i, char in enumerate(text):
        shown = " \n" if char == "\n" else visible(char)
        if i and levels[i] != levels[i - 1]:
            spans.append(Span(run_start, at, palette[levels[i - 1]]))
            run_start = at
        pieces.append(shown)
        at += len(shown)
    if text:
        spans.append(Span(run_start, at, palette[levels[-1]]))
    return Text("".join(pieces), spans=spans)


def surprisal(inspection: Inspection) -> tuple[Text, Text]:
    """The text coloured by its surprisal in bits, and the scale's legend."""
    return (coloured(inspection.text, inspection.bits, 0.0, SURPRISAL_TOP, "surprisal"),
            legend(0.0, SURPRISAL_TOP, "surprisal", "bits"))


def activation(inspection: Inspection, layer: int, unit: int, name: str = "h") -> tuple[Text, Text]:
    """The text coloured by one unit's value, and the legend: a gate or openness on [0, 1]; a
    state on [-1, 1], or ±its largest size where it goes beyond (an LSTM's cell state may)."""
    values = inspection.unit(layer, unit, name)
    low, high = colour_range(name, values)
    return (coloured(inspection.text, values, low, high, "diverging"),
            legend(low, high, "diverging", unit_label(layer, name, unit)))


def legend(low: float, high: float, scale: str = "surprisal", label: str = "bits") -> Text:
    """One line: the scale's colours from ``low`` to ``high``, labelled at its ends and middle."""
    palette = _HOT if scale == "surprisal" else _DIVERGING
    out = Text(f"{label}: {low:g} ")
    for style in palette:
        out.append(" ", style)
    out.append(f" {high:g}{'+' if scale == 'surprisal' else ''}  (middle {(low + high) / 2:g})")
    return out


def summary(inspection: Inspection) -> str:
    """The text's bits per character, and its length."""
    return f"{inspection.bits_per_char:.4f} bits per character over {len(inspection):,} characters"


def _quoted(text: str) -> str:
    """A stretch of text on one table row: line breaks as arrows."""
    return "".join("↵" if c == "\n" else visible(c) for c in text)


def _char(char: str) -> str:
    """One character alone in a table cell: a space shown too."""
    return "␣" if char == " " else _quoted(char)


def spans_table(inspection: Inspection, count: int = 5, width: int = 8) -> Table:
    """The most surprising stretches of the text, with what the model expected at their worst
    character. The text's cells are :class:`~rich.text.Text`, never read as markup, as in every table here."""
    table = Table("position", "text", "bits/char", "worst", "expected there", title="Most surprising spans")
    for start, end, mean in inspection.surprising_spans(count, width):
        worst = inspection.peak(start, end)
        expected = ", ".join(f"{_char(c)} {p:.0%}" for c, p in inspection.predictions(worst, 3))
        table.add_row(f"{start}-{end}", Text(_quoted(inspection.text[start:end])), f"{mean:.2f}",
                      Text(_char(inspection.text[worst])), Text(expected))
    return table


def find_table(found: dict[str, list[tuple[int, str, int, float]]]) -> Table:
    """The units that track each feature best, with their correlations."""
    table = Table("feature", "unit (layer:unit:name)", "correlation", title="Units that track the text's features")
    for feature, units in found.items():
        if not units:
            table.add_row(Text(feature), "(constant over this text)", "")
        for rank, (layer, name, unit, r) in enumerate(units):
            table.add_row(Text(feature if not rank else ""), unit_label(layer, name, unit), f"{r:+.3f}")
    return table


def gates_table(inspection: Inspection, left: float = LEFT, right: float = RIGHT) -> Table:
    """Per gate: the mean fraction of the text its units spend left-saturated (below ``left``) and
    right-saturated (above ``right``), and how many units are so more than half the time."""
    table = Table("gate", "units", f"mean left (< {left:g})", f"mean right (> {right:g})", "mostly left",
                  "mostly right", title="Gate saturation")
    for key, (lefts, rights) in inspection.saturation(left, right).items():
        table.add_row(key, str(len(lefts)), f"{float(lefts.mean()):.1%}", f"{float(rights.mean()):.1%}",
                      str(int((lefts > 0.5).sum())), str(int((rights > 0.5).sum())))
    return table


def clock_table(inspection: Inspection) -> Table:
    """Per time layer: the learned periods and open ratios (min, median, max)."""
    table = Table("layer", "parameter", "min", "median", "max", title="Time gates")
    for layer, clock in inspection.clocks.items():
        for name in ("period", "open_ratio"):
            if name in clock:
                values = clock[name].double()
                table.add_row(str(layer), name, f"{float(values.min()):.4g}", f"{float(values.median()):.4g}",
                              f"{float(values.max()):.4g}")
    return table


def predictions_table(inspection: Inspection, start: int = 0, end: int | None = None) -> Table:
    """Per position in [start, end): the character, its surprisal and what the model expected there."""
    table = Table("position", "char", "bits", "predictions (likeliest first)", title="Predictions")
    bits = inspection.bits
    for i in range(start, len(inspection) if end is None else end):
        expected = "  ".join(f"{_char(c)} {p:.1%}" for c, p in inspection.predictions(i))
        table.add_row(str(i), Text(_char(inspection.text[i])), f"{float(bits[i]):.2f}", Text(expected))
    return table
