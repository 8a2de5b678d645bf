"""The sampling screen's knobs: the valid range and step of each generation setting, and how it is shown.

The values themselves are the engine's :class:`~charforge.sampling.settings.Settings` (what
``charforge sample`` and ``generate`` take) plus the seed, None meaning a fresh random seed for
every sample; this module only clamps, steps and shows them.
"""

from __future__ import annotations

from dataclasses import replace

from charforge.sampling.settings import Settings

# name: (lowest, highest, step). Every change is clamped into [lowest, highest].
RANGES = {
    "temperature": (0.0, 5.0, 0.1),
    "top_k": (0, 1000, 1),
    "top_p": (0.05, 1.0, 0.05),
    "length": (10, 5000, 10),
    "seed": (-1, 2**31 - 1, 1),  # shown as -1 when random
}
SETTINGS = ("temperature", "top_k", "top_p", "length")  # the knobs that are fields of Settings
DEFAULT = Settings(length=300)


def clamp(name: str, value: float) -> float:
    low, high, step = RANGES[name]
    value = min(max(value, low), high)
    if isinstance(step, int):
        return int(round(value))
    return round(round(value / step) * step, 2)  # 0.1 steps stay 0.1, not 0.30000000000000004


def clamped(settings: Settings) -> Settings:
    """``settings`` with every knob's value within its range."""
    return replace(settings, **{name: clamp(name, getattr(settings, name)) for name in SETTINGS})


def nudge(settings: Settings, name: str, steps: int) -> Settings:
    """``settings`` with knob ``name`` moved by ``steps`` steps, clamped to its range."""
    return replace(settings, **{name: clamp(name, getattr(settings, name) + steps * RANGES[name][2])})


def nudge_seed(seed: int | None, steps: int) -> int | None:
    """The seed knob moved by ``steps``: below 0 it is random (None)."""
    value = clamp("seed", (-1 if seed is None else seed) + steps)
    return None if value < 0 else value


def shown(name: str, value) -> str:
    """How the knob ``name`` shows ``value`` (the seed None is "random")."""
    if name == "temperature":
        return f"{value:.1f}" + (" (greedy)" if value == 0 else "")
    if name == "top_p":
        return "off" if value >= 1 else f"{value:.2f}"
    if name == "top_k":
        return "off" if value == 0 else str(value)
    if name == "seed":
        return "random" if value is None else str(value)
    return str(value)


def label(settings: Settings, seed: int | None, short: bool = False) -> str:
    """One line naming everything that made a sample, with the seed actually used (``short``: the
    same in fewer characters, for a narrow screen; ``seed`` None leaves it out)."""
    k, p = shown("top_k", settings.top_k), shown("top_p", settings.top_p)
    if short:
        text = f"T {settings.temperature:.1f} · k {k} · p {p} · {settings.length} ch"
    else:
        text = f"T {settings.temperature:.1f} · top-k {k} · top-p {p} · {settings.length} chars"
    return text if seed is None else f"{text} · seed {seed}"


def titles(checkpoint: str, settings: Settings, seed: int) -> list[str]:
    """A sample's label, from the fullest to the shortest: the checkpoint and every setting, then the
    settings said shortly, then the seed first, where a label cut off at its end still shows it."""
    return [f"{checkpoint} · {label(settings, seed)}", f"{checkpoint} · {label(settings, seed, short=True)}",
            f"seed {seed} · {label(settings, None, short=True)} · {checkpoint}"]


def record(settings: Settings, seed: int) -> dict:
    """The settings that made a sample, as the fields of its entry in ``samples.jsonl``."""
    return {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p,
            "length": settings.length, "seed": seed}
