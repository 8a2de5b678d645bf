"""What generation is asked for and what it gives back: settings, requests, sample records.

The one settings type of every front end (``charforge sample`` and ``generate``, the Python API,
the terminal UI's sampling screen). Nothing here imports torch, so the command line can parse
and check a request before PyTorch loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from charforge.errors import CharforgeError


@dataclass(frozen=True)
class Settings:
    """How one prompt is continued.

    ``temperature`` 0 or ``greedy`` picks the most likely character; ``top_k`` 0 and
    ``top_p`` 1 disable those filters. ``stop`` strings end a sample as soon as one appears in
    the generated text (the stop string itself is not part of the result). ``beam`` > 0
    switches to beam search of that width: deterministic, the highest log-probability
    continuation, ignoring temperature, top-k, top-p and greedy.
    """

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    stop: tuple[str, ...] = ()
    beam: int = 0

    def check(self) -> "Settings":
        """Reject values no generation could use, with a one-line reason."""
        for name in ("length", "top_k", "beam"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise CharforgeError(f"{name.replace('_', '-')} must be an integer, not {value!r}.")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise CharforgeError(f"{name.replace('_', '-')} must be a number, not {value!r}.")
        if not isinstance(self.greedy, bool):
            raise CharforgeError(f"greedy must be true or false, not {self.greedy!r}.")
        if self.length < 0:
            raise CharforgeError(f"--length must not be negative, not {self.length}.")
        if not self.temperature >= 0:
            raise CharforgeError(f"--temperature must be 0 or more, not {self.temperature}.")
        if self.top_k < 0:
            raise CharforgeError(f"--top-k must not be negative, not {self.top_k}.")
        if not 0 < self.top_p <= 1:
            raise CharforgeError(f"--top-p must be in (0, 1], not {self.top_p}.")
        if self.beam < 0:
            raise CharforgeError(f"--beam must not be negative, not {self.beam}.")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise CharforgeError(f"stop strings must be non-empty strings, not {list(self.stop)!r}.")
        return self

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


def stops(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """Stop strings as :class:`Settings` holds them, from one string, a list, or None."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def check_seed(seed: Any) -> int | None:
    """A base seed: None (random) or an integer in [0, 2**63)."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise CharforgeError(f"seed must be an integer, not {seed!r}.")
    if seed is not None and not 0 <= seed < 2**63:
        raise CharforgeError(f"--seed must be in [0, 2**63), not {seed}.")
    return seed


def check_num_samples(num_samples: Any) -> int:
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise CharforgeError(f"--num-samples must be at least 1, not {num_samples!r}.")
    return num_samples


@dataclass(frozen=True)
class Request:
    """One prompt to continue ``num_samples`` times with ``settings``.

    ``seed`` overrides the run's seed for this prompt; ``index`` is the prompt's position in
    the input (several requests share one when a temperature sweep expands a prompt).
    """

    prompt: str
    settings: Settings = field(default_factory=Settings)
    num_samples: int = 1
    seed: int | None = None
    index: int | None = None


@dataclass(frozen=True)
class Sample:
    """One generated continuation, with everything needed to reproduce it."""

    prompt: str
    index: int
    sample: int
    seed: int
    settings: Settings
    text: str
    stop_reason: str  # "length" or "stop"
    logprob: float | None = None  # beam search: log-probability of the continuation (nats)

    @property
    def chars(self) -> int:
        """Characters generated (the stop string, when one ended the sample, not counted)."""
        return len(self.text)

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record ``charforge generate`` writes."""
        out = {"prompt": self.prompt, "index": self.index, "sample": self.sample, "seed": self.seed,
               "settings": self.settings.to_dict(), "text": self.text, "chars": self.chars,
               "stop_reason": self.stop_reason}
        if self.logprob is not None:
            out["logprob"] = self.logprob
        return out


def parse_temperatures(value: str | float | Sequence[float]) -> list[float]:
    """One temperature or a sweep: a number, a list of numbers, or a string like ``"0.5,0.8,1"``."""
    if isinstance(value, str):
        try:
            values = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise CharforgeError(f"--temperature takes a number or a comma-separated list, not {value!r}.") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [float(value)]
    else:
        values = list(value)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise CharforgeError(f"temperature must be a number or a list of numbers, not {value!r}.")
        values = [float(v) for v in values]
    if not values:
        raise CharforgeError("--temperature needs at least one value.")
    return values


def expand(prompt: str, index: int, num_samples: int, seed: int | None, settings: Settings,
           temperatures: Sequence[float]) -> list[Request]:
    """The requests for one prompt: one per temperature of a sweep."""
    return [Request(prompt, replace(settings, temperature=t).check(), num_samples, seed, index)
            for t in temperatures]
