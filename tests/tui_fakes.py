"""Deterministic stand-ins for the screens' sources: tests and snapshots feed the UI with these.

``ScriptedSource`` hands out the events it is given (all at once, or as ``push`` adds them) and
records the controls it receives; ``scripted_run`` makes a believable run's events from a seed;
``FakeModels`` samples from a fixed text, optionally slowly (to stop it mid-way).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from charforge.tui.sources.base import EventSource


class ScriptedSource(EventSource):
    def __init__(self, events=(), *, owns_run: bool = True, can_control: bool = True,
                 run_dir: str | Path | None = "runs/fake"):
        self.owns_run, self.can_control = owns_run, can_control
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.pending = list(events)
        self.calls: list[str] = []
        self.running = True

    @property
    def alive(self) -> bool:
        return self.running

    def push(self, *events: dict) -> None:
        self.pending.extend(events)

    def poll(self) -> list[dict]:
        out, self.pending = self.pending, []
        return out

    def _record(self, name: str) -> None:
        self.calls.append(name)

    def start(self):
        self._record("start")

    def pause(self):
        self._record("pause")

    def resume(self):
        self._record("resume")

    def stop(self):
        self._record("stop")

    def detach(self):
        self._record("detach")

    def close(self):
        self._record("close")


def step_event(step: int, total: int = 1000, loss: float | None = None) -> dict:
    loss = loss if loss is not None else 0.9 + 2.4 * math.exp(-step / 150) + 0.04 * math.sin(step / 7)
    return {"event": "step", "step": step, "epoch": step / 400, "loss": loss, "bpc": loss / math.log(2),
            "accuracy": min(0.2 + step / 1500, 0.75), "lr": 3e-3 * (1 - step / (2 * total)),
            "grad_norm": 0.5 + 0.1 * math.cos(step / 11), "chars_per_s": 123456.0,
            "elapsed": step * 0.06, "progress": step / total}


def scripted_run(upto: int, total: int = 1000, every: int = 10, eval_every: int = 100,
                 run_dir: str = "runs/fake") -> list[dict]:
    """The events of a run with a ``total``-step budget, up to step ``upto``."""
    events = [{"event": "start", "step": 0, "run_dir": run_dir, "vocab_size": 30, "parameters": 3420,
               "config": {"steps": total, "epochs": None, "minutes": None, "batch_size": 32, "seq_len": 64}}]
    for step in range(every, upto + 1, every):
        events.append(step_event(step, total))
        if step % eval_every == 0:
            val = 1.0 + 2.3 * math.exp(-step / 160)
            events.append({"event": "validation", "step": step, "val_loss": val, "val_bpc": val / math.log(2),
                           "val_accuracy": 0.6, "sample": f"the quick brown fox at step {step}\nwent home."})
            events.append({"event": "checkpoint", "step": step, "kind": "latest",
                           "path": f"{run_dir}/checkpoints/latest.safetensors"})
    return events


class FakeModel:
    def __init__(self, name: str, text: str, delay: float = 0.0, gate: threading.Event | None = None):
        self.name, self.text, self.delay, self.gate = name, text, delay, gate

    def known(self, prompt: str) -> str:
        return prompt

    def stream(self, prompt: str, settings, seed: int):
        for i in range(settings.length):
            if self.gate is not None:
                self.gate.wait(5)
            if self.delay:
                time.sleep(self.delay)
            yield self.text[(seed + i) % len(self.text)]


class FakeModels:
    def __init__(self, save_dir: str | Path = "samples", text: str = "abcdefghij klmnopqrst uvwxyz. ",
                 delay: float = 0.0, gate: threading.Event | None = None, choices=("best", "latest")):
        self.save_dir = Path(save_dir)
        self._choices = list(choices)
        self.default = self._choices[0]
        self.text, self.delay, self.gate = text, delay, gate
        self.loaded: list[str] = []

    def choices(self) -> list[str]:
        return self._choices

    def load(self, choice: str) -> FakeModel:
        self.loaded.append(choice)
        return FakeModel(f"{choice} · step 500", self.text, self.delay, self.gate)


def fake_inspection(text: str, hidden: int = 8, seed: int = 0):
    """A hand-built Inspection of ``text`` shaped like an LSTM layer's, its figures random from ``seed``."""
    import torch

    from charforge.inspection.extract import Inspection

    chars = sorted(set(text) | set("abc \n"))
    g = torch.Generator().manual_seed(seed)
    n, k = len(text), 5
    ids = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    top_ids = torch.rand(n, len(chars), generator=g).argsort(1)[:, :k]
    top_probs = torch.rand(n, k, generator=g).softmax(1).sort(1, descending=True).values
    traces = {"0.h": torch.randn(n, hidden, generator=g).tanh(), "0.c": 2 * torch.randn(n, hidden, generator=g),
              "0.gate.i": torch.rand(n, hidden, generator=g)}
    return Inspection(text, chars, ids, 6 * torch.rand(n, generator=g), top_ids, top_probs, traces)


class InspectingModel(FakeModel):
    """A fake model that also inspects: ``fake_inspection`` of what it knows, or ``error``."""

    def __init__(self, name: str, text: str, alphabet: str | None = None, error: Exception | None = None):
        super().__init__(name, text)
        self.alphabet, self.error = alphabet, error
        self.inspected: list[str] = []

    def known(self, prompt: str) -> str:
        return prompt if self.alphabet is None else "".join(c for c in prompt if c in self.alphabet)

    def inspect(self, text: str):
        self.inspected.append(text)
        if self.error is not None:
            raise self.error
        return fake_inspection(text)


class InspectingModels(FakeModels):
    """FakeModels whose models inspect (see ``InspectingModel``); ``models`` keeps those loaded."""

    def __init__(self, save_dir: str | Path = "samples", alphabet: str | None = None,
                 error: Exception | None = None, **kwargs):
        super().__init__(save_dir, **kwargs)
        self.alphabet, self.error = alphabet, error
        self.models: list[InspectingModel] = []

    def load(self, choice: str) -> InspectingModel:
        self.loaded.append(choice)
        self.models.append(InspectingModel(f"{choice} · step 500", self.text, self.alphabet, self.error))
        return self.models[-1]
