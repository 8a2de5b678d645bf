"""A focusable setting shown as ``name value``: left/right (or -/+) step it, shift for ten steps.

Textual has no slider; a knob posts ``Knob.Nudged`` and the screen owns the value and its
clamping (``charforge.tui.settings``), then shows the result with ``set_value``.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static


class Knob(Static, can_focus=True):
    BINDINGS = [
        Binding("left,minus", "nudge(-1)", "Less", show=False),
        Binding("right,plus,equals_sign", "nudge(1)", "More", show=False),
        Binding("shift+left", "nudge(-10)", "Much less", show=False),
        Binding("shift+right", "nudge(10)", "Much more", show=False),
    ]

    class Nudged(Message):
        def __init__(self, name: str, steps: int):
            super().__init__()
            self.setting = name
            self.steps = steps

    def __init__(self, setting: str, title: str, **kwargs):
        super().__init__(**kwargs)
        self.setting = setting
        self.caption = title

    def set_value(self, shown: str) -> None:
        self.update(f"{self.caption} [b]{shown}[/b]")

    def action_nudge(self, steps: int) -> None:
        self.post_message(self.Nudged(self.setting, steps))
