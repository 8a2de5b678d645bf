"""The progress bar ``charforge generate`` draws on stderr while it writes samples."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr: characters and samples done, chars/s, ETA."""

    def __init__(self, total_chars: int, total_samples: int, stream=None, every: float = 0.1):
        self.total_chars, self.total_samples = max(total_chars, 1), total_samples
        self.chars = self.samples = 0
        self.stream = stream or sys.stderr
        self.every = every
        self.started = self.last = time.monotonic()

    def __call__(self, chars: int, samples: int) -> None:
        self.chars += chars
        self.samples += samples
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.draw(now)

    def draw(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        # Samples that stopped early count as complete.
        fraction = max(self.samples / max(self.total_samples, 1), min(self.chars / self.total_chars, 1.0))
        rate = self.chars / elapsed
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        filled = int(round(fraction * 20))
        self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (20 - filled)}] {fraction:4.0%} "
                          f"{self.samples}/{self.total_samples} samples, {self.chars:,} chars, "
                          f"{rate:,.0f} chars/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.flush()

    def close(self) -> None:
        self.draw()
        self.stream.write("\n")
        self.stream.flush()
