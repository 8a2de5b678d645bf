"""The training screen: loss plot, latest figures, progress with ETA, and the samples, live.

Everything comes from an injected event source (``charforge.tui.sources``), polled a few
times a second; the plot is redrawn on its own, slower timer from a downsampled history.
:class:`TrainScreen` runs past 200 lines because a Textual screen holds its key bindings, their
actions and its timers as methods of one class; the widgets it shows live in ``tui/widgets``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header

from charforge.tui.history import RunHistory
from charforge.tui.sources.base import EventSource
from charforge.tui.widgets.figures import Figures
from charforge.tui.widgets.loss_plot import LossPlot
from charforge.tui.widgets.run_progress import RunProgress
from charforge.tui.widgets.sample_log import SampleLog

STATES = {
    "waiting": "waiting for the run to start",
    "running": "training",
    "pausing": "pausing: saving a checkpoint",
    "paused": "paused (saved)",
    "resuming": "resuming from the checkpoint",
    "stopping": "stopping: saving a checkpoint",
    "quitting": "stopping to quit: saving a checkpoint",
    "ended": "ended",
    "failed": "failed",
}
QUIET_AFTER = 30.0  # seconds without an event before the progress line says so
STALE_AFTER = 600.0  # seconds without an event after which a run followed read-only is taken for stopped
NO_CHECKPOINT = "no checkpoint yet: the first one comes within about 30 s of the first step"


def _sample_latest(run_dir: Path) -> tuple[str, str]:
    from charforge.tui.models import sample_latest

    return sample_latest(run_dir)


def _sampler_screen(run_dir: Path) -> Screen:
    from charforge.tui.models import CheckpointModels
    from charforge.tui.screens.sample import SampleScreen

    return SampleScreen(CheckpointModels(run_dir, which="latest"))


class TrainScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("s", "stop", "Stop & save"),
        Binding("n", "sample_now", "Sample now"),
        Binding("b", "toggle_bits", "Bits/nats"),
        Binding("i", "open_sampler", "Sampler"),
        # Taken only while the two above are dimmed (a key runs the first binding that is enabled).
        Binding("n,i", "no_checkpoint", "No checkpoint yet", show=False),
        Binding("d", "detach", "Detach"),
        Binding("q", "quit", "Quit"),
    ]

    state = reactive("waiting")
    bits = reactive(False)

    def __init__(self, source: EventSource, *, sample_now: Callable[[Path], tuple[str, str]] = _sample_latest,
                 open_sampler: Callable[[Path], Screen] = _sampler_screen, poll_interval: float = 0.25,
                 redraw_interval: float = 1.0):
        super().__init__()
        self.source = source
        self.history = RunHistory()
        self._sample_now = sample_now
        self._open_sampler = open_sampler
        self._poll_interval, self._redraw_interval = poll_interval, redraw_interval
        self._samples_shown = 0
        self._plotted = (-1, False)  # (history version, bits) last handed to the plot
        self._last_event = time.monotonic()
        self._quiet_note = ""
        self._checkpointed = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield LossPlot(id="plot")
            yield Figures(id="figures")
        yield RunProgress(id="progress")
        yield SampleLog(id="samples")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "charforge · " + ("training" if self.source.owns_run else "watching")
        self.query_one("#plot").border_title = "loss (nats/char)"
        self.query_one("#figures").border_title = "latest"
        self.query_one("#samples").border_title = "samples"
        self.watch_state(self.state)
        self.source.start()
        self.poll()
        self.set_interval(self._poll_interval, self.poll)
        self.set_interval(self._redraw_interval, self.redraw)
        self.call_after_refresh(self.redraw)

    # -- events in --------------------------------------------------------------------------

    def poll(self) -> None:
        events = self.source.poll()
        log = self.query_one(SampleLog)
        for event in events:
            self.history.add(event)
            for sample in self.history.samples[self._samples_shown:]:
                log.add(sample.title, sample.text)
            self._samples_shown = len(self.history.samples)
            self._on_event(event, log)
        now = time.monotonic()
        if events:
            self._last_event = now
            self.query_one(Figures).show(self.history)
        quiet = now - self._last_event > QUIET_AFTER and self.state == "running"
        self._quiet_note = f"no news for {int(now - self._last_event)} s" if quiet else ""
        # The clock and the ETA move on with the wall clock while the run goes, and stand at the
        # newest event's time otherwise; the line is redrawn only where its text changed.
        at = time.time() if self._ticking() else self.history.last_time
        self.query_one(RunProgress).show(self.history, self._quiet_note, at)

    def _ticking(self) -> bool:
        """Whether the run's clock runs now: it is training (not paused, ended or failed), and its
        process is alive, or, for a run followed read-only, it wrote something not too long ago."""
        h = self.history
        if self.state != "running" or h.ended is not None or h.error is not None:
            return False
        if self.source.owns_run:
            return self.source.alive
        return h.last_time is not None and time.time() - h.last_time < STALE_AFTER

    def _on_event(self, event: dict, log: SampleLog) -> None:
        kind = event.get("event")
        if kind == "start" and self.state not in ("quitting", "stopping"):
            self.state = "running"
        elif kind == "end":
            reason = self.history.ended or "ended"
            if self.state == "quitting":
                self.app.exit(self.goodbye())
            elif self.state == "pausing" and not reason.startswith("budget"):
                self.state = "paused"
                log.note(f"paused at step {self.history.step:,}; the checkpoint is saved. p resumes.", "bold yellow")
            else:
                self.state = "ended"
                if reason == "interrupted":
                    log.note(f"stopped at step {self.history.step:,}; saved.", "bold yellow")
                else:
                    log.note(f"the run ended at step {self.history.step:,}: {reason}.", "bold green")
        elif kind == "checkpoint" and not self._checkpointed:
            self._checkpointed = True
            self.refresh_bindings()  # "sample now" and "sampler" become available
        elif kind == "error":
            if self.state == "quitting":
                self.app.exit(self.goodbye())
                return
            self.state = "failed"
            log.note(f"training failed: {event.get('message', '')}")

    def redraw(self) -> None:
        """The plot's timer: hand it a downsampled history if it changed, and let it rebuild."""
        plot = self.query_one(LossPlot)
        if self._plotted != (self.history.version, self.bits):
            self._plotted = (self.history.version, self.bits)
            train, val = self.history.series(self.bits, limit=max(plot.content_size.width, 40))
            plot.show(train, val, "bits/char" if self.bits else "nats/char")
        plot.redraw()

    # -- state shown --------------------------------------------------------------------------

    def watch_state(self, state: str) -> None:
        text = STATES[state]
        if state == "ended" and self.history.ended:
            text = f"ended: {self.history.ended}"
        self.sub_title = f"{self.source.describe()} · {text}"
        self.refresh_bindings()

    def watch_bits(self, bits: bool) -> None:
        if self.is_mounted:
            self.query_one("#plot").border_title = f"loss ({'bits' if bits else 'nats'}/char)"
            self.call_after_refresh(self.redraw)  # show the new title first, then rebuild the plot

    def check_action(self, action: str, parameters) -> bool | None:
        src, state = self.source, self.state
        if action in ("pause", "resume", "stop", "detach") and state in ("ended", "failed"):
            return False  # nothing runs any more
        if action == "pause":
            return (True if state == "running" else None) if src.can_control and state not in (
                "paused", "resuming") else False
        if action == "resume":
            return (True if state == "paused" else None) if src.can_control and state in (
                "paused", "resuming") else False
        if action == "stop":
            return (True if state in ("running", "paused") else None) if src.can_control else False
        if action == "detach":
            if not getattr(src, "can_detach", False):
                return False
            return True if state == "running" else None
        if action in ("sample_now", "open_sampler"):
            return True if self._has_checkpoint() else None
        if action == "no_checkpoint":
            return not self._has_checkpoint()
        return True

    def _has_checkpoint(self) -> bool:
        run = self.source.run_dir
        return run is not None and (bool(self.history.last_checkpoint) or any(
            (Path(run) / "checkpoints").glob("*.safetensors")))

    # -- keys ----------------------------------------------------------------------------------

    def action_pause(self) -> None:
        if self.state == "running":
            self.source.pause()
            self.state = "pausing"

    def action_resume(self) -> None:
        if self.state == "paused":
            self.source.resume()
            self.state = "resuming"

    def action_stop(self) -> None:
        if self.state == "running":
            self.source.stop()
            self.state = "stopping"
        elif self.state == "paused":  # already saved: nothing runs
            self.state = "ended"

    def action_toggle_bits(self) -> None:
        self.bits = not self.bits

    def action_detach(self) -> None:
        self.source.detach()
        proc = getattr(self.source, "proc", None)
        where = f" (process {proc.pid})" if proc is not None else ""
        self.app.exit(f"training goes on in the background{where}. Follow it: charforge watch {self.source.run_dir}")

    def action_no_checkpoint(self) -> None:
        """n or i before there is anything to sample from: say so, and when to expect it."""
        self.notify(NO_CHECKPOINT, severity="warning", timeout=5)

    def action_open_sampler(self) -> None:
        if self._has_checkpoint():
            self.app.push_screen(self._open_sampler(Path(self.source.run_dir)))

    def action_sample_now(self) -> None:
        if self._has_checkpoint():
            self.notify("sampling from the latest checkpoint…", timeout=2)
            self._sample_worker(Path(self.source.run_dir))

    @work(thread=True, exclusive=True, group="sample-now", exit_on_error=False)
    def _sample_worker(self, run_dir: Path) -> None:
        try:
            title, text = self._sample_now(run_dir)
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            self.app.call_from_thread(self.notify, f"could not sample: {exc}", severity="error")
            return
        self.app.call_from_thread(self.query_one(SampleLog).add, title, text, "bold magenta")

    def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        """A run the TUI started is stopped (and saved) first; a second quit leaves at once."""
        running = self.state in ("waiting", "running", "pausing", "resuming", "stopping")
        if running and self.source.owns_run and self.source.alive:
            self.source.stop()
            self.state = "quitting"
            self.notify("stopping the run and saving a checkpoint, then quitting (q again: quit now; "
                        "the run still saves)", timeout=10)
            return
        self.app.exit(self.goodbye())

    def goodbye(self) -> str:
        run, h = self.source.run_dir, self.history
        if run is None:
            return ""
        if not self.source.owns_run:
            return "" if h.ended or h.error else f"{run} goes on training. Follow it again: charforge watch {run}"
        if h.ended and h.ended.startswith("budget"):
            return f"done at step {h.step:,}. Sample it: charforge sample {run} --tui"
        if self._has_checkpoint():
            return f"stopped at step {h.step:,}; saved. Continue: charforge train --resume {run} --tui"
        return ""

    def on_unmount(self) -> None:
        self.source.close()
