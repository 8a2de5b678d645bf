"""The sampling screen's settings: values, their valid ranges, and the keys' steps."""

from __future__ import annotations

from dataclasses import dataclass, replace

# name: (lowest, highest, step). Every change is clamped into [lowest, highest].
RANGES = {
    "temperature": (0.0, 5.0, 0.1),
    "top_k": (0, 1000, 1),
    "top_p": (0.05, 1.0, 0.05),
    "length": (10, 5000, 10),
    "seed": (-1, 2**31 - 1, 1),  # -1: a fresh random seed for every sample
}


def clamp(name: str, value: float) -> float:
    low, high, step = RANGES[name]
    value = min(max(value, low), high)
    if isinstance(step, int):
        return int(round(value))
    return round(round(value / step) * step, 2)  # 0.1 steps stay 0.1, not 0.30000000000000004


@dataclass(frozen=True)
class SampleSettings:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    length: int = 300
    seed: int = -1  # -1: random

    def nudge(self, name: str, steps: int) -> "SampleSettings":
        """These settings with ``name`` moved by ``steps`` steps, clamped to its range."""
        step = RANGES[name][2]
        return replace(self, **{name: clamp(name, getattr(self, name) + steps * step)})

    def clamped(self) -> "SampleSettings":
        return SampleSettings(**{name: clamp(name, getattr(self, name)) for name in RANGES})

    def shown(self, name: str) -> str:
        value = getattr(self, name)
        if name == "temperature":
            return f"{value:.1f}" + (" (greedy)" if value == 0 else "")
        if name == "top_p":
            return "off" if value >= 1 else f"{value:.2f}"
        if name == "top_k":
            return "off" if value == 0 else str(value)
        if name == "seed":
            return "random" if value < 0 else str(value)
        return str(value)

    def label(self, seed: int) -> str:
        """One line naming everything that made a sample, with the seed actually used."""
        return (f"T {self.temperature:.1f} · top-k {self.shown('top_k')} · top-p {self.shown('top_p')}"
                f" · {self.length} chars · seed {seed}")
