"""Following a run's metrics.jsonl as it grows, and attaching to a run started elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

from charforge import runs
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
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


class AttachedRun(EventSource):
    """A run started elsewhere, followed read-only: quitting the UI leaves it going."""

    def __init__(self, run_dir: str | Path):
        run_dir = Path(run_dir)
        if run_dir.is_file():  # a checkpoint or the metrics file itself
            run_dir = runs.run_dir_of(run_dir) if run_dir.suffix == ".safetensors" else run_dir.parent
        if not (run_dir / runs.METRICS).exists() and not (run_dir / runs.CONFIG).exists():
            raise CharforgeError(f"{run_dir} is not a run directory (it has no {runs.METRICS}).")
        self.run_dir = run_dir
        self._tail = MetricsTail(run_dir / runs.METRICS)

    def poll(self) -> list[dict]:
        return self._tail.read()

    def describe(self) -> str:
        return str(self.run_dir)
