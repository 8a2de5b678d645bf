"""The frequency task's defaults, apart from the task itself so that ``charforge frequency-task --help``
shows them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrequencyDefaults:
    """What a frequency-task run uses unless told otherwise: a few minutes for both models on 2 cores."""

    steps: int = 1000  # optimizer steps for each model
    hidden_size: int = 32
    layers: int = 1
    batch_size: int = 32
    lr: float = 1e-2  # Adam's peak rate, cosine-decayed to 5% of it
    samples: int = 2000  # training waves
    test_samples: int = 1000  # held-out waves, drawn from another stream of the seed
    min_points: int = 10  # samples per wave: uniform in min_points..max_points
    max_points: int = 100
    seed: int = 0
    threads: int = 0  # 0: adaptive, as charforge train


FREQUENCY = FrequencyDefaults()
