"""How late the UI is: event-loop stalls seen by a timer, and the time from a key to the screen.

``LagProbe`` only keeps numbers; ``CharforgeApp`` feeds it and, when asked, writes a summary.
"""

from __future__ import annotations

import sys
from collections import deque
from time import monotonic, perf_counter

# The clock Textual stamps events with (textual._time), so key latencies compare like with like.
now = perf_counter if sys.platform == "win32" else monotonic


def _stats(values) -> dict:
    data = sorted(values)
    if not data:
        return {"n": 0}
    pick = lambda q: round(data[min(int(q * len(data)), len(data) - 1)], 2)  # noqa: E731
    return {"n": len(data), "p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": round(data[-1], 2)}


class LagProbe:
    def __init__(self, interval: float = 0.05, keep: int = 20000):
        self.interval = interval
        self.stalls: deque[float] = deque(maxlen=keep)  # ms a timer tick came late
        self.keys: deque[float] = deque(maxlen=keep)  # ms from a key press to the screen updated
        self.by_key: dict[str, deque[float]] = {}
        self._last: float | None = None

    def tick(self) -> None:
        t = now()
        if self._last is not None:
            self.stalls.append(max(t - self._last - self.interval, 0.0) * 1000)
        self._last = t

    def key_shown(self, pressed_at: float, key: str = "") -> None:
        ms = (now() - pressed_at) * 1000
        self.keys.append(ms)
        self.by_key.setdefault(key, deque(maxlen=1000)).append(ms)

    def summary(self) -> dict:
        return {"timer_stall_ms": _stats(self.stalls), "key_to_screen_ms": _stats(self.keys),
                "key_to_screen_ms_by_key": {k: _stats(v) for k, v in sorted(self.by_key.items())}}
