"""The Textual app: one default screen (training or sampling), a stylesheet, a lag probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from textual import events
from textual.app import App
from textual.screen import Screen

from charforge.tui.lag import LagProbe


class CharforgeApp(App[str]):
    CSS_PATH = "charforge.tcss"
    TITLE = "charforge"

    def __init__(self, make_screen: Callable[[], Screen], *, lag_log: str | Path | None = None,
                 probe_interval: float = 0.05):
        super().__init__()
        self._make_screen = make_screen
        self.lag = LagProbe(probe_interval)
        self._lag_log = lag_log

    def get_default_screen(self) -> Screen:
        return self._make_screen()

    def on_mount(self) -> None:
        self.set_interval(self.lag.interval, self.lag.tick)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            pressed_at = event.time
            self.call_after_refresh(self.lag.key_shown, pressed_at)
        await super().on_event(event)

    async def action_quit(self) -> None:
        """Quit through the training screen when there is one, so that a run it started saves."""
        for screen in reversed(self.screen_stack):
            if hasattr(screen, "request_quit"):
                screen.request_quit()
                return
        self.exit()

    def on_unmount(self) -> None:
        if self._lag_log:
            Path(self._lag_log).write_text(json.dumps(self.lag.summary(), indent=2) + "\n")
