"""Everything that defines a training run, as one JSON-able record."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from charforge.errors import CharforgeError, shown

SCHEDULES = ("constant", "step", "cosine")
CLIP_MODES = ("norm", "value", "none")

# Fields that fix the model's shape: a resume may not change them.
ARCHITECTURE = ("cell", "cell_options", "hidden_size", "num_layers", "embedding_dim", "output_bias")
# The longest sample a validation prints: a glance at the model, not its output (`charforge sample`
# writes any length), and short enough that no stored value can stall training.
MAX_SAMPLE_LENGTH = 100_000


@dataclass
class TrainConfig:
    corpus: str = "python-stdlib"
    encoding: str = "utf-8"
    errors: str = "strict"
    val_fraction: float = 0.1
    task_options: dict[str, Any] = field(default_factory=dict)  # when ``corpus`` names a task
    init_from: str | None = None  # the checkpoint whose weights the run started from (fine-tuning)
    # model
    cell: str = "lstm"
    cell_options: dict[str, Any] = field(default_factory=dict)
    # Defaults chosen by measurement (benchmarks/NOTES.md): the best validation loss per minute of
    # a 2-core CPU on tiny-shakespeare and Grimms, with and without AVX-512 (section 14 there).
    hidden_size: int = 384
    num_layers: int = 1
    dropout: float = 0.0
    embedding_dim: int = 64  # 0: one-hot input
    output_bias: bool = True
    # optimisation
    optimizer: str = "adam"
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    lr: float = 4e-3
    schedule: str = "cosine"
    warmup: int = 0
    lr_decay: float = 0.95
    lr_decay_every: int = 10_000
    min_lr_ratio: float = 0.05
    clip: str = "norm"
    clip_value: float = 5.0
    batch_size: int = 64
    seq_len: int = 64
    # budget: the first of these to run out ends training; none given means `minutes` below
    steps: int | None = None
    epochs: float | None = None
    minutes: float | None = None
    seed: int = 1337
    device: str = "auto"
    threads: int = 0  # 0: adaptive, the count that is fastest now (charforge.threads); N pins it
    # bookkeeping: validation and checkpoints every N steps or S seconds, or by the rule of
    # charforge.cadence when neither is given; validation time counts against a --minutes budget
    log_every: int = 10
    eval_every: int | None = None
    eval_seconds: float | None = None
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    sample_length: int = 200
    keep_checkpoints: int = 0  # also keep this many step-numbered checkpoints

    DEFAULT_MINUTES = 3.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """A configuration read from JSON (a checkpoint), each field's name and type checked."""
        if not isinstance(data, dict):
            raise CharforgeError("the configuration is not a JSON object.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CharforgeError(f"unknown configuration field(s): {', '.join(map(str, unknown))}.")
        defaults = cls()
        for name, value in data.items():
            _check_type(name, value, _NULLABLE.get(name) or type(getattr(defaults, name)))
        return cls(**data)

    def check(self) -> "TrainConfig":
        """Reject values no run could use, with a one-line reason."""
        positive = ["hidden_size", "num_layers", "batch_size", "seq_len", "log_every", "eval_every",
                    "checkpoint_every"]
        for name in positive:
            value = getattr(self, name)
            if value is None and name in _NULLABLE:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CharforgeError(f"--{name.replace('_', '-')} must be a positive integer, not {value!r}.")
        for every, seconds in (("eval_every", "eval_seconds"), ("checkpoint_every", "checkpoint_seconds")):
            value = getattr(self, seconds)
            if value is not None and not 0 < value < math.inf:
                raise CharforgeError(f"--{every.replace('_', '-')} must be a positive number of seconds, "
                                     f"not {value!r}.")
            if value is not None and getattr(self, every) is not None:
                raise CharforgeError(f"--{every.replace('_', '-')} takes steps or seconds, not both.")
        for name in ("steps", "epochs", "minutes"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise CharforgeError(f"--{name} must be positive, not {value!r}.")
        if not 0 < self.lr < math.inf:
            raise CharforgeError(f"--lr must be positive (and finite), not {self.lr!r}.")
        if not 0 <= self.dropout < 1:
            raise CharforgeError(f"--dropout must be in [0, 1), not {self.dropout!r}.")
        if not 0 <= self.val_fraction < 1:
            raise CharforgeError(f"--val-fraction must be in [0, 1), not {self.val_fraction!r}.")
        for name, flag in (("embedding_dim", "embedding-dim"), ("threads", "threads"), ("warmup", "warmup"),
                           ("keep_checkpoints", "keep"), ("sample_length", "sample-length")):
            if getattr(self, name) < 0:
                raise CharforgeError(f"--{flag} must not be negative, not {getattr(self, name)!r}.")
        if self.sample_length > MAX_SAMPLE_LENGTH:
            raise CharforgeError(f"--sample-length must be at most {MAX_SAMPLE_LENGTH} (the sample each validation "
                                 f"prints; charforge sample writes longer text), not {self.sample_length!r}.")
        if not 0 <= self.seed < 2**63:
            raise CharforgeError(f"--seed must be in [0, 2**63), not {self.seed!r}.")
        if self.schedule not in SCHEDULES:
            raise CharforgeError(f"--schedule must be one of {', '.join(SCHEDULES)}.")
        if self.clip not in CLIP_MODES:
            raise CharforgeError(f"--clip must be one of {', '.join(CLIP_MODES)}.")
        if self.clip != "none" and not self.clip_value > 0:
            raise CharforgeError(f"--clip-value must be positive, not {self.clip_value!r}.")
        if self.lr_decay_every <= 0 or not 0 < self.lr_decay <= 1 or not 0 <= self.min_lr_ratio <= 1:
            raise CharforgeError("--lr-decay must be in (0, 1], --lr-decay-every positive, "
                                 "--min-lr-ratio in [0, 1].")
        check_device_name(self.device)
        return self


def check_device_name(name: Any) -> None:
    """The devices charforge runs on, by name (whether one is there is :func:`charforge.device.pick_device`'s
    question): never one that holds no data, such as ``meta``."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", name):
        raise CharforgeError(f"--device must be auto, cpu, cuda[:N] or mps, not {name!r}.")


_BUDGETS = {"steps": int, "epochs": float, "minutes": float}  # None (no limit) is allowed too
_NULLABLE = {**_BUDGETS, "eval_every": int, "eval_seconds": float, "checkpoint_every": int,
             "checkpoint_seconds": float, "init_from": str}  # None: by the cadence rule, from scratch


def _check_type(name: str, value: Any, kind: type) -> None:
    """Reject a stored field of the wrong JSON type (a hand-edited or damaged configuration)."""
    if value is None and name in _NULLABLE:
        return
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if kind is dict and ok:
        ok = all(isinstance(k, str) for k in value)
    if not ok:
        raise CharforgeError(f"configuration field {name!r} should be of type {kind.__name__}, "
                             f"not {shown(value, 40)}.")
