"""The progress ``charforge generate`` shows on stderr while it writes samples.

On a terminal it is a rich progress bar, refreshed on its own thread so that its clock ticks
even while one batch takes long; elsewhere (``--progress`` into a log) a plain line every few
seconds, and one at the end.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, TextColumn
from rich.progress import Progress as RichProgress
from rich.table import Column
from rich.text import Text

from charforge.display import clock

PLAIN_EVERY = 5.0  # seconds between plain lines
REFRESHES_PER_SECOND = 2


class Progress:
    """Samples and characters done, chars/s, elapsed and ETA; call it with what was just generated."""

    def __init__(self, total_chars: int, total_samples: int, stream=None, every: float = PLAIN_EVERY,
                 console: Console | None = None):
        """``stream``: where it goes (stderr by default); ``every``: seconds between plain lines."""
        self.total_chars, self.total_samples = max(total_chars, 1), total_samples
        self.chars = self.samples = 0
        self.every = every
        if console is None:  # a terminal is what isatty says, whatever FORCE_COLOR makes rich believe
            target = stream if stream is not None else sys.stderr
            console = Console(file=stream, stderr=stream is None, force_terminal=_isatty(target))
        self.console = console
        self.started = self.last = self.updated = time.monotonic()
        self._ended: float | None = None
        self.live = console.is_terminal  # a bar redrawn in place; otherwise plain lines
        self.bar: RichProgress | None = None
        if self.live:
            self.bar = RichProgress(BarColumn(bar_width=20), TextColumn("{task.percentage:>3.0f}%"), _Figures(self),
                                    console=self.console, refresh_per_second=REFRESHES_PER_SECOND,
                                    redirect_stdout=False, redirect_stderr=False)
            self._task = self.bar.add_task("generating", total=1.0)
            self.bar.start()

    def __call__(self, chars: int, samples: int) -> None:
        self.chars += chars
        self.samples += samples
        now = self.updated = time.monotonic()
        if self.bar is not None:
            self.bar.update(self._task, completed=self.fraction())
            return
        if now - self.last >= self.every:
            self.last = now
            self.console.print(Text(self.line(now)), soft_wrap=True)

    def fraction(self) -> float:
        # Samples that stopped early count as complete.
        return max(self.samples / max(self.total_samples, 1), min(self.chars / self.total_chars, 1.0))

    def line(self, now: float | None = None) -> str:
        """Where the generation stands, as text: the rate and the time left as of the last call,
        the time left counted down (and the clock moved on) by the wall clock since."""
        now = time.monotonic() if now is None else now
        if self._ended is not None:
            now = self._ended
        spent = max(self.updated - self.started, 1e-9)
        fraction = self.fraction()
        eta = spent * (1 - fraction) / fraction - (now - self.updated) if fraction > 0 else None
        left = "" if self._ended is not None else f", ETA {clock(eta)}"
        text = (f"{self.samples}/{self.total_samples} samples, {self.chars:,} chars, "
                f"{self.chars / spent:,.0f} chars/s, elapsed {clock(now - self.started)}{left}")
        return text if self.live else f"{fraction:4.0%} {text}"

    def close(self) -> None:
        """The final figures, the line ended (a bar is left drawn as it stands)."""
        self._ended = time.monotonic()
        if self.bar is not None:
            self.bar.update(self._task, completed=self.fraction())
            bar, self.bar = self.bar, None
            bar.stop()
        else:
            self.console.print(Text(self.line()), soft_wrap=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed file
        return False


class _Figures(ProgressColumn):
    def __init__(self, progress: Progress):
        super().__init__(table_column=Column(no_wrap=True))
        self.progress = progress

    def render(self, task=None) -> Text:
        return Text(self.progress.line(), no_wrap=True, overflow="ellipsis")
