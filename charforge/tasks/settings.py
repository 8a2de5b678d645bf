"""The frequency task's settings, apart from the task itself so that the CLI can show the
defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from charforge.errors import CharforgeError


@dataclass
class FrequencySettings:
    """Everything a frequency-task run depends on. The defaults take a few minutes on 2 CPU cores."""

    steps: int = 1000  # optimizer steps for each model
    hidden_size: int = 32
    layers: int = 1
    batch_size: int = 32
    lr: float = 1e-2  # Adam's peak rate, cosine-decayed to 5% of it
    samples: int = 2000  # training waves
    test_samples: int = 1000  # held-out waves, drawn with another seed
    min_points: int = 10  # samples per wave: uniform in min_points..max_points
    max_points: int = 100
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0: one for small models (hidden x layers < 512), all cores above
    cells: tuple[str, ...] = ("phased-lstm", "lstm")  # the models compared: a timed cell and a baseline
    cell_options: dict = field(default_factory=dict)  # options of the cells that use time

    def check(self) -> "FrequencySettings":
        for name in ("steps", "hidden_size", "layers", "batch_size", "samples", "test_samples", "min_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CharforgeError(f"--{name.replace('_', '-')} must be a positive integer, not {value!r}.")
        if self.samples < 2 or self.test_samples < 2:
            raise CharforgeError("--samples and --test-samples must be at least 2 (one wave of each class).")
        if self.max_points < self.min_points:
            raise CharforgeError(f"--max-points ({self.max_points}) must not be below --min-points "
                                 f"({self.min_points}).")
        if not self.lr > 0:
            raise CharforgeError(f"--lr must be positive, not {self.lr!r}.")
        if self.threads < 0:
            raise CharforgeError(f"--threads must not be negative, not {self.threads!r}.")
        if not self.cells:
            raise CharforgeError("the frequency task needs at least one cell to train.")
        return self
