"""Progress against the run's budget, with the time left estimated from the run's own clock."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from charforge.display import amount, clock
from charforge.tui.history import RunHistory


def budget(config: dict) -> str:
    parts = [amount(config[k], k.removesuffix("s")) for k in ("steps", "epochs", "minutes")
             if isinstance(config.get(k), (int, float)) and config[k]]
    return "budget " + " or ".join(parts) if parts else ""


def doing(history: RunHistory) -> str:
    """What the run is busy with when it is not a training step: a validation."""
    if history.validating is None:
        return ""
    return "validating (all held-out text)" if history.validating.get("full") is True else "validating"


class RunProgress(Horizontal):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple[float, str] | None = None

    def compose(self) -> ComposeResult:
        yield ProgressBar(total=100, show_eta=False)
        yield Label("", id="eta")

    def show(self, history: RunHistory, note: str = "", now: float | None = None) -> None:
        """``now``: the wall-clock time to show the run's clock and ETA at (None: as last written).
        Called a few times a second; only what changed is redrawn."""
        progress = round(history.progress * 100, 1)
        elapsed = history.elapsed(now)
        done = history.ended is not None and history.progress >= 1
        parts = [f"elapsed {clock(elapsed)}" if elapsed is not None else "",
                 "" if done else f"ETA {clock(history.eta(now))}", doing(history), budget(history.config), note]
        shown = (progress, " · ".join(p for p in parts if p))
        if shown == self._shown:
            return
        if self._shown is None or progress != self._shown[0]:
            self.query_one(ProgressBar).update(progress=progress)
        self._shown = shown
        self.query_one("#eta", Label).update(shown[1], layout=False)
