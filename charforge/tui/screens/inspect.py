"""The inspect screen: type or paste a text, see it coloured by the model's surprise or by a unit.

The model comes from the sampling screen's source (``charforge.tui.models``), whose loaded models
also offer ``inspect(text)`` (an :class:`~charforge.inspection.extract.Inspection`). Inspecting runs
in a thread worker a moment after the text stops changing, and only the latest text's result is
shown. The views cycle: surprisal, then every unit of each layer's state (``h``, and ``c`` where
the cell has one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Select, Static, TextArea
from textual.worker import get_current_worker

from charforge.inspection.extract import SURPRISAL_TOP
from charforge.tui.screens.loading import ModelScreen
from charforge.tui.widgets.inspect_text import InspectText, surprisal_styles, unit_styles
from charforge.tui.widgets.predictions import Predictions

if TYPE_CHECKING:
    from charforge.inspection.extract import Inspection

DEBOUNCE = 0.3  # seconds the text must rest before it is inspected
SPANS = 10  # surprising spans that n steps through


def views(inspection: Inspection) -> list[tuple[int, str, int] | None]:
    """What the coloured text can show: None (surprisal), then (layer, state name, unit) for every
    unit of every state trace (a trace name without a dot: ``h``, ``c``), layer by layer."""
    out: list[tuple[int, str, int] | None] = [None]
    for layer in range(inspection.layers):
        for name in inspection.names(layer):
            if "." not in name:
                out += [(layer, name, unit) for unit in range(inspection.trace(layer, name).shape[1])]
    return out


class InspectScreen(ModelScreen):
    """A text to inspect, the text coloured by the view chosen, and the panel for its cursor."""

    BINDINGS = [
        Binding("down,right_square_bracket", "view(1)", "Next view"),
        Binding("up,left_square_bracket", "view(-1)", "Previous view"),
        Binding("s", "surprisal", "Surprisal"),
        Binding("n", "next_surprise", "Next surprise"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+q", "app.quit", "Quit", priority=True),
    ]

    def __init__(self, models, text: str = "", model=None, choice: str | None = None):
        """``model``: one already loaded from ``models`` (as ``choice``), which spares loading it again."""
        super().__init__()
        self.models = models
        self.model = model
        self.choice = choice or models.default
        self.result: Inspection | None = None
        self._initial_text = text
        self._views: list[tuple[int, str, int] | None] = [None]
        self._view = 0
        self._asked = 0  # the number of the latest inspection asked for; older results are dropped
        self._dropped = 0
        self._spans: list[int] = []
        self._span = -1
        self._timer = None
        self._surprisal_styles: list = []
        self._scale = 0.0  # the largest magnitude of the unit shown, which its colours span

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="inspect-controls"):
            yield Select([(c, c) for c in self.models.choices()], value=self.choice, allow_blank=False,
                         id="inspect-checkpoint", classes="checkpoint-picker")
            yield Static(id="inspect-status")
        yield TextArea(self._initial_text, id="inspect-source", soft_wrap=True)
        yield InspectText(id="inspect-text")
        yield Predictions(id="inspect-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "charforge · inspect"
        self._show_view()
        self.query_one(Predictions).show(None, 0, None)
        self.query_one(InspectText if self._initial_text else TextArea).focus()
        if self.model is None:
            self._load(self.choice)
        else:
            self.sub_title = self.model.name
            self._request()

    # -- the model -----------------------------------------------------------------------------

    def _loaded(self, model) -> None:
        super()._loaded(model)
        self._request()

    def _load_failed(self, choice: str, exc: Exception) -> None:
        super()._load_failed(choice, exc)
        self._status(f"could not load {choice}")

    # -- inspecting ----------------------------------------------------------------------------

    @on(TextArea.Changed, "#inspect-source")
    def _text_changed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE, self._request)

    def _request(self) -> None:
        if self.model is None:
            return  # inspected once the model has loaded
        text = self.query_one(TextArea).text
        known = self.model.known(text)
        self._asked += 1
        self._dropped = len(text) - len(known)
        if not known:  # nothing to inspect: clear the views
            self.result, self._views, self._view, self._spans = None, [None], 0, []
            self.query_one(InspectText).show("", [])
            self._show_view()
            self._status()
            return
        self._status("inspecting…")
        self._inspect_worker(self.model, known, self._asked)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _inspect_worker(self, model, text: str, asked: int) -> None:
        try:
            result = model.inspect(text)
            styles = surprisal_styles(result.bits)
            spans = [result.peak(start, end) for start, end, _ in result.surprising_spans(SPANS)]
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            self.app.call_from_thread(self._inspect_failed, asked, exc)
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._inspected, asked, result, styles, spans)

    def _inspect_failed(self, asked: int, exc: Exception) -> None:
        if asked == self._asked:
            self.notify(f"could not inspect the text: {exc}", severity="error", timeout=10, markup=False)
            self._status("could not inspect the text")

    def _inspected(self, asked: int, result: Inspection, styles, spans: list[int]) -> None:
        if asked != self._asked:
            return
        current = self._views[self._view]
        self.result, self._views = result, views(result)
        self._view = self._views.index(current) if current in self._views else 0
        self._spans, self._span = spans, -1
        self._surprisal_styles = styles
        self.query_one(InspectText).show(result.text, self._styles())
        self._show_view()
        self._status()

    def _styles(self):
        unit = self._views[self._view]
        if unit is None:
            return self._surprisal_styles
        layer, name, index = unit
        styles, self._scale = unit_styles(self.result.unit(layer, index, name))
        return styles

    def _status(self, doing: str = "") -> None:
        parts = [doing] if doing else []
        if self.result is not None and not doing:
            parts.append(f"{len(self.result):,} chars · {self.result.bits_per_char:.3f} bits/char")
        if self._dropped:
            parts.append(f"{self._dropped:,} characters the model never saw left out")
        self.query_one("#inspect-status", Static).update(" · ".join(parts))

    # -- views and the cursor ------------------------------------------------------------------

    def _show_view(self) -> None:
        text = self.query_one(InspectText)
        unit = self._views[self._view]
        if unit is None:
            text.border_title = "surprisal · bits"
            text.border_subtitle = f"0 … {SURPRISAL_TOP:g}+ bits"
        else:
            layer, name, index = unit
            hidden = self.result.trace(layer, name).shape[1]
            text.border_title = f"layer {layer} · {name} · unit {index} of {hidden}"
            text.border_subtitle = f"−{self._scale:.3g} … +{self._scale:.3g}"
        self._show_detail()

    def _show_detail(self) -> None:
        text = self.query_one(InspectText)
        self.query_one(Predictions).show(self.result, text.cursor, self._views[self._view])

    @on(InspectText.Moved)
    def _moved(self) -> None:
        self._show_detail()

    def action_view(self, steps: int) -> None:
        if self.result is None:
            return
        self._view = (self._view + steps) % len(self._views)
        self.query_one(InspectText).recolour(self._styles())
        self._show_view()

    def action_surprisal(self) -> None:
        self.action_view(-self._view)

    def action_next_surprise(self) -> None:
        """Put the cursor on the most surprising character of the next most surprising span."""
        if self._spans:
            self._span = (self._span + 1) % len(self._spans)
            self.query_one(InspectText).move_to(self._spans[self._span])

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
