"""The scrolling log of samples: one from each validation, and those asked for with "sample now"."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog


class SampleLog(RichLog):
    def __init__(self, **kwargs):
        super().__init__(wrap=True, markup=False, highlight=False, max_lines=2000, **kwargs)

    def add(self, title: str, text: str, style: str = "bold cyan") -> None:
        # Model output is shown as plain Text: a sample that happens to read "[red]" stays text.
        self.write(Text(f"── {title}", style=style))
        self.write(Text(text.rstrip("\n") or "(empty)"))

    def note(self, text: str, style: str = "bold red") -> None:
        self.write(Text(text, style=style))
