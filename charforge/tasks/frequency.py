"""The frequency-discrimination task of the Phased LSTM paper (Neil, Pfeiffer & Liu 2016, task 1),
with asynchronous sampling: can a recurrent model tell a sine wave's period from irregular samples?

Each example is ``sin(2 pi t / P + phase)`` sampled at random, sorted times in ``[0, D]`` ms, with
``D ~ U(15, 125)``, a random phase and a random number of samples. Class 1: ``P ~ U(5, 6)`` ms;
class 0: ``P`` log-uniform in ``[1, 100]`` ms outside ``[5, 6]``. The classes are balanced.
Sequences are left-padded to a common length, and a mask marks the real samples.

The data are (value, timestamp) sequences, not text, and they go through any registered cell
by the cell contract, ``cell(x, state, t)``:

* a cell with ``uses_time`` (``phased-lstm``) gets the value as its input and the timestamp in ms
  (float64) as its clock;
* any other cell (the baseline, ``lstm``) gets the value and the timestamp (divided by 100, so
  that it lies in [0, 1.25]) as two input features.

:func:`run` trains both on the same data and returns their held-out accuracies;
``charforge frequency-task`` is the same from the command line. :func:`make_waves`,
:class:`SequenceClassifier` and :func:`masked_forward` are the reusable parts: the last runs
any cell over left-padded sequences so that padded steps leave the state untouched.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charforge.cell import Cell, State
from charforge.errors import CharforgeError
from charforge.options import resolve_options
from charforge.tasks.settings import FrequencySettings

TARGET = (5.0, 6.0)  # ms: the periods of class 1
PERIODS = (1.0, 100.0)  # ms: the log-uniform range of class 0's periods (TARGET left out)
DURATION = (15.0, 125.0)  # ms
TIME_SCALE = 100.0  # a time-blind cell's timestamp feature is t / TIME_SCALE


@dataclass
class Waves:
    """A batch of left-padded (value, timestamp) sequences with their labels."""

    values: Tensor  # (N, T, 1) float32; 0 where padded
    times: Tensor  # (N, T) float64, ms; padded steps repeat the first real time
    mask: Tensor  # (N, T) bool; True on real samples, which are right-aligned
    labels: Tensor  # (N,) int64: 1 when the period is in TARGET
    periods: Tensor  # (N,) float64, ms

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(1)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor) -> "Waves":
        """The examples ``index``, cut to their longest length (left padding, so the last columns)."""
        width = max(int(self.lengths[index].max()), 1)
        return Waves(self.values[index, -width:], self.times[index, -width:], self.mask[index, -width:],
                     self.labels[index], self.periods[index])


def make_waves(count: int, min_points: int = 10, max_points: int = 100, seed: int = 0,
               duration: tuple[float, float] = DURATION) -> Waves:
    """``count`` examples (half of each class, shuffled), each with U{min_points..max_points} samples."""
    if not 1 <= min_points <= max_points:
        raise CharforgeError(f"the points per wave must satisfy 1 <= min <= max, not {min_points}, {max_points}.")
    if count < 2:
        raise CharforgeError(f"the frequency task needs at least 2 examples, not {count}.")
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    labels = (torch.arange(count) % 2)[torch.randperm(count, generator=gen)]
    periods = torch.empty(count, dtype=f64)
    positive = labels == 1
    periods[positive] = TARGET[0] + (TARGET[1] - TARGET[0]) * torch.rand(int(positive.sum()), dtype=f64,
                                                                       generator=gen)
    log_lo, log_hi = math.log(PERIODS[0]), math.log(PERIODS[1])
    todo = ~positive
    while todo.any():  # log-uniform, redrawing the few that land in the target band
        n = int(todo.sum())
        periods[todo] = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, dtype=f64, generator=gen))
        todo = todo & (periods >= TARGET[0]) & (periods <= TARGET[1])
    durations = duration[0] + (duration[1] - duration[0]) * torch.rand(count, dtype=f64, generator=gen)
    phases = 2 * math.pi * torch.rand(count, dtype=f64, generator=gen)
    lengths = torch.randint(min_points, max_points + 1, (count,), generator=gen)
    width = int(lengths.max())
    # Sorted uniform times in [0, D], right-aligned: column j of row i is real when j >= width - n_i.
    raw = torch.rand(count, width, dtype=f64, generator=gen)
    mask = torch.arange(width) >= (width - lengths).unsqueeze(1)
    raw = torch.where(mask, raw, torch.zeros((), dtype=f64)).sort(1).values
    times = raw * durations.unsqueeze(1)
    first = times.gather(1, (width - lengths).unsqueeze(1))
    times = torch.where(mask, times, first)
    values = torch.sin(2 * math.pi * times / periods.unsqueeze(1) + phases.unsqueeze(1))
    values = torch.where(mask, values, torch.zeros((), dtype=f64)).float().unsqueeze(2)
    return Waves(values, times, mask, labels, periods)


def features(waves: Waves, uses_time: bool) -> Tensor:
    """A model's inputs: the value alone for a cell with a clock, value and t / 100 otherwise."""
    if uses_time:
        return waves.values
    scaled = (waves.times / TIME_SCALE).float() * waves.mask
    return torch.cat([waves.values, scaled.unsqueeze(2)], 2)


def masked_forward(cell: Cell, x: Tensor, state: State, t: Tensor | None, mask: Tensor
                   ) -> tuple[Tensor, State]:
    """Runs ``cell`` over left-padded sequences so that padded steps leave the state as it was.

    Columns where every sequence is padding are skipped; columns where some are (a short stretch
    when batches group similar lengths) run one :meth:`Cell.step` at a time, keeping the old
    state where the mask is False; the rest, where every sequence is real, is one fast
    ``cell(x, state, t)`` call. Outputs at padded steps are 0.
    """
    steps = x.shape[1]
    any_real = mask.any(0)
    all_real = mask.all(0)
    start = int(any_real.float().argmax()) if bool(any_real.any()) else steps
    full = int(all_real.float().argmax()) if bool(all_real.any()) else steps
    full = max(full, start)
    outputs = [x.new_zeros(x.shape[0], start, cell.hidden_size)]
    for i in range(start, full):
        h, new = cell.step(x[:, i], state, None if t is None else t[:, i])
        keep = mask[:, i].unsqueeze(1)
        state = tuple(torch.where(keep, n, s) for n, s in zip(new, state))
        outputs.append(torch.where(keep, h, torch.zeros((), dtype=h.dtype)).unsqueeze(1))
    if full < steps:
        out, state = cell(x[:, full:], state, None if t is None else t[:, full:])
        outputs.append(out)
    return torch.cat(outputs, 1), state


class SequenceClassifier(nn.Module):
    """Stacked cells over (value, timestamp) sequences, classified from the last state."""

    def __init__(self, cell: type[Cell], input_size: int, hidden_size: int, num_classes: int = 2,
                 num_layers: int = 1, cell_options: dict | None = None):
        super().__init__()
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.layers = nn.ModuleList(cell(size, hidden_size, **(cell_options or {})) for size in sizes)
        self.head = nn.Linear(hidden_size, num_classes)
        self.uses_time = cell.uses_time

    def forward(self, x: Tensor, t: Tensor, mask: Tensor) -> Tensor:
        """``x`` (B, T, features), ``t`` (B, T) float64, ``mask`` (B, T), left-padded -> logits (B, classes)."""
        clock = t if self.uses_time else None
        for layer in self.layers:
            state = layer.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
            x, state = masked_forward(layer, x, state, clock, mask)
        return self.head(state[0])  # every cell's state starts with h


def length_batches(lengths: Tensor, batch_size: int, gen: torch.Generator | None, jitter: float = 8.0
                   ) -> list[Tensor]:
    """Index batches of similar lengths (so that little padding needs stepping), in random order
    when ``gen`` is given; ``jitter`` (in samples) varies which examples share a batch."""
    noise = torch.rand(len(lengths), generator=gen) * jitter if gen is not None else 0.0
    chunks = list(torch.argsort(lengths.double() + noise).split(batch_size))
    if gen is not None:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=gen)]
    return chunks


@torch.no_grad()
def accuracy(model: SequenceClassifier, waves: Waves, batch_size: int = 256) -> float:
    """Held-out accuracy, in evaluation mode (Phased LSTM's closed gates do not leak)."""
    model.eval()
    correct = 0
    for index in length_batches(waves.lengths, batch_size, None):
        batch = waves.subset(index)
        logits = model(features(batch, model.uses_time), batch.times, batch.mask)
        correct += int((logits.argmax(1) == batch.labels).sum())
    return correct / len(waves)


def train_classifier(cell: type[Cell], train: Waves, test: Waves, hidden_size: int, num_layers: int = 1,
                     steps: int = 1000, batch_size: int = 32, lr: float = 1e-2, seed: int = 0,
                     cell_options: dict | None = None, log: Callable[[str], None] | None = None,
                     label: str = "") -> dict:
    """Trains one classifier with Adam (cosine-decayed rate, gradient norm clipped at 1) and
    returns its held-out accuracy, final training loss and seconds."""
    torch.manual_seed(seed)
    model = SequenceClassifier(cell, 1 if cell.uses_time else 2, hidden_size, 2, num_layers, cell_options)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    started = time.perf_counter()
    batches: list[Tensor] = []
    losses: list[float] = []
    model.train()
    for step in range(steps):
        if not batches:
            batches = length_batches(train.lengths, batch_size, gen)
        batch = train.subset(batches.pop())
        for group in opt.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        logits = model(features(batch, model.uses_time), batch.times, batch.mask)
        loss = F.cross_entropy(logits, batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log and (step + 1) % max(steps // 10, 1) == 0:
            recent = losses[-max(steps // 10, 1):]
            log(f"  {label} step {step + 1}/{steps}: training loss {sum(recent) / len(recent):.3f} "
                f"({time.perf_counter() - started:.0f} s)")
    acc = accuracy(model, test)
    tail = losses[-max(steps // 10, 1):]
    return {"accuracy": acc, "train_loss": sum(tail) / len(tail), "seconds": time.perf_counter() - started,
            "parameters": sum(p.numel() for p in model.parameters())}


Settings = FrequencySettings


def run(log: Callable[[str], None] | None = None, registry=None, **settings) -> dict:
    """Trains each of ``cells`` (Phased LSTM and the LSTM baseline by default) on the same waves.

    Keyword arguments are :class:`~charforge.tasks.settings.FrequencySettings` fields; ``log``
    gets progress lines. Returns ``{"settings": {...}, CELL: {"accuracy",
    "train_loss", "seconds", "parameters"}, ...}``; accuracies are on ``test_samples`` held-out
    waves drawn with another seed.
    """
    config = Settings(**settings).check()
    # Like the trainer: one thread for small models (thread hand-offs cost more than they save,
    # and far more on a loaded machine), all cores above.
    torch.set_num_threads(config.threads or (1 if config.hidden_size * config.layers < 512 else os.cpu_count() or 1))
    if registry is None:
        from charforge.plugins import Registry, make_plugin_manager

        registry = Registry(make_plugin_manager())
    train = make_waves(config.samples, config.min_points, config.max_points, seed=config.seed)
    test = make_waves(config.test_samples, config.min_points, config.max_points, seed=config.seed + 7919)
    result: dict = {"settings": asdict(config)}
    for name in config.cells:
        cell = registry.get("cell", name).obj
        options = resolve_options(f"cell {name!r}", cell.options, config.cell_options if cell.uses_time else {})
        if log:
            log(f"{name}: {config.layers}x{config.hidden_size}, {config.steps} steps of {config.batch_size} "
                f"waves ({config.samples} for training, {config.test_samples} held out)")
        result[name] = train_classifier(cell, train, test, config.hidden_size, config.layers, config.steps,
                                        config.batch_size, config.lr, config.seed, options, log, name)
        if log:
            r = result[name]
            log(f"{name}: held-out accuracy {r['accuracy']:.1%} ({r['seconds']:.0f} s)")
    return result
