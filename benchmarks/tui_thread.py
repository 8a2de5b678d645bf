"""Training in a thread of the TUI process: the alternative to ``TrainProcess``.

Kept beside ``benchmarks/tui.py``, which measures it against the child process: training shares the interpreter
lock with the UI here, and a crash or a closed terminal takes the run down with the UI.
"""

from __future__ import annotations

import threading
from pathlib import Path

from charforge.runs.directory import METRICS
from charforge.tui.sources.base import EventSource
from charforge.tui.sources.tail import MetricsTail


class TrainThread(EventSource):
    owns_run = True
    can_control = True

    def __init__(self, config, runs_dir: str | Path = "runs", name: str | None = None):
        self.config = config
        self.runs_dir = Path(runs_dir)
        self.name = name
        self.trainer = None
        self._thread: threading.Thread | None = None
        self._tail: MetricsTail | None = None
        self._failure: str | None = None
        self._ready = threading.Event()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _train(self, resume: bool) -> None:
        from charforge.plugins import make_plugin_manager
        from charforge.trainer import Trainer

        try:
            pm = make_plugin_manager(block=["console"])
            if resume:
                self.trainer = Trainer.resume(self.run_dir, {}, pm=pm)
            else:
                self.trainer = Trainer(self.config, pm=pm, runs_root=self.runs_dir, name=self.name)
            self.run_dir = self.trainer.run_dir
            self._ready.set()
            self.trainer.run()
        except BaseException as exc:  # noqa: BLE001 - reported as an event, never lost
            if self.trainer is None or not self._ready.is_set():
                self._failure = str(exc) or type(exc).__name__
        finally:
            self._ready.set()

    def _launch(self, resume: bool) -> None:
        self._ready.clear()
        self._thread = threading.Thread(target=self._train, args=(resume,), daemon=True, name="charforge-train")
        self._thread.start()

    def start(self) -> None:
        self._launch(resume=False)

    def poll(self) -> list[dict]:
        if self._tail is None and self.run_dir is not None:
            self._tail = MetricsTail(Path(self.run_dir) / METRICS)
        events = self._tail.read() if self._tail is not None else []
        if self._failure is not None:
            events.append({"event": "error", "message": self._failure})
            self._failure = None
        return events

    def pause(self) -> None:
        if self.alive and self.trainer is not None:
            self.trainer.request_stop("interrupted")

    def resume(self) -> None:
        if not self.alive and self.run_dir is not None:
            self._launch(resume=True)

    stop = pause

    def close(self) -> None:
        self.pause()
        if self._thread is not None:
            self._thread.join(timeout=60)
