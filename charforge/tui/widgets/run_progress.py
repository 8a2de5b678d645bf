"""Progress against the run's budget, with the time left estimated from the run's own clock."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from charforge.tui.format import clock
from charforge.tui.history import RunHistory


def budget(config: dict) -> str:
    parts = [f"{config[k]:g} {k}" for k in ("steps", "epochs", "minutes") if config.get(k)]
    return "budget " + " or ".join(parts) if parts else ""


class RunProgress(Horizontal):
    def compose(self) -> ComposeResult:
        yield ProgressBar(total=100, show_eta=False)
        yield Label("", id="eta")

    def show(self, history: RunHistory, note: str = "") -> None:
        self.query_one(ProgressBar).update(progress=round(history.progress * 100, 1))
        elapsed = history.latest.get("elapsed")
        done = history.ended is not None and history.progress >= 1
        parts = [f"elapsed {clock(elapsed)}" if elapsed is not None else "",
                 "" if done else f"ETA {clock(history.eta())}", budget(history.config), note]
        self.query_one("#eta", Label).update(" · ".join(p for p in parts if p), layout=False)
