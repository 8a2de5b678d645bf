"""The run directory and its one owner, :class:`Run`: every file's name, its creation, its checkpoints.

```
RUN/
  config.json          the resolved configuration
  tokenizer.json       the vocabulary
  metrics.jsonl        one JSON object per event
  .lock                held by the process training it (charforge.runs.lock)
  checkpoints/         latest, best and step-N .safetensors
  samples/             what the sampling screen saves
```

Only the process that owns a run writes to it (``writer``), and it holds the run's lock while it
trains, so a second process cannot train the same run; when several processes train one run
together, the others open it with ``writer=False`` and every write becomes a no-op. Nothing here
imports torch, so the terminal UI can read runs freely.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.runs.lock import RunLock
from charforge.runs.metrics import MetricsLog, NoLog, read_metrics

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
SUFFIX = ".safetensors"
KINDS = ("best", "latest")  # the checkpoints every run keeps; step-N ones are kept with --keep
LAST = "last"  # RUNS_DIR/last: a link to the run started last there, so `charforge sample runs/last` works


def step_kind(step: int) -> str:
    """The name of the step-numbered checkpoint of ``step``."""
    return f"step-{step:08d}"


def step_number(path: Path) -> int | None:
    """N of a ``step-N.safetensors`` checkpoint, else None."""
    digits = path.name.removeprefix("step-").removesuffix(SUFFIX)
    return int(digits) if path.name.startswith("step-") and digits.isdigit() else None


class Run:
    """A run directory: where its files live, which checkpoint is which, and (for its writer) creating it."""

    def __init__(self, path: str | Path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self.lock: RunLock | None = None  # held while this process trains the run

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}{'' if self.writer else ', writer=False'})"

    # -- finding runs -------------------------------------------------------------------------

    @classmethod
    def of(cls, target: str | Path, writer: bool = True) -> "Run":
        """The run a run directory, its ``checkpoints`` folder or a checkpoint file in it belongs to."""
        path = Path(target)
        if path.is_symlink() and path.is_dir():  # RUNS_DIR/last: name the run it points to
            path = path.parent / os.readlink(path)
        if path.is_dir():
            return cls(path.parent if path.name == CHECKPOINTS else path, writer)
        return cls(path.parent.parent if path.parent.name == CHECKPOINTS else path.parent, writer)

    @classmethod
    def create(cls, root: str | Path, name: str, explicit: bool, config: dict[str, Any], tokenizer: str) -> "Run":
        """A new run directory holding its config and vocabulary, made whole or not at all, and locked
        for this process (``lock``).

        The files are written into a hidden folder beside it, which is then renamed into place:
        a crash or a full disk never leaves a half-made run behind. An explicit ``name`` that
        exists is an error; a default one gets a numbered suffix.
        """
        root = Path(root)
        path = root / name
        if path.exists():
            if explicit:
                raise CharforgeError(f"{path} already holds a run: continue it with --resume {path}, "
                                     f"or choose another --name.")
            n = 2
            while (root / f"{name}-{n}").exists():
                n += 1
            path = root / f"{name}-{n}"
        staging = root / f".{path.name}.creating{os.getpid()}"
        lock = None
        try:
            (staging / CHECKPOINTS).mkdir(parents=True)
            (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            (staging / TOKENIZER).write_text(tokenizer, encoding="utf-8")
            lock = RunLock.acquire(staging)  # the lock moves with the folder: no one can take the new run first
            if path.exists():  # another process took the name meanwhile
                raise FileExistsError(17, "it was created meanwhile by another process", str(path))
            os.rename(staging, path)
        except (OSError, CharforgeError) as exc:
            if lock is not None:
                lock.release()
            shutil.rmtree(staging, ignore_errors=True)
            reason = exc.strerror or exc if isinstance(exc, OSError) else str(exc).rstrip(".")
            raise CharforgeError(f"cannot create run directory {path}: {reason}.") from None
        _point_last(root, path.name)
        run = cls(path)
        run.lock = lock
        return run

    # -- its files ----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    def is_run(self) -> bool:
        """Whether the folder looks like a run (it has a config or a metrics log)."""
        return self.config_path.exists() or self.metrics_path.exists()

    def config(self) -> TrainConfig:
        """The configuration the run was started with (CharforgeError, naming the run, when unreadable)."""
        try:
            return TrainConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CharforgeError(f"{self.path}: its {CONFIG} cannot be read ({exc}).") from None
        except CharforgeError as exc:  # readable, but not a configuration
            raise CharforgeError(f"{self.path}: its {CONFIG}: {exc}") from None

    def checkpoint(self, kind: str) -> Path:
        """The path of checkpoint ``kind`` (``best``, ``latest`` or ``step-N``), whether it exists or not."""
        return self.checkpoints / f"{kind}{SUFFIX}"

    def checkpoint_names(self) -> list[str]:
        """The checkpoints present: best and latest first, then step-N, newest first."""
        return checkpoint_names(self.checkpoints)

    def resolve(self, which: str = "best") -> Path:
        """The checkpoint ``which`` (``best`` falls back to ``latest``, for a run not yet validated)."""
        return _find(self.checkpoints, which, self.path)

    def events(self) -> list[dict]:
        """Every complete event of ``metrics.jsonl``."""
        return read_metrics(self.metrics_path)

    # -- writing (the owner only) ---------------------------------------------------------------

    def acquire(self) -> None:
        """Take the run's lock for this process (a one-line CharforgeError naming the holder when another
        process trains it)."""
        if self.writer and self.lock is None:
            self.lock = RunLock.acquire(self.path)

    def release(self) -> None:
        """Give the run up for other processes to train."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def metrics_log(self) -> MetricsLog | NoLog:
        """Where this process appends its events: the run's log for its writer, nowhere for the others."""
        return MetricsLog(self.metrics_path) if self.writer else NoLog()

    def prune(self, keep: int) -> None:
        """Delete all but the ``keep`` newest step-numbered checkpoints (latest and best are separate)."""
        if not self.writer:
            return
        numbered = sorted((n, p) for p in self.checkpoints.glob(f"step-*{SUFFIX}")
                          if (n := step_number(p)) is not None)
        for _, old in numbered[: max(len(numbered) - keep, 0)]:
            old.unlink(missing_ok=True)


def _point_last(root: Path, name: str) -> None:
    """Point ``root/last`` at the run ``name`` (replaced atomically); a real folder of that name, or a
    system without symbolic links, is left alone."""
    last = root / LAST
    if last.exists() and not last.is_symlink():
        return
    link = root / f".{LAST}.{os.getpid()}"
    try:
        link.unlink(missing_ok=True)
        os.symlink(name, link, target_is_directory=True)
        os.replace(link, last)
    except OSError:
        link.unlink(missing_ok=True)


def checkpoint_names(folder: Path) -> list[str]:
    """The checkpoints in ``folder``: best and latest first, then the others (step-N), newest first."""
    names = sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    first = [n for n in KINDS if n in names]
    return first + sorted((n for n in names if n not in first), reverse=True)


def resolve_checkpoint(target: str | Path, which: str = "best") -> Path:
    """A checkpoint file as given, or checkpoint ``which`` of a run directory (or of a folder of checkpoints)."""
    path = Path(target)
    if path.is_dir():
        run = Run.of(path)
        return _find(run.checkpoints if run.checkpoints.is_dir() else path, which, target)
    if not path.exists():
        raise CharforgeError(f"checkpoint {target} does not exist.")
    if not path.is_file():
        raise CharforgeError(f"checkpoint {target} is not a regular file.")
    return path


def _find(folder: Path, which: str, named: str | Path) -> Path:
    order = [which, "latest"] if which != "latest" else ["latest"]
    for kind in order:
        path = folder / f"{kind}{SUFFIX}"
        if path.is_file():
            return path
    raise CharforgeError(f"{named} holds no checkpoint ({' or '.join(f'{kind}{SUFFIX}' for kind in order)}).")
