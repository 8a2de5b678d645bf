"""A text coloured character by character (by surprisal or by a unit's value), with a cursor.

The colours come in once per inspection (or view) as one style per character, bucketed into a
small palette with tensor operations; the widget wraps the text into lines once per text and width
and draws only the lines on screen (Textual's line API), so a long text stays quick to move over.
"""

from __future__ import annotations

from bisect import bisect_right

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.color import Color, Gradient
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from charforge.inspection.extract import SURPRISAL_TOP

LEVELS = 16  # colours per palette
SYMBOLS = {"\n": "↵", "\t": "→"}  # how characters without a glyph of their own are drawn
UNSHOWN = "·"  # any other character that prints as nothing
CURSOR = Style(reverse=True, bold=True, underline=True)


def _palette(*stops: str) -> list[Style]:
    gradient = Gradient(*((i / (len(stops) - 1), Color.parse(c)) for i, c in enumerate(stops)), quality=LEVELS)
    colours = [gradient.get_color(i / (LEVELS - 1)) for i in range(LEVELS)]
    return [Style(bgcolor=c.rich_color, color=c.get_contrast_text(1.0).rich_color) for c in colours]


SURPRISAL = _palette("#203a20", "#c8b400", "#d02020")  # calm, then yellow, then red
DIVERGING = _palette("#2050d0", "#303030", "#d03020")  # negative blue, zero grey, positive red


def surprisal_styles(bits) -> list[Style]:
    """One style per character for surprisal ``bits`` (a tensor): hotter the more surprising."""
    buckets = (bits / SURPRISAL_TOP).clamp(0, 1).mul(LEVELS - 1).round().long().tolist()
    return [SURPRISAL[b] for b in buckets]


def unit_styles(values) -> tuple[list[Style], float]:
    """One style per character for a unit's ``values`` (a tensor), scaled by their largest
    magnitude so that a quiet unit still shows its pattern; returns the styles and that scale."""
    scale = float(values.abs().max()) if len(values) else 0.0
    unit = values / scale if scale > 0 else values * 0
    buckets = unit.clamp(-1, 1).add(1).mul((LEVELS - 1) / 2).round().long().tolist()
    return [DIVERGING[b] for b in buckets], scale


def glyph(char: str) -> str:
    """The single visible glyph that stands for ``char`` in the coloured text."""
    shown = SYMBOLS.get(char, char if char.isprintable() else UNSHOWN)
    return shown if cell_len(shown) else UNSHOWN


class InspectText(ScrollView, can_focus=True, inherit_bindings=False):
    """The coloured text; left/right move the cursor, which it reports with :class:`Moved`."""

    BINDINGS = [
        Binding("left", "move(-1)", "Back", show=False),
        Binding("right", "move(1)", "Forward", show=False),
        Binding("ctrl+left", "move(-10)", "Back 10", show=False),
        Binding("ctrl+right", "move(10)", "Forward 10", show=False),
        Binding("home", "move_to(0)", "Start", show=False),
        Binding("end", "move_to(-1)", "End", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
    ]

    class Moved(Message):
        """The cursor is now on character ``position``."""

        def __init__(self, position: int):
            super().__init__()
            self.position = position

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.text = ""
        self.cursor = 0
        self._glyphs: list[str] = []
        self._widths: list[int] = []
        self._styles: list[Style] = []
        self._starts: list[int] = [0]  # where each wrapped line begins
        self._wrapped_at = -1

    def show(self, text: str, styles: list[Style]) -> None:
        """Show ``text`` with one style per character; the cursor stays where it was, if it can."""
        if text != self.text:
            self.text = text
            self._glyphs = [glyph(c) for c in text]
            self._widths = [cell_len(g) for g in self._glyphs]
            self._wrapped_at = -1
        self._styles = styles
        self._rewrap()
        self.move_to(min(self.cursor, max(len(text) - 1, 0)), force=True)

    def recolour(self, styles: list[Style]) -> None:
        """The same text in other colours (another view)."""
        self._styles = styles
        self.refresh()

    def _rewrap(self) -> None:
        width = max(self.scrollable_content_region.width, 1)
        if width == self._wrapped_at:
            return
        starts, used = [0], 0
        for i, (char, w) in enumerate(zip(self.text, self._widths)):
            if used + w > width and i > starts[-1]:
                starts.append(i)
                used = 0
            used += w
            if char == "\n" and i + 1 < len(self.text):
                starts.append(i + 1)
                used = 0
        self._starts, self._wrapped_at = starts, width
        self.virtual_size = Size(width, len(starts))
        self.refresh()

    def on_resize(self) -> None:
        self._rewrap()
        self._scroll_to_cursor()

    def _line_of(self, position: int) -> int:
        return bisect_right(self._starts, position) - 1

    def _scroll_to_cursor(self) -> None:
        row, height = self._line_of(self.cursor), self.scrollable_content_region.height
        top = self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif height and row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False)

    def move_to(self, position: int, force: bool = False) -> None:
        """Put the cursor on ``position`` (negative counts from the end) and say so."""
        if not self.text:
            self.cursor = 0
            self.refresh()
            return
        position = position % len(self.text) if position < 0 else min(position, len(self.text) - 1)
        if position == self.cursor and not force:
            return
        self.cursor = position
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.Moved(position))

    def action_move(self, steps: int) -> None:
        self.move_to(max(self.cursor + steps, 0))

    def action_move_to(self, position: int) -> None:
        self.move_to(position)

    def action_page(self, pages: int) -> None:
        row = self._line_of(self.cursor) + pages * max(self.scrollable_content_region.height - 1, 1)
        self.move_to(self._starts[min(max(row, 0), len(self._starts) - 1)])

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        row = None if offset is None else self.scroll_offset.y + offset.y
        if row is None or not self.text or row >= len(self._starts):
            return
        position, x = self._starts[row], 0
        end = self._starts[row + 1] if row + 1 < len(self._starts) else len(self.text)
        while position < end - 1 and x + self._widths[position] <= offset.x:
            x += self._widths[position]
            position += 1
        self.focus()
        self.move_to(position)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        row = self.scroll_offset.y + y
        if row >= len(self._starts) or not self.text:
            return Strip.blank(width, base)
        start = self._starts[row]
        end = self._starts[row + 1] if row + 1 < len(self._starts) else len(self.text)
        segments = [Segment(self._glyphs[i], base + self._styles[i] + CURSOR if i == self.cursor
                            else base + self._styles[i]) for i in range(start, end)]
        return Strip(segments).simplify().extend_cell_length(width, base)
