"""One generated sample, labelled with the checkpoint and settings that made it; it streams in."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class SampleCard(Static):
    def __init__(self, title: str, prompt: str, **kwargs):
        super().__init__(**kwargs)
        self.border_title = title
        self.prompt = prompt
        self.parts: list[str] = []
        self.done = False

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
