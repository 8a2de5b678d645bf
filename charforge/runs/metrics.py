"""``metrics.jsonl``: a run's record, one JSON object per event (start, step, validation, checkpoint,
end, error), appended and flushed at once so that watchers see each event as it happens.

Every append is a whole line or nothing: a write cut short (a full disk) is cut back to where it
began, and the unfinished last line a killed process left is cut off before the next event, so a
torn line never swallows it. Readers skip a line that is not JSON and say so.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from charforge.errors import warn


class MetricsLog:
    """Appends events to a run's ``metrics.jsonl``, each a whole line (the run's lock makes this process
    its only writer)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._cut_torn_line()

    def _cut_torn_line(self) -> None:
        """Cut off a last line that a killed process left unfinished: it holds no whole event, and the
        next event must start a line of its own."""
        size = end = os.fstat(self._fd).st_size
        keep = 0
        with open(self.path, "rb") as f:
            while end > 0:
                start = max(end - (1 << 16), 0)
                f.seek(start)
                newline = f.read(end - start).rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                end = start
        if keep < size:
            os.ftruncate(self._fd, keep)

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._append((json.dumps(record) + "\n").encode("utf-8"))

    def _append(self, data: bytes) -> None:
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            try:  # leave no partial line behind
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class NoLog:
    """What a process that does not own the run writes: nothing (another process keeps the record)."""

    def write(self, event: str, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(path: Path) -> list[dict]:
    """Every complete event in ``path``. A last line without its newline is being written at this moment
    and is skipped quietly; a whole line that is not a JSON object is skipped with a warning."""
    events, damaged = [], []
    if path.exists():
        data = path.read_bytes()
        lines = data.split(b"\n")
        for number, line in enumerate(lines[:-1], 1):  # lines[-1]: after the last newline
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                event = None
            if isinstance(event, dict):
                events.append(event)
            elif line.strip():
                damaged.append(number)
    if damaged:
        warn(f"{path}: {len(damaged)} damaged line(s) skipped (line {damaged[0]} first): torn by a crash or a "
             f"full disk, or edited by hand.")
    return events
