"""What the sampling screen samples from: checkpoints, loaded lazily (torch is imported on first use).

A model source offers ``choices()`` (checkpoint names) and ``load(choice)``, which returns a
model with ``stream(prompt, settings, seed)`` yielding one character at a time. Tests inject
a fake with the same three methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from charforge import runs
from charforge.errors import CharforgeError
from charforge.tui.settings import SampleSettings


@dataclass
class LoadedModel:
    """A checkpoint ready to sample from."""

    name: str  # what labels its samples, e.g. "best · step 1200"
    engine: object  # a charforge.generate.BatchGenerator, which drops unknown prompt characters
    vocab_size: int

    def stream(self, prompt: str, settings: SampleSettings, seed: int) -> Iterator[str]:
        """The characters of the sample ``charforge sample`` and ``generate`` give for this seed."""
        from charforge.generate import Request, Settings

        request = Request(prompt, Settings(settings.length, settings.temperature, settings.top_k, settings.top_p))
        for piece in self.engine.stream(request, seed):
            yield from piece

    def known(self, prompt: str) -> str:
        """The prompt as the model reads it: characters it does not know are dropped."""
        index = self.engine.vocab.index
        return "".join(c for c in prompt if c in index)


class CheckpointModels:
    """The checkpoints of a run directory (best, latest, step-N), or one checkpoint file."""

    def __init__(self, target: str | Path, device: str = "cpu", which: str = "best", precision: str = "auto"):
        self.target = Path(target)
        self.device = device
        self.precision = precision
        if self.target.is_dir():
            folder = self.target / runs.CHECKPOINTS if (self.target / runs.CHECKPOINTS).is_dir() else self.target
            self.folder, self.run_dir = folder, runs.run_dir_of(folder / "x.safetensors")
        elif self.target.exists():
            self.folder, self.run_dir = self.target.parent, runs.run_dir_of(self.target)
        else:
            raise CharforgeError(f"checkpoint {target} does not exist.")
        choices = self.choices()
        if not choices:
            raise CharforgeError(f"{target} holds no checkpoint yet.")
        self.default = which if which in choices else choices[0]

    def choices(self) -> list[str]:
        if self.target.is_file():
            return [self.target.stem]
        names = sorted(p.stem for p in self.folder.glob("*.safetensors"))
        first = [n for n in ("best", "latest") if n in names]
        return first + sorted((n for n in names if n not in first), reverse=True)

    @property
    def save_dir(self) -> Path:
        return self.run_dir / "samples"

    def load(self, choice: str) -> LoadedModel:
        from charforge.checkpoint import load_model
        from charforge.generate import BatchGenerator
        from charforge.plugins import Registry, make_plugin_manager
        from charforge.trainer import pick_device

        path = self.target if self.target.is_file() else self.folder / f"{choice}.safetensors"
        device = pick_device(self.device)
        model, vocab, ckpt = load_model(path, Registry(make_plugin_manager()), device)
        engine = BatchGenerator(model, vocab, device, drop_unknown=True, precision=self.precision)
        return LoadedModel(f"{choice} · step {ckpt.meta['step']}", engine, len(vocab))


def checkpoint_step(path: str | Path) -> int | None:
    """The training step a checkpoint was saved at, read from its header alone (no torch)."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(size, 50_000_000)))
        return json.loads(header["__metadata__"]["charforge"])["step"]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def sample_latest(run_dir: str | Path, length: int = 200, temperature: float = 0.8) -> tuple[str, str]:
    """(title, text): a sample from a run's latest checkpoint, for the training screen's "sample now".

    It runs ``charforge sample`` in a child process: importing torch into the UI's process would
    freeze the screen for up to a second (measured: 0.7 s on a loaded 2-core machine).
    """
    import random
    import subprocess
    import sys

    seed = random.randrange(2**31)
    path = Path(run_dir) / runs.CHECKPOINTS / "latest.safetensors"
    step = checkpoint_step(path)
    done = subprocess.run(
        [sys.executable, "-m", "charforge", "sample", str(path), "--length", str(length), "-t", str(temperature),
         "--seed", str(seed)], capture_output=True, text=True, encoding="utf-8", errors="replace",
        stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"charforge sample exited with status {done.returncode}"]
        raise CharforgeError(lines[-1].removeprefix("Error: "))
    text = done.stdout[:-1] if done.stdout.endswith("\n") else done.stdout
    return f"sample now · latest · step {step} · T {temperature:.1f} · seed {seed}", text
