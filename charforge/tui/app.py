"""The Textual app: one default screen (training or sampling), a stylesheet, a lag probe.

The probe times the event loop (how late a 50 ms timer fires) and every key that runs an
action, from the key's arrival to the first screen update after the action ran.
"""

from __future__ import annotations

import json
import sys
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
        self._key: tuple[float, str] | None = None

    def get_default_screen(self) -> Screen:
        return self._make_screen()

    def on_mount(self) -> None:
        # The plot is built in a thread; handing the interpreter lock back to the event loop after
        # 1 ms instead of 5 cut the slowest key-to-screen times by a fifth (measured, 30 keys x 4).
        sys.setswitchinterval(0.001)
        self.set_interval(self.lag.interval, self.lag.tick)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded:
            self._key = (event.time, event.key)  # timed to the screen update after its action runs
        await super().on_event(event)

    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:
        done = await super().run_action(action, default_namespace, namespaces)
        if self._key is not None:
            pressed_at, key = self._key
            self._key = None
            self.call_after_refresh(self.lag.key_shown, pressed_at, key)
        return done

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
