"""``metrics.jsonl``: a run's record, one JSON object per event (start, step, validation, checkpoint,
end, error), appended and flushed at once so that watchers see each event as it happens."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends events to a run's ``metrics.jsonl``."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class NoLog:
    """What a process that does not own the run writes: nothing (another process keeps the record)."""

    def write(self, event: str, **fields: Any) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(path: Path) -> list[dict]:
    """Every complete event in ``path`` (a line being written at this moment is skipped)."""
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
