"""Following a run's metrics.jsonl as it grows, and attaching to a run started elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

from charforge.runs.directory import Run
from charforge.errors import CharforgeError
from charforge.tui.sources.base import EventSource


class MetricsTail:
    """Reads the complete lines appended to a metrics.jsonl since the last read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                if size < self._offset:  # the file was replaced: start over
                    self._offset, self._partial = 0, b""
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # a line still being written (or b"")
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):  # a damaged line, or one nested past what the parser follows
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


class AttachedRun(EventSource):
    """A run started elsewhere, followed read-only: quitting the UI leaves it going."""

    def __init__(self, run_dir: str | Path):
        run = Run.of(run_dir, writer=False)  # a run directory, a checkpoint, or the metrics file itself
        if not run.is_run():
            raise CharforgeError(f"{run.path} is not a run directory (it has no {run.metrics_path.name}).")
        self.run_dir = run.path
        self._tail = MetricsTail(run.metrics_path)

    def poll(self) -> list[dict]:
        return self._tail.read()

    def describe(self) -> str:
        return str(self.run_dir)
