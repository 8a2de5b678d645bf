"""What the sampling and inspect screens share: a model from the injected source, loaded in a
thread worker when the screen opens or another checkpoint is picked in its ``.checkpoint-picker``."""

from __future__ import annotations

from textual import on, work
from textual.screen import Screen
from textual.widgets import Select
from textual.worker import get_current_worker


class ModelScreen(Screen):
    """A screen with ``models`` (the source), ``model`` (None while loading) and ``choice``; a
    subclass says what a loaded model starts in :meth:`_loaded`."""

    @on(Select.Changed, ".checkpoint-picker")
    def _checkpoint_changed(self, event: Select.Changed) -> None:
        if event.value != Select.NULL and event.value != self.choice:
            self._load(event.value)

    def _load(self, choice: str) -> None:
        self.model, self.choice = None, choice
        self.sub_title = f"loading {choice}…"
        self._load_worker(choice)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_worker(self, choice: str) -> None:
        try:
            model = self.models.load(choice)
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            self.app.call_from_thread(self._load_failed, choice, exc)
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._loaded, model)

    def _loaded(self, model) -> None:
        self.model = model
        self.sub_title = model.name

    def _load_failed(self, choice: str, exc: Exception) -> None:
        self.sub_title = f"could not load {choice}"
        self.notify(f"could not load {choice}: {exc}", severity="error", timeout=10, markup=False)
