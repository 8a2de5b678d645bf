"""Batched generation over many prompts: sampling, greedy decoding and beam search.

The engine runs many samples (rows) through the model together, ``batch_size`` at a time,
and refills free rows from the queue as samples finish.

* **Prompts of different lengths.** New rows are primed in groups of equal prompt length
  (each distinct prompt once, however many samples it has), with the model's fused sequence
  path; their states are then spliced into the running batch. No padding ever enters a state.
* **Reproducibility.** Every row draws its randomness from its own counter-based stream:
  step ``j`` of a row uses ``uniforms(key, j)``, a SplitMix64 hash of the row's key and ``j``,
  where the key is :func:`row_seed` of (seed, prompt, sample index). A row's random numbers
  therefore never depend on which other rows share its batch, on the batch size or on the
  order of the prompts. Each step turns a row's uniform number into a character by inverse-CDF
  sampling over that row's own (temperature, top-k, top-p) distribution.
* **Throughput.** Everything runs under ``torch.inference_mode()``. For the built-in fused
  cells a round of :data:`ROUND` steps is one call of a TorchScript loop on the raw weights
  (:mod:`charforge.fastpath`, in float32 or int8, see ``precision``); other cells run
  ``model.step`` from Python, with nothing else per step. Tokens are copied to the host once per
  round and turned into text per row with one vectorised lookup, never per character; stop
  strings are searched per row per round with ``str.find``.

One caveat is outside any sampler's control: in float32, matrix-multiply libraries round the
last bit of a row differently at different batch sizes (MKL's BLAS below 12 rows; from
``fastpath.BIG_BATCH`` rows up the products go through oneDNN's packed weights, which round
differently again), so when a row's uniform number falls within about 1e-6 of a boundary between
two characters, batch 1 and batch 256 pick different characters from there on. Measured on
1 x 512 LSTMs, comparing batch 1 with batches of 7, 96 and 256: 1 of 800 samples (230,000
characters) differed, from its 217th character; greedy decoding: none. In int8 the recurrent
products are exact integer sums, but the read-out is still float32: batch 1 against 256 on a
trained 1 x 512 LSTM, 1 to 2 of 256 samples differed, from their 223rd character on. A run
repeated with the same requests, batch size and seed is identical bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from charforge.cell import State
from charforge.errors import CharforgeError
from charforge.fastpath import FastPlan, check_precision, choose_rows, compiled_fast_rows
from charforge.model import CharModel
from charforge.vocab import Vocab

ROUND = 64  # steps between host synchronisations (token copies, stop checks, refills)
LN2 = math.log(2)
_NO_TOP_P = 2.0  # a top-p that never drops anything, for rows without nucleus sampling
_MAX_TEMPERATURE = float(torch.finfo(torch.float32).max)


# -- settings, requests, results ------------------------------------------------------------------

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


def row_seed(seed: int, prompt: str, sample: int) -> int:
    """The key of one sample's random stream: a hash of (seed, prompt, sample index), 63 bits."""
    digest = hashlib.blake2b(json.dumps([seed, prompt, sample]).encode("utf-8"), digest_size=8,
                             person=b"charforge-gen").digest()
    return int.from_bytes(digest, "little") >> 1


def random_seed() -> int:
    """A fresh seed for runs that were given none (small enough for any JSON reader)."""
    return int.from_bytes(os.urandom(4), "little") >> 1


# -- per-row random numbers -------------------------------------------------------------------------

def _s64(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


_GOLDEN, _MIX1, _MIX2 = _s64(0x9E3779B97F4A7C15), _s64(0xBF58476D1CE4E5B9), _s64(0x94D049BB133111EB)
# Uniforms are scaled just below 1 so that u * total < total after float32 rounding: inverse-CDF
# sampling then never runs past the last character with non-zero probability.
_U_SCALE = 2.0 ** -24 * (1 - 2.0 ** -20)


def _lsr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 values."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def uniforms(keys: Tensor, start: Tensor, n: int) -> Tensor:
    """(rows, n) float32 uniforms in [0, 1): step ``start[r] + j`` of the stream of ``keys[r]``.

    SplitMix64 (Steele et al. 2014) of key + (step + 1) * golden gamma, in wrapping int64
    arithmetic: the same numbers on every device and for every batch composition.
    """
    steps = start.unsqueeze(1) + torch.arange(n, device=keys.device)
    z = keys.unsqueeze(1) + (steps + 1) * _GOLDEN
    z = (z ^ _lsr(z, 30)) * _MIX1
    z = (z ^ _lsr(z, 27)) * _MIX2
    z = z ^ _lsr(z, 31)
    return _lsr(z, 40).to(torch.float32) * _U_SCALE


# -- the sampling settings of a batch ----------------------------------------------------------------

class _Plan:
    """The per-row sampling settings of the rows in a batch, as the tensors :func:`choose_rows` takes."""

    def __init__(self, settings: Sequence[Settings], vocab_size: int, device: torch.device):
        greedy = [s.is_greedy for s in settings]
        self.all_greedy = all(greedy)
        self.greedy = torch.tensor(greedy, device=device) if any(greedy) and not self.all_greedy else None
        # a temperature beyond float32's range (even inf) means uniform over what top-k and top-p keep
        temps = [1.0 if g else min(float(s.temperature), _MAX_TEMPERATURE) for s, g in zip(settings, greedy)]
        self.temps = torch.tensor([[t] for t in temps], device=device) if any(t != 1 for t in temps) else None
        ks = [s.top_k if 0 < s.top_k < vocab_size else vocab_size for s in settings]
        self.kth = torch.tensor([[k - 1] for k in ks], device=device) if any(k < vocab_size for k in ks) else None
        ps = [float(s.top_p) if s.top_p < 1 else _NO_TOP_P for s in settings]
        self.top_p = torch.tensor([[p] for p in ps], device=device) if any(p < 1 for p in ps) else None

    def choose(self, logits: Tensor, u: Tensor) -> Tensor:
        """Next tokens (rows,) from logits (rows, vocab) and one uniform number per row, (rows, 1)."""
        return choose_rows(logits, u, self.temps, self.kth, self.top_p, self.greedy, self.all_greedy)


class _Stepper:
    """Runs ``n`` steps of a batch: the compiled loop for built-in fused cells, else ``model.step``."""

    def __init__(self, model: CharModel, precision: str):
        self.model = model
        self.fast = FastPlan.of(model, precision)

    def __call__(self, n: int, token: Tensor, state: list[State], t: Tensor | None, noise: Tensor,
                 plan: _Plan) -> tuple[Tensor, list[State], Tensor]:
        """(last tokens, new state, tokens (n, rows)) after ``n`` steps; ``noise`` is (n, rows, 1)."""
        out = torch.empty((n, token.shape[0]), dtype=torch.int64, device=token.device)
        fast = self.fast
        if fast is not None:
            lstm = len(state[0]) == 2
            hs = [s[0] for s in state]
            cs = [s[1] for s in state] if lstm else []
            mode, head_mode, table, w_ih, w_hh, b_ih, b_hh, s_ih, s_hh, head_w = fast.weights(len(token))
            token, hs, cs = compiled_fast_rows()(
                fast.kind, mode, head_mode, n, token, hs, cs, table, w_ih, w_hh, b_ih, b_hh, s_ih, s_hh, head_w,
                fast.head_b, [], noise, plan.temps, plan.kth, plan.top_p, plan.greedy, plan.all_greedy, out)
            state = [(h, c) for h, c in zip(hs, cs)] if lstm else [(h,) for h in hs]
            return token, state, out
        model = self.model
        for i in range(n):
            logits, state = model.step(token, state, t)
            token = plan.choose(logits, noise[i])
            out[i] = token
            if t is not None:
                t = t + 1
        return token, state, out


# -- state plumbing -----------------------------------------------------------------------------

def _select(state: list[State], rows: Tensor) -> list[State]:
    return [tuple(s.index_select(0, rows) for s in layer) for layer in state]


def _cat(a: list[State], b: list[State]) -> list[State]:
    return [tuple(torch.cat([x, y]) for x, y in zip(la, lb)) for la, lb in zip(a, b)]


def _first_stop(text: str, stops: Sequence[str]) -> int:
    """Where the stop string that completes first in ``text`` starts (the longest on a tie), or -1."""
    best = None
    for stop in stops:
        i = text.find(stop)
        if i >= 0 and (best is None or (i + len(stop), i) < best):
            best = (i + len(stop), i)
    return -1 if best is None else best[1]


class _Row:
    """One sample being generated (or one beam-search prompt)."""

    __slots__ = ("order", "request", "sample", "ids", "key", "seed", "settings", "produced", "parts",
                 "tail", "stopped", "prompt")

    def __init__(self, order: int, request: Request, sample: int, prompt: str, ids: Tensor, seed: int):
        self.order, self.request, self.sample = order, request, sample
        self.prompt, self.ids, self.seed = prompt, ids, seed
        self.settings = request.settings
        self.key = row_seed(seed, prompt, sample)
        self.produced = 0  # steps taken (= uniforms consumed)
        self.parts: list[str] = []  # the text kept so far, one piece per round
        self.tail = ""  # its last characters, for stop strings that span rounds
        self.stopped = False


# -- the engine ---------------------------------------------------------------------------------

class BatchGenerator:
    """Generates continuations of many prompts with one model, ``batch_size`` rows at a time.

    >>> gen = BatchGenerator(model, vocab, device="cpu", batch_size=256)  # doctest: +SKIP
    >>> for sample in gen.run([Request("The ", Settings(length=100), num_samples=4)], seed=1):
    ...     print(sample.text)  # doctest: +SKIP
    """

    def __init__(self, model: CharModel, vocab: Vocab, device: torch.device | str = "cpu",
                 batch_size: int = 256, drop_unknown: bool = False, precision: str = "auto"):
        if batch_size < 1:
            raise CharforgeError(f"--batch-size must be at least 1, not {batch_size}.")
        self.precision = check_precision(precision)
        self.model = model.eval()
        self.vocab = vocab
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.drop_unknown = drop_unknown
        self._codepoints = torch.tensor([ord(c) for c in vocab.chars], dtype=torch.int32)
        self._start = vocab.index.get("\n", 0)

    # -- prompts ----------------------------------------------------------------------------

    def encode_prompt(self, prompt: str) -> tuple[str, Tensor]:
        """(the prompt as the model sees it, its ids); an empty prompt starts after a line break."""
        ids = self.vocab.encode(prompt, drop_unknown=self.drop_unknown)
        kept = self.decode(ids) if len(ids) != len(prompt) else prompt
        if len(ids) == 0:
            ids = torch.tensor([self._start])
        return kept, ids

    def decode(self, ids: Tensor) -> str:
        """Text of a 1-D tensor of ids: one vectorised lookup, no loop over characters."""
        if len(ids) == 0:
            return ""
        return self._codepoints[ids.cpu().long()].numpy().tobytes().decode("utf-32-le", "surrogatepass")

    def _rows(self, requests: Sequence[Request], seed: int) -> list[_Row]:
        rows, encoded = [], {}
        for order, request in enumerate(requests):
            request.settings.check()
            if not isinstance(request.num_samples, int) or request.num_samples < 1:
                raise CharforgeError(f"--num-samples must be at least 1, not {request.num_samples!r}.")
            if request.settings.beam and request.num_samples > request.settings.beam:
                raise CharforgeError(f"beam search of width {request.settings.beam} returns at most "
                                     f"{request.settings.beam} samples per prompt, not {request.num_samples}.")
            if request.prompt not in encoded:
                encoded[request.prompt] = self.encode_prompt(request.prompt)
            prompt, ids = encoded[request.prompt]
            row_seed_base = request.seed if request.seed is not None else seed
            if request.settings.beam:
                rows.append(_Row(order, request, 0, prompt, ids, row_seed_base))
            else:
                rows.extend(_Row(order, request, i, prompt, ids, row_seed_base)
                            for i in range(request.num_samples))
        return rows

    @torch.inference_mode()
    def prime(self, prompts: Sequence[Tensor]) -> tuple[list[State], Tensor, Tensor]:
        """(state, last prompt token, its position) for each prompt, priming each distinct prompt once.

        Prompts are grouped by length and each group runs through the model's sequence path
        on its own, so no padding enters any state.
        """
        model, dev = self.model, self.device
        unique: dict[bytes, int] = {}
        which = []
        for ids in prompts:
            which.append(unique.setdefault(ids.numpy().tobytes(), len(unique)))
        distinct = [None] * len(unique)
        for ids, u in zip(prompts, which):
            distinct[u] = ids
        by_length: dict[int, list[int]] = {}
        for u, ids in enumerate(distinct):
            by_length.setdefault(len(ids), []).append(u)
        states, order = [], []
        for length, members in by_length.items():
            group = torch.stack([distinct[u] for u in members]).to(dev)
            state = model.initial_state(len(members), dev)
            if length > 1:
                t = (torch.arange(length - 1, dtype=torch.float64, device=dev).expand(len(members), -1)
                     if model.uses_time else None)
                _, state = model(group[:, :-1], state, t)
            states.append(state)
            order.extend(members)
        state = states[0]
        for more in states[1:]:
            state = _cat(state, more)
        position = {u: i for i, u in enumerate(order)}
        rows = torch.tensor([position[u] for u in which], device=dev)
        last = torch.stack([ids[-1] for ids in prompts]).to(dev)
        where = torch.tensor([len(ids) - 1 for ids in prompts], dtype=torch.float64, device=dev)
        return _select(state, rows), last, where

    # -- running ----------------------------------------------------------------------------

    def run(self, requests: Sequence[Request], seed: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> Iterator[Sample]:
        """Every sample of every request, in request order (then sample order), as soon as ready.

        ``seed`` (random when None) is the base of every row's random stream; a request's own
        ``seed`` replaces it. ``progress(chars, samples)`` is called with increments once per
        round of :data:`ROUND` steps.
        """
        seed = random_seed() if seed is None else seed
        rows = self._rows(requests, seed)  # every request is checked before anything runs
        return self._in_order(rows, [r.num_samples for r in requests], progress)

    def _in_order(self, rows: list[_Row], counts: list[int], progress) -> Iterator[Sample]:
        expected = deque((order, i) for order, n in enumerate(counts) for i in range(n))
        pending: dict[tuple[int, int], Sample | None] = {}

        def ready() -> Iterator[Sample]:
            while expected and expected[0] in pending:
                sample = pending.pop(expected.popleft())
                if sample is not None:
                    yield sample

        for order, i, sample in self._sample([r for r in rows if not r.settings.beam], progress):
            pending[(order, i)] = sample
            yield from ready()
        for group in _chunks_by_beam([r for r in rows if r.settings.beam], self.batch_size):
            for row, results in self._beam(group, progress):
                for i in range(row.request.num_samples):  # fewer only if the vocabulary is tiny
                    pending[(row.order, i)] = results[i] if i < len(results) else None
            yield from ready()

    @torch.inference_mode()
    def _sample(self, rows: list[_Row], progress) -> Iterator[tuple[int, int, Sample]]:
        """Sampling and greedy rows: (request order, sample index, result) as each row finishes."""
        model, dev, V = self.model, self.device, len(self.vocab)
        uses_time = model.uses_time
        stepper = _Stepper(model, self.precision)
        queue = deque(rows)
        active: list[_Row] = []
        state: list[State] = []
        token = position = keys = produced = table = None
        plan = None
        while queue or active:
            if queue and len(active) < self.batch_size:  # refill free rows, priming the newcomers
                new = [queue.popleft() for _ in range(min(self.batch_size - len(active), len(queue)))]
                n_state, n_token, n_position = self.prime([r.ids for r in new])
                n_keys = torch.tensor([r.key for r in new], dtype=torch.int64, device=dev)
                n_produced = torch.zeros(len(new), dtype=torch.int64, device=dev)
                if active:
                    state = _cat(state, n_state)
                    token, position = torch.cat([token, n_token]), torch.cat([position, n_position])
                    keys, produced = torch.cat([keys, n_keys]), torch.cat([produced, n_produced])
                else:
                    state, token, position, keys, produced = n_state, n_token, n_position, n_keys, n_produced
                active.extend(new)
                plan = None
            if plan is None:
                plan = _Plan([r.settings for r in active], V, dev)
            steps = min(ROUND, max(r.settings.length - r.produced for r in active))
            if steps > 0:
                noise = uniforms(keys, produced, steps).t().unsqueeze(2)  # (steps, rows, 1)
                token, state, out = stepper(steps, token, state, position if uses_time else None, noise, plan)
                if uses_time:
                    position = position + steps
                produced = produced + steps
                table = self._codepoints[out.t().cpu()].numpy()
            chars, keep, finished = 0, [], []
            for i, row in enumerate(active):
                take = min(steps, row.settings.length - row.produced)
                row.produced += steps
                if take > 0:
                    piece = table[i, :take].tobytes().decode("utf-32-le", "surrogatepass")
                    if row.settings.stop:
                        piece = self._find_stop(row, piece)
                    row.parts.append(piece)
                    chars += len(piece)
                if row.stopped or row.produced >= row.settings.length:
                    finished.append(row)
                else:
                    keep.append(i)
            for row in finished:
                yield row.order, row.sample, Sample(
                    row.prompt, _index(row), row.sample, row.seed, row.settings, "".join(row.parts),
                    "stop" if row.stopped else "length")
            if progress is not None:
                progress(chars, len(finished))
            if finished:  # compact the batch to the rows still running
                active = [active[i] for i in keep]
                if active:
                    idx = torch.tensor(keep, device=dev)
                    state = _select(state, idx)
                    token, position = token[idx], position[idx]
                    keys, produced = keys[idx], produced[idx]
                plan = None

    @staticmethod
    def _find_stop(row: _Row, piece: str) -> str:
        """The part of ``piece`` to keep, marking the row stopped when a stop string completes."""
        window = row.tail + piece
        cut = _first_stop(window, row.settings.stop)
        if cut < 0:
            longest = max(len(s) for s in row.settings.stop)
            row.tail = window[len(window) - (longest - 1):] if longest > 1 else ""
            return piece
        row.stopped = True
        if cut >= len(row.tail):
            return piece[:cut - len(row.tail)]
        text = "".join(row.parts)  # the stop string began in an earlier round's text
        row.parts = [text[:len(text) - (len(row.tail) - cut)]]
        return ""

    # -- streaming one prompt ----------------------------------------------------------------

    def stream(self, request: Request, seed: int | None = None, sample: int = 0) -> Iterator[str]:
        """The characters of one sample as they are generated (the same text :meth:`run` gives).

        Characters that might begin a stop string are held back until it is clear they do not.
        """
        settings = request.settings.check()
        if settings.beam:
            raise CharforgeError("beam search cannot stream: it knows the best continuation only at the end.")
        if request.seed is not None:
            seed = request.seed
        elif seed is None:
            seed = random_seed()
        prompt, ids = self.encode_prompt(request.prompt)
        return self._stream(settings, prompt, ids, row_seed(seed, prompt, sample))

    @torch.inference_mode()
    def _stream(self, settings: Settings, prompt: str, ids: Tensor, row_key: int) -> Iterator[str]:
        key = torch.tensor([row_key], dtype=torch.int64, device=self.device)
        state, token, position = self.prime([ids])
        plan = _Plan([settings], len(self.vocab), self.device)
        stepper = _Stepper(self.model, self.precision)
        chars, stops = self.vocab.chars, settings.stop
        t = position if self.model.uses_time else None
        held = ""
        produced, chunk = 0, 1
        while produced < settings.length:
            # Chunks grow from one step, so the first characters come at once; the random numbers
            # are counted per step, so chunking changes nothing in the text.
            steps = min(chunk, settings.length - produced)
            noise = uniforms(key, torch.tensor([produced], device=self.device), steps).t().unsqueeze(2)
            token, state, out = stepper(steps, token, state, t, noise, plan)
            if t is not None:
                t = t + steps
            produced, chunk = produced + steps, min(2 * chunk, ROUND)
            for char in self.decode(out[:, 0]):
                if not stops:
                    yield char
                    continue
                held += char
                cut = _first_stop(held, stops)
                if cut >= 0:
                    if cut:
                        yield held[:cut]
                    return
                keep = _prefix_overlap(held, stops)
                if len(held) > keep:
                    yield held[:len(held) - keep]
                    held = held[len(held) - keep:]
        if held:
            yield held

    # -- beam search -------------------------------------------------------------------------

    @torch.inference_mode()
    def _beam(self, rows: list[_Row], progress) -> Iterator[tuple[_Row, list[Sample]]]:
        """Beam search for rows of one width: (row, its best hypotheses, best first) per row."""
        model, dev, V = self.model, self.device, len(self.vocab)
        for r in rows:
            if r.settings.length == 0:
                yield r, [self._beam_sample(r, i, "", "length", 0.0) for i in range(r.request.num_samples)]
        rows = [r for r in rows if r.settings.length > 0]
        if not rows:
            return
        P, N = len(rows), rows[0].settings.beam
        lengths = torch.tensor([r.settings.length for r in rows], device=dev)
        S = max(r.settings.length for r in rows)
        state, token, position = self.prime([r.ids for r in rows])
        rep = torch.arange(P, device=dev).repeat_interleave(N)
        state, token, t = _select(state, rep), token[rep], (position[rep] if model.uses_time else None)
        scores = torch.full((P, N), float("-inf"), device=dev)
        scores[:, 0] = 0.0
        fin_scores = torch.full((P, N), float("-inf"), device=dev)
        fin_step = torch.full((P, N), -1, dtype=torch.int64, device=dev)
        fin_beam = torch.zeros((P, N), dtype=torch.int64, device=dev)
        need = torch.tensor([r.request.num_samples - 1 for r in rows], device=dev).unsqueeze(1)
        beam_ids = torch.arange(N, device=dev).expand(P, N)
        offsets = (torch.arange(P, device=dev) * N).unsqueeze(1)
        matcher = _StopMatcher([r.settings.stop for r in rows], self.vocab, dev)
        window = matcher.initial(P * N) if matcher.active else None
        row_stops = matcher.row_mask[rep] if matcher.active else None
        hist_tok, hist_par = [], []
        for s in range(S):
            logits, state = model.step(token, state, t)
            if t is not None:
                t = t + 1
            logp = logits.float().log_softmax(dim=-1).view(P, N, V)
            top, idx = (scores.unsqueeze(2) + logp).view(P, N * V).topk(N, dim=-1)
            parent, new = idx // V, idx % V
            flat = (offsets + parent).view(-1)
            state, token = _select(state, flat), new.view(-1)
            hist_tok.append(new)
            hist_par.append(parent)
            scores = top
            done = (lengths == s + 1).unsqueeze(1).expand(P, N)
            if window is not None:
                window = torch.cat([window[flat, 1:], token.unsqueeze(1)], dim=1)
                done = done | matcher.hits(window, row_stops).view(P, N)
            finished_now = scores.masked_fill(~done, float("-inf"))
            merged, pick = torch.cat([fin_scores, finished_now], dim=1).topk(N, dim=-1)
            fin_step = torch.cat([fin_step, torch.full_like(fin_step, s)], dim=1).gather(1, pick)
            fin_beam = torch.cat([fin_beam, beam_ids], dim=1).gather(1, pick)
            fin_scores = merged
            scores = scores.masked_fill(done, float("-inf"))
            if (s + 1) % ROUND == 0:
                # Log-probabilities only fall: once a prompt's n-th best finished hypothesis beats
                # its best live beam, nothing left can enter its results.
                settled = fin_scores.gather(1, need).squeeze(1) >= scores.max(dim=1).values
                if bool(settled.all()):
                    break
        tok_hist = torch.stack(hist_tok).cpu()
        par_hist = torch.stack(hist_par).cpu()
        fin_step, fin_beam, fin_scores = fin_step.cpu(), fin_beam.cpu(), fin_scores.cpu()
        steps_run = len(hist_tok)
        cur = torch.full((P, N), -1, dtype=torch.int64)
        out = torch.zeros((P, N, steps_run), dtype=torch.int64)
        for s in reversed(range(steps_run)):
            cur = torch.where(fin_step == s, fin_beam, cur)
            live = cur >= 0
            c = cur.clamp(min=0)
            out[:, :, s] = torch.where(live, tok_hist[s].gather(1, c), 0)
            cur = torch.where(live, par_hist[s].gather(1, c), cur)
        chars = 0
        for p, row in enumerate(rows):
            results = []
            for i in range(row.request.num_samples):
                end = int(fin_step[p, i])
                if end < 0 or not math.isfinite(float(fin_scores[p, i])):
                    continue
                text = self.decode(out[p, i, :end + 1])
                cut = _first_stop(text, row.settings.stop) if row.settings.stop else -1
                reason = "stop" if cut >= 0 else "length"
                text = text[:cut] if cut >= 0 else text
                chars += len(text)
                results.append(self._beam_sample(row, i, text, reason, float(fin_scores[p, i])))
            yield row, results
        if progress is not None:
            progress(chars, sum(r.request.num_samples for r in rows))

    @staticmethod
    def _beam_sample(row: _Row, i: int, text: str, reason: str, logprob: float) -> Sample:
        return Sample(row.prompt, _index(row), i, row.seed, row.settings, text, reason, logprob)


def _index(row: _Row) -> int:
    return row.request.index if row.request.index is not None else row.order


def _prefix_overlap(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that begins some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if stop.startswith(text[-n:]):
                best = n
                break
    return best


def _chunks_by_beam(rows: list[_Row], batch_size: int) -> Iterator[list[_Row]]:
    """Beam rows grouped by width, in input order, with at most ``batch_size`` beams per batch."""
    by_width: dict[int, list[_Row]] = {}
    for row in rows:
        by_width.setdefault(row.settings.beam, []).append(row)
    for width, group in by_width.items():
        per_batch = max(1, batch_size // width)
        for i in range(0, len(group), per_batch):
            yield group[i:i + per_batch]


class _StopMatcher:
    """Finds, on the device, which rows' last characters end one of their stop strings."""

    def __init__(self, stops_per_row: Sequence[Sequence[str]], vocab: Vocab, device: torch.device):
        patterns: list[str] = []
        for stops in stops_per_row:
            for s in stops:
                # A stop string with characters the model cannot produce can never match.
                if s not in patterns and not vocab.unknown(s):
                    patterns.append(s)
        self.active = bool(patterns)
        if not self.active:
            return
        self.width = max(len(p) for p in patterns)
        table = torch.full((len(patterns), self.width), -2, dtype=torch.int64)
        for i, p in enumerate(patterns):
            table[i, self.width - len(p):] = vocab.encode(p)
        self.table = table.to(device)
        self.care = (table >= 0).to(device)
        self.row_mask = torch.tensor([[p in stops for p in patterns] for stops in stops_per_row],
                                     device=device)

    def initial(self, rows: int) -> Tensor:
        return torch.full((rows, self.width), -1, dtype=torch.int64, device=self.table.device)

    def hits(self, window: Tensor, row_mask: Tensor) -> Tensor:
        match = ((window.unsqueeze(1) == self.table) | ~self.care).all(dim=-1)
        return (match & row_mask).any(dim=-1)


# -- reading prompts ---------------------------------------------------------------------------------

PROMPT_KEYS = {"prompt", "temperature", "length", "top_k", "top_p", "greedy", "num_samples", "seed", "stop",
               "beam"}


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


def read_prompts(text: str, source: str, defaults: Settings, temperatures: Sequence[float],
                 num_samples: int, first_index: int = 0) -> list[Request]:
    """Requests from a prompts file: JSONL with per-prompt settings, or one prompt per line.

    The file is JSONL when its first non-blank line is a JSON object; every line must then be
    one. Otherwise each non-empty line is a prompt (without its line break).
    """
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    is_jsonl = False
    if first.lstrip().startswith("{"):
        try:
            is_jsonl = isinstance(json.loads(first), dict)
        except ValueError:
            is_jsonl = False
    requests: list[Request] = []
    index = first_index
    if not is_jsonl:
        for line in lines:
            if line:
                requests.extend(expand(line, index, num_samples, None, defaults, temperatures))
                index += 1
        return requests
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise CharforgeError(f"{where}: not valid JSON ({exc}).") from None
        if not isinstance(entry, dict):
            raise CharforgeError(f"{where}: expected a JSON object with a \"prompt\".")
        unknown = sorted(set(entry) - PROMPT_KEYS)
        if unknown:
            raise CharforgeError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(PROMPT_KEYS))}.")
        prompt = entry.get("prompt")
        if not isinstance(prompt, str):
            raise CharforgeError(f"{where}: \"prompt\" must be a string.")
        stop = entry.get("stop", defaults.stop)
        stop = (stop,) if isinstance(stop, str) else stop
        if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
            raise CharforgeError(f"{where}: \"stop\" must be a string or a list of strings.")
        try:
            settings = replace(defaults, **{k: entry[k] for k in ("length", "top_k", "top_p", "greedy", "beam")
                                            if k in entry}, stop=tuple(stop))
            temps = parse_temperatures(entry["temperature"]) if "temperature" in entry else temperatures
            samples = entry.get("num_samples", num_samples)
            seed = entry.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise CharforgeError(f"seed must be an integer, not {seed!r}.")
            if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
                raise CharforgeError(f"num_samples must be a positive integer, not {samples!r}.")
            if not isinstance(settings.greedy, bool):
                raise CharforgeError(f"greedy must be true or false, not {settings.greedy!r}.")
            requests.extend(expand(prompt, index, samples, seed, settings, temps))
        except CharforgeError as exc:
            raise CharforgeError(f"{where}: {exc}") from None
        index += 1
    return requests


def unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` in a command-line stop string, as those characters."""
    out, i = [], 0
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# -- progress on stderr ----------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr: characters and samples done, chars/s, ETA."""

    def __init__(self, total_chars: int, total_samples: int, stream=None, every: float = 0.1):
        self.total_chars, self.total_samples = max(total_chars, 1), total_samples
        self.chars = self.samples = 0
        self.stream = stream or sys.stderr
        self.every = every
        self.started = self.last = time.monotonic()

    def __call__(self, chars: int, samples: int) -> None:
        self.chars += chars
        self.samples += samples
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.draw(now)

    def draw(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        # Samples that stopped early count as complete.
        fraction = max(self.samples / max(self.total_samples, 1), min(self.chars / self.total_chars, 1.0))
        rate = self.chars / elapsed
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        filled = int(round(fraction * 20))
        self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (20 - filled)}] {fraction:4.0%} "
                          f"{self.samples}/{self.total_samples} samples, {self.chars:,} chars, "
                          f"{rate:,.0f} chars/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        self.stream.flush()

    def close(self) -> None:
        self.draw()
        self.stream.write("\n")
        self.stream.flush()


def total_work(requests: Iterable[Request]) -> tuple[int, int]:
    """(characters, samples) a list of requests asks for at most."""
    chars = samples = 0
    for r in requests:
        samples += r.num_samples
        chars += r.num_samples * r.settings.length
    return chars, samples


def write_results(samples: Iterable[Sample], out, fmt: str = "jsonl") -> int:
    """Write samples as JSONL records or as plain text (prompt + continuation, separated by ----)."""
    n = 0
    for sample in samples:
        if fmt == "jsonl":
            out.write(json.dumps(sample.to_dict(), ensure_ascii=False) + "\n")
        else:
            out.write(("" if n == 0 else "\n----\n") + sample.prompt + sample.text)
        out.flush()
        n += 1
    if fmt == "text" and n:
        out.write("\n")
        out.flush()
    return n


def read_source(path: str) -> tuple[str, str]:
    """(text, name) of a prompts file, ``-`` meaning standard input."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise CharforgeError(f"cannot read prompts file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise CharforgeError(f"prompts file {path} is not UTF-8 text.") from None
