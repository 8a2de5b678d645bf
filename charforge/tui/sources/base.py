"""The interface every event source offers the training screen."""

from __future__ import annotations

from pathlib import Path


class EventSource:
    """A source of run events. The base offers no controls; subclasses add what they can do.

    ``poll`` is called on the UI's event loop a few times a second and must not block.
    """

    owns_run = False  # True: the TUI started this run, so quitting stops (and saves) it
    can_control = False  # pause, resume and stop work
    can_detach = False  # the run can go on without the UI
    run_dir: Path | None = None

    @property
    def alive(self) -> bool:
        """A training run this source controls is running now."""
        return False

    def start(self) -> None:
        """Begin (the screen is mounted)."""

    def poll(self) -> list[dict]:
        """The events that arrived since the last call, oldest first."""
        return []

    def pause(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        """Leave the run going when the UI closes."""

    def close(self) -> None:
        """The UI is closing: a run the TUI owns is asked to stop and save, unless detached."""

    def describe(self) -> str:
        return str(self.run_dir or "")
