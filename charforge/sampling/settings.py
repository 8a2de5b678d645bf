"""What generation is asked for and what it gives back: settings, requests, sample records.

The one settings type of every front end (``charforge sample`` and ``generate``, the Python API,
the terminal UI's sampling screen). Nothing here imports torch, so the command line can parse
and check a request before PyTorch loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from charforge.errors import CharforgeError, shown

# What one request, and one call of generation (``generate``, ``sample -n``, the API's generate), may
# ask for: far beyond ordinary use, and within memory, since a call holds its requests and samples
# until they are written, in request order. One streamed sample holds nothing: its length is free.
MAX_PROMPT_CHARS = 1_000_000  # one prompt
MAX_STOPS, MAX_STOP_CHARS = 16, 256  # stop strings of one prompt, and the characters of each
MAX_BEAM = 1_000  # the width of a beam search
MAX_SAMPLES = 1_000_000  # samples of one call
MAX_CHARS = 100_000_000  # characters of one call: its prompts, plus length x samples (x beams for beam search)
# Generation's arithmetic (charforge.sampling.fastpath): measured per CPU (auto), exact, or lossy by choice.
PRECISIONS = ("auto", "float32", "float16", "int8")


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
                raise CharforgeError(f"{name.replace('_', '-')} must be an integer, not {shown(value)}.")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise CharforgeError(f"{name.replace('_', '-')} must be a number, not {shown(value)}.")
            try:
                float(value)
            except OverflowError:  # an integer beyond every float
                raise CharforgeError(f"{name.replace('_', '-')} is too large: {shown(value)}.") from None
        if not isinstance(self.greedy, bool):
            raise CharforgeError(f"greedy must be true or false, not {shown(self.greedy)}.")
        if self.length < 0:
            raise CharforgeError(f"--length must not be negative, not {shown(self.length)}.")
        if not self.temperature >= 0:
            raise CharforgeError(f"--temperature must be 0 or more, not {shown(self.temperature)}.")
        if self.top_k < 0:
            raise CharforgeError(f"--top-k must not be negative, not {shown(self.top_k)}.")
        if not 0 < self.top_p <= 1:
            raise CharforgeError(f"--top-p must be in (0, 1], not {shown(self.top_p)}.")
        if not 0 <= self.beam <= MAX_BEAM:
            raise CharforgeError(f"--beam must be at most {MAX_BEAM:,} (and not negative), not {shown(self.beam)}.")
        if not isinstance(self.stop, tuple) or any(not isinstance(s, str) or not s for s in self.stop):
            raise CharforgeError(f"stop strings must be a tuple of non-empty strings, not {shown(self.stop)}.")
        if len(self.stop) > MAX_STOPS:
            raise CharforgeError(f"a prompt may have at most {MAX_STOPS} stop strings, not {len(self.stop):,}.")
        for s in self.stop:
            check_text(s, "a stop string")
            if len(s) > MAX_STOP_CHARS:
                raise CharforgeError(f"a stop string may have at most {MAX_STOP_CHARS} characters, not {len(s):,}.")
        return self

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


def check_text(text: Any, what: str) -> str:
    """``text``, if it is a string that can be written out: UTF-8 has no lone surrogates."""
    if not isinstance(text, str):
        raise CharforgeError(f"{what} must be a string, not {type(text).__name__}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a byte that was not UTF-8 (in argv, say) arrives as U+DC80..U+DCFF
        raise CharforgeError(f"{what} holds U+{ord(text[exc.start]):04X} at character {exc.start + 1:,}, which is "
                             f"not text (a lone surrogate, or a byte that is not UTF-8).") from None
    return text


def stops(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """Stop strings as :class:`Settings` holds them, from one string, a list, or None."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if not isinstance(stop, (list, tuple)):
        raise CharforgeError(f"stop must be a string or a list of strings, not {type(stop).__name__}.")
    return tuple(stop)


def check_seed(seed: Any) -> int | None:
    """A base seed: None (random) or an integer in [0, 2**63)."""
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise CharforgeError(f"seed must be an integer, not {shown(seed)}.")
    if seed is not None and not 0 <= seed < 2**63:
        raise CharforgeError(f"--seed must be in [0, 2**63), not {shown(seed)}.")
    return seed


def check_num_samples(num_samples: Any) -> int:
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise CharforgeError(f"--num-samples must be at least 1, not {shown(num_samples)}.")
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

    def check(self) -> "Request":
        """Reject a request no generation could run (every front end's requests pass here)."""
        if len(check_text(self.prompt, "the prompt")) > MAX_PROMPT_CHARS:
            raise CharforgeError(f"a prompt may have at most {MAX_PROMPT_CHARS:,} characters, "
                                 f"not {len(self.prompt):,}.")
        if not isinstance(self.settings, Settings):
            raise CharforgeError(f"settings must be a Settings, not {type(self.settings).__name__}.")
        self.settings.check()
        check_num_samples(self.num_samples)
        check_seed(self.seed)
        if self.index is not None and (not isinstance(self.index, int) or isinstance(self.index, bool)
                                       or self.index < 0):
            raise CharforgeError(f"index must be a non-negative integer or None, not {shown(self.index)}.")
        if self.settings.beam and self.num_samples > self.settings.beam:
            raise CharforgeError(f"beam search of width {self.settings.beam} returns at most "
                                 f"{self.settings.beam} samples per prompt, not {self.num_samples}.")
        return self


class Budget:
    """What one call of generation asks for, summed request by request as they come, so that a call
    beyond :data:`MAX_SAMPLES` or :data:`MAX_CHARS` is refused before its requests pile up."""

    def __init__(self):
        self.samples = self.chars = 0

    def add(self, request: Request) -> Request:
        """``request``, checked and counted."""
        request.check()
        self.samples += request.num_samples
        rows = request.settings.beam or request.num_samples
        self.chars += len(request.prompt) + rows * request.settings.length
        if self.samples > MAX_SAMPLES:
            raise CharforgeError(f"asks for more than {MAX_SAMPLES:,} samples in one call; split it into "
                                 f"smaller ones.")
        if self.chars > MAX_CHARS:
            raise CharforgeError(f"asks for more than {MAX_CHARS:,} characters in one call (prompts, plus "
                                 f"length x samples, or x beam width); split it into smaller ones.")
        return request


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
            raise CharforgeError(f"--temperature takes a number or a comma-separated list, "
                                 f"not {shown(value)}.") from None
    else:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise CharforgeError(f"temperature must be a number or a list of numbers, not {shown(value)}.")
        try:
            values = [float(v) for v in values]
        except OverflowError:  # an integer beyond every float
            raise CharforgeError(f"temperature is too large: {shown(value)}.") from None
    if not values:
        raise CharforgeError("--temperature needs at least one value.")
    return values


def expand(prompt: str, index: int, num_samples: int, seed: int | None, settings: Settings,
           temperatures: Sequence[float]) -> list[Request]:
    """The requests for one prompt: one per temperature of a sweep."""
    return [Request(prompt, replace(settings, temperature=t).check(), num_samples, seed, index)
            for t in temperatures]
