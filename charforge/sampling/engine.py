"""The generation engine: many prompts continued together, ``batch_size`` rows at a time.

Every front end (``charforge sample`` and ``generate``, the Python API, the terminal UI's sampler,
the trainer's validation samples) runs :class:`BatchGenerator`, usually through
:func:`charforge.sampling.loading.load_engine`, so one seed gives one text everywhere.

* **Prompts of different lengths** are primed in groups of equal length
  (:mod:`charforge.sampling.priming`); free rows are refilled from the queue as samples finish.
* **Reproducibility.** Every row draws its randomness from its own counter-based stream
  (:mod:`charforge.sampling.randomness`) and turns each uniform number into a character by
  inverse-CDF sampling over its own distribution (:mod:`charforge.sampling.picking`), so a row's
  text never depends on which other rows share its batch.
* **Throughput.** Everything runs under ``torch.inference_mode()``. For the built-in fused cells
  a round of :data:`ROUND` steps is one call of a compiled loop on the raw weights
  (:mod:`charforge.sampling.fastpath`); other cells run ``model.step`` from Python, with nothing
  else per step. Tokens are copied to the host once per round and turned into text per row with
  one vectorised lookup, never per character.
* **Threads.** Each round is timed and fed to a :class:`charforge.threads.ThreadTuner`, which
  keeps the CPU thread count that is fastest now; a run leaves the process's count as it found it.

One caveat is outside any sampler's control: in float32, matrix-multiply libraries round the
last bit of a row differently at different batch sizes, so when a row's uniform number falls
within about 1e-6 of a boundary between two characters, batch 1 and batch 256 can pick different
characters from there on (how often is measured in the README). A run repeated with the same
requests, batch size and seed is identical bit for bit.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from charforge.cell import State
from charforge.errors import CharforgeError, shown
from charforge.model import CharModel
from charforge.runs.checkpoint import Checkpoint
from charforge.sampling.beam import beam_search, chunks_by_width
from charforge.sampling.fastpath import FastWeights, check_precision, compiled_fast_rows
from charforge.sampling.picking import Picker
from charforge.sampling.priming import cat, prime, select
from charforge.sampling.randomness import random_seed, row_seed, uniforms
from charforge.sampling.settings import Budget, Request, Sample, Settings, check_seed
from charforge.sampling.stops import cut_at_stop, first_stop, prefix_overlap
from charforge.threads import ThreadTuner
from charforge.vocab import Vocab

ROUND = 64  # steps between host synchronisations (token copies, stop checks, refills)


class _Stepper:
    """Runs ``n`` steps of a batch: the compiled loop for built-in fused cells, else ``model.step``."""

    def __init__(self, model: CharModel, precision: str):
        self.model = model
        self.fast = FastWeights.of(model, precision)

    def __call__(self, n: int, token: Tensor, state: list[State], t: Tensor | None, noise: Tensor,
                 picker: Picker) -> tuple[Tensor, list[State], Tensor]:
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
                fast.head_b, [], noise, picker.temps, picker.kth, picker.top_p, picker.greedy, picker.all_greedy,
                out)
            state = [(h, c) for h, c in zip(hs, cs)] if lstm else [(h,) for h in hs]
            return token, state, out
        model = self.model
        for i in range(n):
            logits, state = model.step(token, state, t)
            token = picker.choose(logits, noise[i])
            out[i] = token
            if t is not None:
                t = t + 1
        return token, state, out


def _keeps_threads(generate):
    """A generator method that gives the process its CPU thread count back when it ends, whatever its
    tuner set meanwhile: a sample taken in the middle of training leaves the trainer's count alone."""
    @functools.wraps(generate)
    def run(*args, **kwargs):
        before = torch.get_num_threads()
        try:
            yield from generate(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
    return run


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

    def add(self, piece: str) -> int:
        """Keep this round's ``piece`` (cut at a stop string); returns the characters kept."""
        if self.settings.stop:
            self.parts, self.tail, piece, self.stopped = cut_at_stop(self.parts, self.tail, piece,
                                                                     self.settings.stop)
        self.parts.append(piece)
        return len(piece)

    def result(self, sample: int, text: str, reason: str, logprob: float | None = None) -> Sample:
        index = self.request.index if self.request.index is not None else self.order
        return Sample(self.prompt, index, sample, self.seed, self.settings, text, reason, logprob)


class _Batch:
    """The tensors of the rows running together: state, last token, position, stream keys, steps taken."""

    def __init__(self, model: CharModel, rows: list[_Row], device: torch.device):
        self.state, self.token, self.position = prime(model, [r.ids for r in rows], device)
        self.keys = torch.tensor([r.key for r in rows], dtype=torch.int64, device=device)
        self.produced = torch.zeros(len(rows), dtype=torch.int64, device=device)

    def extend(self, other: "_Batch") -> None:
        self.state = cat(self.state, other.state)
        self.token, self.position = torch.cat([self.token, other.token]), torch.cat([self.position, other.position])
        self.keys, self.produced = torch.cat([self.keys, other.keys]), torch.cat([self.produced, other.produced])

    def keep(self, idx: Tensor) -> None:
        self.state = select(self.state, idx)
        self.token, self.position = self.token[idx], self.position[idx]
        self.keys, self.produced = self.keys[idx], self.produced[idx]


def _rows(requests: Sequence[Request], seed: int, encode: Callable[[str], tuple[str, Tensor]]) -> list[_Row]:
    """The rows of ``requests`` (one per sample; one per prompt for beam search), each request checked
    and counted against the bounds of one call, each distinct prompt encoded once."""
    rows, encoded, budget = [], {}, Budget()
    for order, request in enumerate(requests):
        budget.add(request)
        if request.prompt not in encoded:
            encoded[request.prompt] = encode(request.prompt)
        prompt, ids = encoded[request.prompt]
        base = request.seed if request.seed is not None else seed
        samples = 1 if request.settings.beam else request.num_samples
        rows.extend(_Row(order, request, i, prompt, ids, base) for i in range(samples))
    return rows


class BatchGenerator:
    """Generates continuations of many prompts with one model, ``batch_size`` rows at a time.

    >>> gen = BatchGenerator(model, vocab, device="cpu", batch_size=256)  # doctest: +SKIP
    >>> for sample in gen.run([Request("The ", Settings(length=100), num_samples=4)], seed=1):
    ...     print(sample.text)  # doctest: +SKIP
    """

    def __init__(self, model: CharModel, vocab: Vocab, device: torch.device | str = "cpu",
                 batch_size: int = 256, drop_unknown: bool = False, precision: str = "auto",
                 origin: Checkpoint | None = None, threads: int = 0):
        """``threads``: CPU threads, 0 (the default) for the count measured fastest while generating."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise CharforgeError(f"--batch-size must be at least 1, not {shown(batch_size)}.")
        if not isinstance(drop_unknown, bool):
            raise CharforgeError(f"drop_unknown must be true or false, not {shown(drop_unknown)}.")
        self.precision = check_precision(precision)
        self.model = model.eval()
        self.vocab = vocab
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.drop_unknown = drop_unknown
        self.origin = origin  # the checkpoint the model came from (metadata only), when it came from one
        self.threads = threads
        self.tuner = ThreadTuner.for_device(self.device, threads)  # kept across runs, and by configured()
        self._codepoints = torch.tensor([ord(c) for c in vocab.chars], dtype=torch.int32)
        self._start = vocab.index.get("\n", 0)

    def configured(self, batch_size: int | None = None, drop_unknown: bool | None = None) -> "BatchGenerator":
        """The same model, precision and thread tuner (with what it measured) with another batch size or
        prompt policy."""
        engine = BatchGenerator(self.model, self.vocab, self.device,
                                self.batch_size if batch_size is None else batch_size,
                                self.drop_unknown if drop_unknown is None else drop_unknown, self.precision,
                                self.origin, self.threads)
        engine.tuner = self.tuner
        return engine

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

    def run(self, requests: Sequence[Request], seed: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> Iterator[Sample]:
        """Every sample of every request, in request order (then sample order), as soon as ready.

        ``seed`` (random when None) is the base of every row's random stream; a request's own
        ``seed`` replaces it. ``progress(chars, samples)`` is called with increments once per
        round of :data:`ROUND` steps.
        """
        if progress is not None and not callable(progress):
            raise CharforgeError(f"progress must be a function of (chars, samples), not {shown(progress)}.")
        seed = random_seed() if check_seed(seed) is None else seed
        rows = _rows(requests, seed, self.encode_prompt)  # every request is checked before anything runs
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
        for group in chunks_by_width([r for r in rows if r.settings.beam], self.batch_size):
            for row, results in beam_search(self.model, self.vocab, self.device, group, self.decode, ROUND,
                                            progress):
                for i in range(row.request.num_samples):  # fewer only if the vocabulary is tiny
                    pending[(row.order, i)] = results[i] if i < len(results) else None
            yield from ready()

    @_keeps_threads
    @torch.inference_mode()
    def _sample(self, rows: list[_Row], progress) -> Iterator[tuple[int, int, Sample]]:
        """Sampling and greedy rows: (request order, sample index, result) as each row finishes."""
        model, dev, V, tuner = self.model, self.device, len(self.vocab), self.tuner
        tuner.start()
        uses_time = model.uses_time
        stepper = _Stepper(model, self.precision)
        queue = deque(rows)
        active: list[_Row] = []
        batch: _Batch | None = None
        picker = table = None
        while queue or active:
            if queue and len(active) < self.batch_size:  # refill free rows, priming the newcomers
                new = [queue.popleft() for _ in range(min(self.batch_size - len(active), len(queue)))]
                fresh = _Batch(model, new, dev)
                if active:
                    batch.extend(fresh)
                else:
                    batch = fresh
                active.extend(new)
                picker = None
            if picker is None:
                picker = Picker([r.settings for r in active], V, dev)
            steps = min(ROUND, max(r.settings.length - r.produced for r in active))
            if steps > 0:
                noise = uniforms(batch.keys, batch.produced, steps).t().unsqueeze(2)  # (steps, rows, 1)
                began = time.perf_counter()
                batch.token, batch.state, out = stepper(steps, batch.token, batch.state,
                                                        batch.position if uses_time else None, noise, picker)
                tuner.record(len(active) * steps, time.perf_counter() - began)
                if uses_time:
                    batch.position = batch.position + steps
                batch.produced = batch.produced + steps
                table = self._codepoints[out.t().cpu()].numpy()
            chars, keep, finished = 0, [], []
            for i, row in enumerate(active):
                take = min(steps, row.settings.length - row.produced)
                row.produced += steps
                if take > 0:
                    chars += row.add(table[i, :take].tobytes().decode("utf-32-le", "surrogatepass"))
                if row.stopped or row.produced >= row.settings.length:
                    finished.append(row)
                else:
                    keep.append(i)
            for row in finished:
                yield row.order, row.sample, row.result(row.sample, "".join(row.parts),
                                                        "stop" if row.stopped else "length")
            if progress is not None:
                progress(chars, len(finished))
            if finished:  # compact the batch to the rows still running
                active = [active[i] for i in keep]
                if active:
                    batch.keep(torch.tensor(keep, device=dev))
                picker = None

    def stream(self, request: Request, seed: int | None = None, sample: int = 0) -> Iterator[str]:
        """The characters of one sample as they are generated (the same text :meth:`run` gives).

        Characters that might begin a stop string are held back until it is clear they do not.
        """
        settings = request.check().settings
        if settings.beam:
            raise CharforgeError("beam search cannot stream: it knows the best continuation only at the end.")
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 0:
            raise CharforgeError(f"sample must be a non-negative integer, not {shown(sample)}.")
        if request.seed is not None:
            seed = request.seed
        elif check_seed(seed) is None:
            seed = random_seed()
        prompt, ids = self.encode_prompt(request.prompt)
        return self._stream(settings, prompt, ids, row_seed(seed, prompt, sample))

    @_keeps_threads
    @torch.inference_mode()
    def _stream(self, settings: Settings, prompt: str, ids: Tensor, row_key: int) -> Iterator[str]:
        self.tuner.start()
        key = torch.tensor([row_key], dtype=torch.int64, device=self.device)
        state, token, position = prime(self.model, [ids], self.device)
        picker = Picker([settings], len(self.vocab), self.device)
        stepper = _Stepper(self.model, self.precision)
        stops = settings.stop
        t = position if self.model.uses_time else None
        held = ""
        produced, chunk = 0, 1
        while produced < settings.length:
            # Chunks grow from one step, so the first characters come at once; the random numbers
            # are counted per step, so chunking changes nothing in the text.
            steps = min(chunk, settings.length - produced)
            noise = uniforms(key, torch.tensor([produced], device=self.device), steps).t().unsqueeze(2)
            began = time.perf_counter()
            token, state, out = stepper(steps, token, state, t, noise, picker)
            if steps == ROUND:  # the short first chunks would make their count look slow (fixed costs per call)
                self.tuner.record(steps, time.perf_counter() - began)
            if t is not None:
                t = t + steps
            produced, chunk = produced + steps, min(2 * chunk, ROUND)
            for char in self.decode(out[:, 0]):
                if not stops:
                    yield char
                    continue
                held += char
                cut = first_stop(held, stops)
                if cut >= 0:
                    if cut:
                        yield held[:cut]
                    return
                keep = prefix_overlap(held, stops)
                if len(held) > keep:
                    yield held[:len(held) - keep]
                    held = held[len(held) - keep:]
        if held:
            yield held
