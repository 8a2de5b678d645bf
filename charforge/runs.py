"""The run directory: config, metrics.jsonl (one JSON object per event) and checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from charforge.errors import CharforgeError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


def new_run_dir(root: Path, name: str, explicit: bool) -> Path:
    """A fresh run directory; an explicit name that exists is an error, a default one gets a suffix."""
    path = root / name
    if path.exists():
        if explicit:
            raise CharforgeError(f"{path} already holds a run: continue it with --resume {path}, "
                                 f"or choose another --name.")
        n = 2
        while (root / f"{name}-{n}").exists():
            n += 1
        path = root / f"{name}-{n}"
    try:
        (path / CHECKPOINTS).mkdir(parents=True)
    except OSError as exc:
        raise CharforgeError(f"cannot create run directory {path}: {exc.strerror or exc}.") from None
    return path


def run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint.parent


class MetricsLog:
    """Appends events to ``metrics.jsonl``, flushed at once so that watchers see them live."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete event of a run (a line being written at this moment is skipped)."""
    path = Path(run_dir) / METRICS
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
