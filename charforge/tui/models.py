"""What the sampling screen samples from: checkpoints, loaded lazily (torch is imported on first use).

A model source offers ``choices()`` (checkpoint names), ``default``, ``save_dir`` and
``load(choice)``, which returns a model with ``stream(prompt, settings, seed)`` yielding one
character at a time. Tests inject a fake with the same members.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from charforge.errors import CharforgeError
from charforge.runs.directory import Run, checkpoint_names
from charforge.runs.header import checkpoint_step
from charforge.sampling.settings import Request, Settings


@dataclass
class LoadedModel:
    """A checkpoint ready to sample from."""

    name: str  # what labels its samples, e.g. "best · step 1200"
    engine: object  # a charforge.sampling.engine.BatchGenerator, which drops unknown prompt characters
    vocab_size: int
    step: int | None = None  # the training step the checkpoint was saved at

    def stream(self, prompt: str, settings: Settings, seed: int) -> Iterator[str]:
        """The characters of the sample ``charforge sample`` and ``generate`` give for this seed."""
        for piece in self.engine.stream(Request(prompt, settings), seed):
            yield from piece

    def known(self, prompt: str) -> str:
        """The prompt as the model reads it: characters it does not know are dropped."""
        index = self.engine.vocab.index
        return "".join(c for c in prompt if c in index)

    def inspect(self, text: str):
        """The model's :class:`~charforge.inspection.extract.Inspection` of ``text``, on its float32
        forward (every character must be one the model knows: pass ``known(text)``)."""
        from charforge.inspection.extract import inspect_model

        return inspect_model(self.engine.model, self.engine.vocab, text, self.engine.device)


class CheckpointModels:
    """The checkpoints of a run directory (best, latest, step-N), or one checkpoint file."""

    def __init__(self, target: str | Path, device: str = "auto", which: str = "best", precision: str = "auto"):
        self.target = Path(target)
        self.device = device
        self.precision = precision
        if not self.target.exists():
            raise CharforgeError(f"checkpoint {target} does not exist.")
        self.run = Run.of(self.target, writer=False)
        if self.target.is_file():
            self.folder = self.target.parent
        else:
            self.folder = self.run.checkpoints if self.run.checkpoints.is_dir() else self.target
        choices = self.choices()
        if not choices:
            raise CharforgeError(f"{target} holds no checkpoint yet.")
        self.default = which if which in choices else choices[0]

    def choices(self) -> list[str]:
        return [self.target.stem] if self.target.is_file() else checkpoint_names(self.folder)

    @property
    def save_dir(self) -> Path:
        return self.run.samples

    def load(self, choice: str) -> LoadedModel:
        from charforge.sampling.loading import load_engine

        path = self.target if self.target.is_file() else self.folder / f"{choice}.safetensors"
        engine = load_engine(path, device=self.device, precision=self.precision, drop_unknown=True)
        step = engine.origin.step
        return LoadedModel(f"{choice} · step {step}", engine, len(engine.vocab), step)


def sample_latest(run_dir: str | Path, length: int = 200, temperature: float = 0.8) -> tuple[str, str]:
    """(title, text): a sample from a run's latest checkpoint, for the training screen's "sample now".

    It runs ``charforge sample`` in a child process: importing torch into the UI's process would
    freeze the screen for up to a second.
    """
    import random
    import subprocess
    import sys

    seed = random.randrange(2**31)
    path = Run(run_dir).checkpoint("latest")
    step = checkpoint_step(path)
    done = subprocess.run(
        [sys.executable, "-m", "charforge", "sample", str(path), "--length", str(length), "-t", str(temperature),
         "--seed", str(seed), "--device", "cpu"], capture_output=True, text=True, encoding="utf-8",
        errors="replace", stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"charforge sample exited with status {done.returncode}"]
        raise CharforgeError(lines[-1].removeprefix("Error: "))
    text = done.stdout[:-1] if done.stdout.endswith("\n") else done.stdout
    return f"sample now · latest · step {step} · T {temperature:.1f} · seed {seed}", text
