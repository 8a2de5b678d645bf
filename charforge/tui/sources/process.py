"""Training in a child process (``charforge train ... --quiet``), followed through its metrics.jsonl.

The child runs in its own session, so closing the terminal or the UI never kills it mid-step.
Controls are signals the trainer already handles: SIGTERM stops after the current step and saves
a checkpoint. Pausing is exactly that, and resuming runs ``charforge train --resume RUN``: a
paused run holds no CPU or memory, and its clock (the minutes budget, the ETA) stands still,
which SIGSTOP could not give (the trainer's clock would count the pause as training time).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from charforge.runs.directory import METRICS
from charforge.tui.sources.base import EventSource
from charforge.tui.sources.tail import MetricsTail


class TrainProcess(EventSource):
    owns_run = True
    can_control = True
    can_detach = True

    def __init__(self, args: list[str], runs_dir: str | Path = "runs", run_dir: str | Path | None = None,
                 *, name: str | None = None, env: dict | None = None):
        """``args``: the ``charforge train`` arguments; ``run_dir`` when known (a resume), or the
        ``name`` given (the run will live in ``runs_dir/name``); otherwise the new run's folder
        is found once the child creates it."""
        self.args = list(args)
        self.runs_dir = Path(runs_dir)
        self.env = env
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._named = self.runs_dir / name if name else None
        self._tail = MetricsTail(self.run_dir / METRICS) if self.run_dir else None
        self.proc: subprocess.Popen | None = None
        self._stderr = None
        self._before: set[str] = set()
        self._finished = False  # the current child wrote its "end" or "error" event
        self._reported = True  # the current child's exit has been accounted for
        self._detached = False
        self._resume_wanted = False

    # -- the child ------------------------------------------------------------------------------

    def _spawn(self, args: list[str]) -> None:
        if self.run_dir is None:
            self._before = set(os.listdir(self.runs_dir)) if self.runs_dir.is_dir() else set()
            if self._named is not None and self._named.exists():
                self._named = None  # the child will refuse it; do not follow the run already there
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charforge", "train", *args, "--quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            start_new_session=True, env=self.env)
        self._finished, self._reported = False, False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self._spawn(self.args)

    def _discover(self) -> None:
        """Find the new run's folder: the named one, the one the child holds open, or the new one."""
        found = None
        if self._named is not None and (self._named / METRICS).exists():
            found = self._named
        if found is None and self.proc is not None:
            found = _open_metrics(self.proc.pid)
        if found is None and self._named is None and self.runs_dir.is_dir():
            fresh = [self.runs_dir / d for d in set(os.listdir(self.runs_dir)) - self._before]
            fresh = [d for d in fresh if (d / METRICS).exists()]
            found = fresh[0] if len(fresh) == 1 else None
        if found is not None:
            self.run_dir = found
            self._tail = MetricsTail(found / METRICS)

    def poll(self) -> list[dict]:
        self._resume_if_ready()
        exited = self.proc is not None and self.proc.poll() is not None
        if self._tail is None:
            self._discover()
        events = self._tail.read() if self._tail is not None else []
        if any(e.get("event") in ("end", "error") for e in events):
            self._finished = True
        if exited and not self._reported:
            self._reported = True
            if not self._finished:
                events.append({"event": "error", "message": self._failure()})
        return events

    def _failure(self) -> str:
        code = self.proc.returncode
        if code == -signal.SIGTERM:
            return "stopped before training began; there was nothing to save."
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        message = lines[-1] if lines else f"charforge train exited with status {code}."
        return message.removeprefix("Error: ")

    # -- controls -----------------------------------------------------------------------------

    def _signal(self, signum: int) -> None:
        if self.alive:
            try:
                os.kill(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def pause(self) -> None:
        self._signal(signal.SIGTERM)  # stops after this step and saves; resume continues from there

    def resume(self) -> None:
        """Continue from the saved checkpoint, as soon as the paused child has exited."""
        if self.run_dir is not None:
            self._resume_wanted = True
            self._resume_if_ready()

    def _resume_if_ready(self) -> None:
        if self._resume_wanted and not self.alive:
            self._resume_wanted = False
            self._spawn(["--resume", str(self.run_dir)])

    def stop(self) -> None:
        self._resume_wanted = False
        self._signal(signal.SIGTERM)

    def detach(self) -> None:
        self._detached = True

    def close(self) -> None:
        if not self._detached:
            self._signal(signal.SIGTERM)

    def describe(self) -> str:
        return str(self.run_dir) if self.run_dir else "a new run"


def _open_metrics(pid: int) -> Path | None:
    """The run folder whose metrics.jsonl process ``pid`` holds open (Linux), else None."""
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = Path(os.readlink(fd))
            except OSError:
                continue
            if target.name == METRICS:
                return target.parent
    except OSError:
        pass
    return None
