"""The sampling screen: pick a checkpoint, type a prompt, watch the continuation stream in.

The model comes from an injected source (``charforge.tui.models``): ``choices()``, and
``load(choice)`` returning a model whose ``stream(prompt, settings, seed)`` yields characters.
Loading and generating run in thread workers; the text reaches the screen in small chunks.
:class:`SampleScreen` runs past 200 lines because a Textual screen holds its key bindings, their
actions and its workers as methods of one class; its knobs' ranges are ``tui/settings.py``'s.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Input, Select
from textual.worker import get_current_worker

from charforge.sampling.settings import Settings
from charforge.tui import settings as knobs
from charforge.tui.screens.loading import ModelScreen
from charforge.tui.widgets.knob import Knob
from charforge.tui.widgets.sample_card import SampleCard

KNOBS = (("temperature", "temperature"), ("top_k", "top-k"), ("top_p", "top-p"), ("length", "length"),
         ("seed", "seed"))
CHUNK_SECONDS = 0.02  # how often streamed text is handed to the screen


class SampleScreen(ModelScreen):
    BINDINGS = [
        Binding("up", "nudge('temperature', 1)", "Temp +", priority=True),
        Binding("down", "nudge('temperature', -1)", "Temp −", priority=True),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "regenerate", "Regenerate"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+y", "copy", "Copy"),
        Binding("ctrl+n", "inspect", "Inspect"),
        Binding("pageup", "scroll('up')", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll('down')", "Scroll down", show=False, priority=True),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    def __init__(self, models, settings: Settings | None = None, prompt: str = "", seed: int | None = None):
        """``seed`` None draws a fresh seed for every sample (each card shows the one it used)."""
        super().__init__()
        self.models = models
        self.settings = knobs.clamped(settings or knobs.DEFAULT)
        self.seed = seed
        self.model = None
        self.generating = False
        self.last_prompt: str | None = None
        self._initial_prompt = prompt
        self._pending: str | None = None  # a prompt submitted while the model was loading
        self._card: SampleCard | None = None
        self.choice = models.default

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="controls"):
            choices = self.models.choices()
            yield Select([(c, c) for c in choices], value=self.models.default, allow_blank=False,
                         id="checkpoint", classes="checkpoint-picker")
            for name, title in KNOBS:
                yield Knob(name, title, id=f"knob-{name}", classes="knob")
        yield VerticalScroll(id="history", can_focus=False)
        yield Input(value=self._initial_prompt, placeholder="a prompt; Enter generates (empty: start a new line)",
                    id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "charforge · sample"
        self.query_one("#history").border_title = "samples"
        self._show_settings()
        self.query_one("#prompt", Input).focus()
        self._load(self.models.default)

    # -- the model -----------------------------------------------------------------------------

    def _loaded(self, model) -> None:
        super()._loaded(model)
        if self._pending is not None:
            prompt, self._pending = self._pending, None
            self.generate(prompt)

    # -- settings ------------------------------------------------------------------------------

    def _show_settings(self) -> None:
        for name, _ in KNOBS:
            value = self.seed if name == "seed" else getattr(self.settings, name)
            self.query_one(f"#knob-{name}", Knob).set_value(knobs.shown(name, value))

    def check_action(self, action: str, parameters) -> bool | None:
        focused = self.focused
        if action == "nudge" and focused is not None and any(
                isinstance(node, Select) and node.expanded for node in focused.ancestors_with_self):
            return False  # up/down move through the open checkpoint list
        return True

    def action_nudge(self, name: str, steps: int) -> None:
        if name == "seed":
            self.seed = knobs.nudge_seed(self.seed, steps)
        else:
            self.settings = knobs.nudge(self.settings, name, steps)
        self._show_settings()

    @on(Knob.Nudged)
    def _knob_nudged(self, event: Knob.Nudged) -> None:
        self.action_nudge(event.setting, event.steps)

    # -- generating ----------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        self.generate(event.value)

    def action_regenerate(self) -> None:
        if self.last_prompt is not None:
            self.generate(self.last_prompt)

    def generate(self, prompt: str) -> None:
        if self.model is None:
            self._pending = prompt
            self.notify("the model is still loading; the sample starts when it is ready", timeout=3)
            return
        self._stop_generating()
        self.last_prompt = prompt
        known = self.model.known(prompt)
        if known != prompt:
            self.notify("characters the model never saw were left out of the prompt", timeout=4)
        settings = self.settings
        seed = self.seed if self.seed is not None else random.randrange(2**31)
        record = {**knobs.record(settings, seed), "checkpoint": self.choice}
        step = getattr(self.model, "step", None)
        if step is not None:
            record["step"] = step
        card = SampleCard(knobs.titles(self.model.name, settings, seed), known, record)
        self._card = card
        history = self.query_one("#history", VerticalScroll)
        history.mount(card)
        history.scroll_end(animate=False)
        self.generating = True
        self._stream(self.model, card, known, settings, seed)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _stream(self, model, card: SampleCard, prompt: str, settings: Settings, seed: int) -> None:
        worker = get_current_worker()
        buffer: list[str] = []
        last = time.monotonic()
        stopped, error = False, None
        try:
            for char in model.stream(prompt, settings, seed):
                if worker.is_cancelled:
                    stopped = True
                    break
                buffer.append(char)
                if time.monotonic() - last >= CHUNK_SECONDS:
                    self.app.call_from_thread(self._chunk, card, "".join(buffer))
                    buffer.clear()
                    last = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            error = exc
        self.app.call_from_thread(self._finished, card, "".join(buffer), stopped or worker.is_cancelled, error)

    def _chunk(self, card: SampleCard, text: str) -> None:
        card.append(text)
        self.query_one("#history", VerticalScroll).scroll_end(animate=False)

    def _finished(self, card: SampleCard, rest: str, stopped: bool, error: Exception | None) -> None:
        if rest:
            card.append(rest)
        card.finish(stopped)
        if card is self._card:
            self.generating = False
        if error is not None:
            self.notify(f"sampling failed: {error}", severity="error")
        self.query_one("#history", VerticalScroll).scroll_end(animate=False)

    def _stop_generating(self) -> bool:
        if not self.generating:
            return False
        self.workers.cancel_group(self, "generate")
        self.generating = False
        return True

    def action_stop(self) -> None:
        """Escape: stop the sample being generated; with none, go back to the screen below."""
        if not self._stop_generating() and len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    # -- keeping samples -----------------------------------------------------------------------

    def _latest(self) -> SampleCard | None:
        cards = self.query(SampleCard)
        return cards.last() if cards else None

    def action_save(self) -> None:
        card = self._latest()
        if card is None:
            self.notify("no sample yet", severity="warning")
            return
        folder = Path(self.models.save_dir)
        folder.mkdir(parents=True, exist_ok=True)
        n = 1 + sum(1 for _ in folder.glob("sample-*.txt"))
        path = folder / f"sample-{n:03d}.txt"
        path.write_text(card.text, encoding="utf-8")
        with open(folder / "samples.jsonl", "a", encoding="utf-8") as index:
            index.write(json.dumps({"file": path.name, "label": card.label, "prompt": card.prompt, **card.record,
                                    "stopped": "stopped" in str(card.border_subtitle or "")}) + "\n")
        self.notify(f"saved {path}")

    def action_copy(self) -> None:
        card = self._latest()
        if card is not None:
            self.app.copy_to_clipboard(card.text)
            self.notify("copied the latest sample to the clipboard")

    def action_inspect(self) -> None:
        """Open the inspect screen on this model and the latest sample (prompt and continuation)."""
        from charforge.tui.screens.inspect import InspectScreen

        card = self._latest()
        self.app.push_screen(InspectScreen(self.models, card.text if card else "", self.model, self.choice))

    def action_scroll(self, direction: str) -> None:
        history = self.query_one("#history", VerticalScroll)
        (history.scroll_page_up if direction == "up" else history.scroll_page_down)()
