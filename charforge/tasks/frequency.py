"""The frequency-discrimination task of the Phased LSTM paper (Neil, Pfeiffer & Liu 2016, task 1),
with asynchronous sampling: can a recurrent model tell a sine wave's period from irregular samples?

Each example is ``sin(2 pi t / P + phase)`` sampled at random, sorted times in ``[0, D]`` ms, with
``D ~ U(15, 125)``, a random phase and a random number of samples. Class 1: ``P ~ U(5, 6)`` ms;
class 0: ``P`` log-uniform in ``[1, 100]`` ms outside ``[5, 6]``. The classes are balanced.

:class:`Frequency` is the task (``charforge train frequency``, ``charforge compare frequency``,
``charforge frequency-task``): the data are (value, timestamp) sequences, not text, and they go
through the ordinary model and trainer by the cell contract, ``cell(x, state, t)``:

* a cell with ``uses_time`` (``phased-lstm``) gets the value as its input and the timestamp in ms
  (float64) as its clock;
* any other cell (the baseline, ``lstm``) gets the value and the timestamp (divided by 100, so
  that it lies in [0, 1.25]) as two input features.

The model reads a whole wave and is scored on its output at the last sample. The waves of one
batch have the same number of samples (each batch draws its own), so no padding is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from charforge.errors import CharforgeError
from charforge.options import Option
from charforge.tasks.settings import FREQUENCY
from charforge.tasks.task import IGNORE, Sequences, Task, TaskData
from charforge.vocab import Vocab

TARGET = (5.0, 6.0)  # ms: the periods of class 1
PERIODS = (1.0, 100.0)  # ms: the log-uniform range of class 0's periods (TARGET left out)
DURATION = (15.0, 125.0)  # ms
TIME_SCALE = 100.0  # a time-blind cell's timestamp feature is t / TIME_SCALE
# Bounds on the task's sizes, far above the paper's: a final validation reads every held-out wave,
# and a batch's waves are made whole, so larger counts only stall a run or exhaust memory.
MAX_WAVES = 10**6
MAX_POINTS = 10**4


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




class Frequency(Task):
    name = "frequency"
    help = "The Phased LSTM paper's task 1: tell waves of period 5-6 ms from others, sampled at random times."
    metric = "val_accuracy"
    text = False
    options = {
        "samples": Option(FREQUENCY.samples, "Training waves, drawn once from the seed."),
        "test_samples": Option(FREQUENCY.test_samples, "Held-out waves, drawn from another stream of the seed."),
        "min_points": Option(FREQUENCY.min_points, "Fewest samples per wave."),
        "max_points": Option(FREQUENCY.max_points, "Most samples per wave."),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        if not 1 <= settings["min_points"] <= settings["max_points"] <= MAX_POINTS:
            raise CharforgeError(f"task 'frequency' needs 1 <= min_points <= max_points <= {MAX_POINTS}, not "
                                 f"{settings['min_points']} and {settings['max_points']}.")
        for name in ("samples", "test_samples"):
            if not 2 <= settings[name] <= MAX_WAVES:
                raise CharforgeError(f"task 'frequency' needs {name} from 2 (one wave of each class) to "
                                     f"{MAX_WAVES}, not {settings[name]}.")

    def defaults(self) -> dict:
        return {"hidden_size": FREQUENCY.hidden_size, "batch_size": FREQUENCY.batch_size, "lr": FREQUENCY.lr,
                "clip_value": 1.0, "embedding_dim": 0, "sample_length": 0}

    def data(self, batch_size, seq_len, seed, device) -> TaskData:
        low, high = self.settings["min_points"], self.settings["max_points"]

        def batches(stream: int, count: int) -> Sequences:
            def make(i: int, with_time: bool):
                key = hash((seed, stream, i)) % 2**63
                points = low + key % (high - low + 1)  # this batch's waves all have this many samples
                waves = make_waves(batch_size, points, points, seed=key)
                targets = torch.full((batch_size, points), IGNORE)
                targets[:, -1] = waves.labels
                return features(waves, with_time), targets, waves.times
            return Sequences(make, max(count // batch_size, 1), batch_size, high, device)

        return TaskData(Vocab(["0", "1"]), batches(0, self.settings["samples"]),
                        batches(1, self.settings["test_samples"]), input_size=lambda uses_time: 1 if uses_time else 2)
