"""Training's terminal output, as a plugin: block it (``--quiet``) or replace it like any other.

On a terminal, stderr shows a progress bar drawn by rich, refreshed on its own thread so that its
clock ticks even while a step or a validation takes long; the figures come from the last logged
step, and the phase and the time left are read from the run's view at every refresh. Elsewhere (a
log file, a pipe) a plain line goes to stdout every few seconds. The lines that matter afterwards
(the run directory, each validation, how the run ended and what to do next) go to stdout either
way.

Everything shown is read from the :class:`charforge.runview.RunView` the hooks are handed, nothing
from the trainer. Each run gets its own :class:`ConsoleOutput`, kept per run by the module's hooks; a
script or a test may register an instance of its own as a plugin object instead, with a rich
``Console`` of its choosing.
"""

from __future__ import annotations

import atexit
import math
import sys
import time
import weakref
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn
from rich.table import Column
from rich.text import Text

from charforge.display import amount, clock
from charforge.hookspecs import hookimpl

_VALIDATION = {"step", "val_loss", "val_bpc", "val_accuracy", "sample_loss", "full"}  # the trainer's figures
PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal
REFRESHES_PER_SECOND = 2  # enough for a clock that ticks every second, cheap beside training


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed file
        return False


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class ConsoleOutput:
    """One run's console output: its lines, and the progress it shows while it trains."""

    def __init__(self, console: Console | None = None, *, plain_every: float = PLAIN_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        """``console``: where the progress is drawn (stderr's by default); a terminal console given
        here takes the lines too, so that one stream holds everything."""
        self._given = console
        self.console = console
        self.plain_every = plain_every
        self.clock = clock
        self.run = None  # the RunView followed
        self.metrics: dict = {}  # the last logged step's
        self.val_loss: float | None = None
        self.progress: Progress | None = None  # drawn while training on a terminal
        self._task = None
        self._started = self._last_plain = 0.0
        self._elapsed0 = self._progress0 = 0.0
        self._step_at: float | None = None  # when the last logged step arrived
        self._eta: tuple[float, float] | None = None  # (an estimate, when it was made), counted down
        self._ended: float | None = None
        self._outcome = ""  # what the bar says once the run is over

    # -- what is shown ------------------------------------------------------------------------

    def follow(self, run) -> None:
        """Start following ``run`` (a RunView): the clock starts now, from the time the run had spent before."""
        self.run = run
        self._started = self._last_plain = self.clock()
        self._elapsed0 = float(run.elapsed)
        self._progress0 = float(run.progress())
        self.val_loss = _number(run.metrics.get("val_loss"))
        self.metrics, self._step_at, self._eta, self._ended, self._outcome = {}, None, None, None, ""

    def elapsed(self, now: float | None = None) -> float:
        """Seconds of training, ticking with the wall clock until the run ends."""
        now = self.clock() if now is None else now
        end = self._ended if self._ended is not None else now
        return self._elapsed0 + end - self._started

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: the run's own estimate where it has one, else extrapolated from the
        steps so far; either is counted down with the wall clock until a new estimate differs."""
        now = self.clock() if now is None else now
        value = self._run_eta()
        if value is None:
            value = self._extrapolated()
        if value is None:
            self._eta = None
            return None
        if self._eta is None or value != self._eta[0]:
            self._eta = (value, now)
        return max(self._eta[0] - (now - self._eta[1]), 0.0)

    def _run_eta(self) -> float | None:
        if self.run is None:
            return None
        try:
            return _number(self.run.eta())
        except Exception:  # noqa: BLE001 - read from the display's thread: a passing state must not kill it
            return None

    def _extrapolated(self) -> float | None:
        p = _number(self.metrics.get("progress"))
        if p is None or self._step_at is None or p <= self._progress0:
            return None
        return (self._step_at - self._started) * max(1 - p, 0.0) / (p - self._progress0)

    def fraction(self) -> float:
        """The share of the budget spent, as of the last logged step."""
        p = _number(self.metrics.get("progress"))
        return min(max(p if p is not None else self._progress0, 0.0), 1.0)

    def phase(self) -> str:
        """``training``, or ``validating`` and how far the validation has gone; at the end, how it ended."""
        if self._outcome:
            return self._outcome
        if self.run is None or self.run.phase != "validating":
            return "training"
        fraction = _number(self.run.validation_fraction)
        return "validating" if fraction is None else f"validating {min(fraction, 1.0):.0%}"

    def figures(self) -> str:
        m = self.metrics
        if not m:
            return "waiting for the first logged step"
        parts = [f"step {m['step']:,}", f"loss {m['loss']:.3f} ({m['bpc']:.2f} bpc)", f"acc {m['accuracy']:.0%}"]
        if self.val_loss is not None:
            parts.append(f"val {self.val_loss:.3f}")
        parts.append(f"{m['chars_per_s'] / 1000:.1f}k chars/s")
        threads = m.get("threads")
        if threads:
            parts.append(amount(threads, "thread"))
        return " · ".join(parts)

    def times(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        if self._ended is not None:
            return f"elapsed {clock(self.elapsed(now))}"
        return f"elapsed {clock(self.elapsed(now))} · ETA {clock(self.eta(now))}"

    def say(self, text: str) -> None:
        """A finished line, on stdout; while the bar is drawn and stdout is the same terminal, rich
        passes it above the bar. A terminal console given to this object takes the lines itself."""
        if self._given is not None and self._given.is_terminal:
            self._given.print(Text(text), soft_wrap=True)
        else:
            print(text, flush=True)

    # -- the display ---------------------------------------------------------------------------

    def _start_display(self) -> None:
        # A terminal is what isatty says, whatever FORCE_COLOR makes rich believe: no bar into a log.
        console = self.console = self._given or Console(stderr=True, force_terminal=_isatty(sys.stderr))
        if not console.is_terminal:
            return
        own = self._given is None  # a console given is the caller's: leave sys.stdout and sys.stderr alone
        stdout_here = own and _isatty(sys.stdout)  # then stdout passes through rich, above the bar
        self.progress = Progress(
            BarColumn(bar_width=20), StatusColumn(self), FiguresColumn(self), TimesColumn(self), console=console,
            refresh_per_second=REFRESHES_PER_SECOND, redirect_stdout=stdout_here, redirect_stderr=own)
        self._task = self.progress.add_task("training", total=1.0, completed=min(self._progress0, 1.0))
        self.progress.start()
        atexit.register(self._stop_display)

    def _stop_display(self, outcome: str = "stopped") -> None:
        """Draw the bar a last time, saying how the run ended, and leave it there with the line
        ended and the cursor back."""
        self._outcome = self._outcome or outcome
        self._ended = self.clock() if self._ended is None else self._ended
        progress, self.progress = self.progress, None
        if progress is not None:
            atexit.unregister(self._stop_display)
            progress.stop()

    # -- hooks (an instance can be registered as a plugin object) -------------------------------

    @hookimpl
    def on_train_start(self, run):
        self.follow(run)
        c = run.config
        budget = ", ".join(amount(v, k.rstrip("s")) for k, v in (("steps", c.steps), ("epochs", c.epochs),
                                                                  ("minutes", c.minutes)) if v)
        resumed = f" (resuming at step {run.step})" if run.step else ""
        self.say(f"charforge: {c.num_layers}x{c.hidden_size} {c.cell} ({run.parameters:,} parameters) on "
                 f"{c.corpus}: {run.training_chars:,} training chars, "
                 f"{len(run.vocab)} distinct, {c.optimizer} lr {c.lr:g}, budget {budget}, "
                 f"device {run.device}, {run.describe_threads()}{resumed}")
        self.say(f"run directory: {run.run_dir}")
        self._start_display()

    @hookimpl
    def on_step_end(self, run, step, metrics):
        now = self.clock()
        self.metrics, self._step_at = dict(metrics), now
        if self.progress is not None:
            self.progress.update(self._task, completed=min(metrics["progress"], 1.0))
        elif now - self._last_plain >= self.plain_every:
            self._last_plain = now
            self.say(f"{self.fraction():4.0%} {self.figures()} · {self.times(now)}")

    @hookimpl
    def on_validation_end(self, run, step, metrics, sample):
        task = run.task
        if "val_loss" in metrics:
            self.val_loss = _number(metrics["val_loss"])
            unit, bits = ("nats/char", "bpc") if task is None else ("nats per scored target", "bits")  # a task
            self.say(f"step {step}: validation loss {metrics['val_loss']:.4f} {unit} "  # scores some outputs only
                     f"({metrics['val_bpc']:.3f} {bits}), accuracy {metrics['val_accuracy']:.1%}")
        own = {k: v for k, v in metrics.items() if k not in _VALIDATION and _number(v) is not None}
        if task is not None and own:
            self.say(f"step {step}: {task.name}: " + ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in own.items()))
        for line in sample.splitlines()[:8]:
            self.say("  | " + line)

    @hookimpl
    def on_train_end(self, run, reason, metrics):
        self._stop_display("interrupted" if reason == "interrupted" else "done")
        where = run.run_dir
        if reason == "interrupted":
            self.say(f"interrupted at step {run.step}; saved. Resume with: charforge train --resume {where}")
        else:
            best = "" if run.best_val_loss is None else f", best validation loss {run.best_val_loss:.4f}"
            text = run.task is None or run.task.text  # a task of values has nothing to sample
            then = f" Sample with: charforge sample {where}" if text else f" The run: {where}"
            self.say(f"done ({reason}) at step {run.step}{best}.{then}")

    @hookimpl
    def on_train_error(self, run, error):
        self._stop_display()
        if isinstance(error, KeyboardInterrupt):
            self.say(f"stopped at once at step {run.step}; the last checkpoint in {run.run_dir} is intact.")


class StatusColumn(ProgressColumn):
    """The share of the budget spent and, while the run validates, ``validating 40%``: read
    from the run's view at every refresh."""

    def __init__(self, output: ConsoleOutput):
        super().__init__(table_column=Column(no_wrap=True))
        self.output = output

    def render(self, task=None) -> Text:
        text = Text(f"{self.output.fraction():4.0%}")
        phase = self.output.phase()
        if phase != "training":
            text.append(" " + phase, style="bold yellow" if phase.startswith("validating") else "bold")
        return text


class FiguresColumn(ProgressColumn):
    """The last logged step's figures; the column the table narrows (with an ellipsis) on a small terminal."""

    def __init__(self, output: ConsoleOutput):
        super().__init__()  # a column that may wrap is the one the table shrinks first
        self.output = output

    def render(self, task=None) -> Text:
        return Text(self.output.figures(), no_wrap=True, overflow="ellipsis")


class TimesColumn(ProgressColumn):
    """The elapsed clock and the time left, moved on by the wall clock at every refresh."""

    def __init__(self, output: ConsoleOutput):
        super().__init__(table_column=Column(no_wrap=True))
        self.output = output

    def render(self, task=None) -> Text:
        return Text(self.output.times(), style="cyan")


# -- the plugin's hooks: one ConsoleOutput per run ----------------------------------------------

_outputs: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # RunView -> its output


@hookimpl
def on_train_start(run):
    output = _outputs[run] = ConsoleOutput()
    output.on_train_start(run)


@hookimpl
def on_step_end(run, step, metrics):
    if (output := _outputs.get(run)) is not None:
        output.on_step_end(run, step, metrics)


@hookimpl
def on_validation_end(run, step, metrics, sample):
    if (output := _outputs.get(run)) is not None:
        output.on_validation_end(run, step, metrics, sample)


@hookimpl
def on_train_end(run, reason, metrics):
    if (output := _outputs.pop(run, None)) is not None:
        output.on_train_end(run, reason, metrics)


@hookimpl
def on_train_error(run, error):
    if (output := _outputs.pop(run, None)) is not None:
        output.on_train_error(run, error)
