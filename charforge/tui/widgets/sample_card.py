"""One generated sample, labelled with the checkpoint and settings that made it; it streams in.

The label is the longest of its forms that fits the card's border, so that a narrow screen still
shows the seed (see ``tui/settings.titles``).
"""

from __future__ import annotations

from typing import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

BORDER_LABEL_MARGIN = 4  # border cells a title cannot use: the corners and a space either side


class SampleCard(Static):
    def __init__(self, title: str | Sequence[str], prompt: str, record: dict | None = None, **kwargs):
        """``title``: the label, or its forms from the fullest to the shortest; ``record``: what made
        the sample, as fields (settings, seed, checkpoint) for the saved index."""
        super().__init__(**kwargs)
        self.titles = [title] if isinstance(title, str) else list(title)
        self.label = self.titles[0]
        self.border_title = self.label
        self.record = dict(record or {})
        self.prompt = prompt
        self.parts: list[str] = []
        self.done = False

    def on_resize(self) -> None:
        room = self.size.width - BORDER_LABEL_MARGIN
        self.border_title = next((t for t in self.titles if cell_len(t) <= room), self.titles[-1])

    @property
    def continuation(self) -> str:
        return "".join(self.parts)

    @property
    def text(self) -> str:
        return self.prompt + self.continuation

    def on_mount(self) -> None:
        self._show()

    def append(self, chunk: str) -> None:
        self.parts.append(chunk)
        self._show()

    def finish(self, stopped: bool) -> None:
        self.done = True
        n = len(self.continuation)
        self.border_subtitle = f"stopped after {n} chars" if stopped else f"{n} chars"
        self.set_class(stopped, "-stopped")
        self._show()

    def _show(self) -> None:
        body = Text()
        body.append(self.prompt, style="bold")
        body.append(self.continuation)
        if not self.done:
            body.append("▌", style="blink")
        self.update(body)
