"""The Python API: load a model, generate (batched or streamed), score text, and train.

>>> import charforge
>>> model = charforge.load("runs/python-stdlib-lstm")          # doctest: +SKIP
>>> model.generate("def ", length=200, temperature=0.8, seed=1)  # doctest: +SKIP
>>> for char in model.stream("class ", length=100):             # doctest: +SKIP
...     print(char, end="", flush=True)
>>> model.score("import os\\n").bits_per_char                   # doctest: +SKIP
>>> model.inspect('print("hi")').unit(0, 17, "c")              # doctest: +SKIP
>>> charforge.train("corpus.txt", steps=1000, hidden_size=256)  # doctest: +SKIP

Everything here is imported lazily by ``charforge.__getattr__``, so ``import charforge`` stays
cheap; torch loads on the first call.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, overload

import torch

from charforge.config import TrainConfig
from charforge.device import pick_device
from charforge.errors import CharforgeError, unknown_name
from charforge.inspection.extract import WINDOW, Inspection, inspect_model
from charforge.model import CharModel
from charforge.runs.checkpoint import Checkpoint
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.loading import load_engine
from charforge.sampling.settings import Request, Sample, Settings, check_text, expand, parse_temperatures, stops
from charforge.vocab import Vocab

LN2 = math.log(2)


class Score(NamedTuple):
    """How well a model predicts a text: the summed log-likelihood and the characters scored."""

    log_likelihood: float  # natural log (nats), summed over the scored characters
    chars: int

    @property
    def nats_per_char(self) -> float:
        """Mean negative log-likelihood per character (the training loss's unit)."""
        return -self.log_likelihood / self.chars if self.chars else 0.0

    @property
    def bits_per_char(self) -> float:
        """Mean negative log-likelihood per character in bits."""
        return self.nats_per_char / LN2


class Model:
    """A trained character model ready to generate and score text.

    Build one with :func:`charforge.load`, or wrap a :class:`~charforge.model.CharModel` and its
    :class:`~charforge.vocab.Vocab` directly: ``Model(char_model, vocab)``. ``precision`` is the
    arithmetic of generation (auto, float32, float16 or int8: see ``charforge generate --help``);
    :meth:`score` always computes in float32.
    """

    def __init__(self, model: CharModel, vocab: Vocab, device: torch.device | str = "cpu",
                 precision: str = "auto", origin: Checkpoint | None = None):
        device = pick_device(device) if isinstance(device, str) else torch.device(device)
        self.engine = BatchGenerator(model.to(device), vocab, device, precision=precision, origin=origin)

    @classmethod
    def of(cls, engine: BatchGenerator) -> "Model":
        """The API's view of an engine that :func:`~charforge.sampling.loading.load_engine` built."""
        return cls(engine.model, engine.vocab, engine.device, engine.precision, engine.origin)

    @property
    def model(self) -> CharModel:
        return self.engine.model

    @property
    def vocab(self) -> Vocab:
        return self.engine.vocab

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def precision(self) -> str:
        return self.engine.precision

    @property
    def config(self) -> TrainConfig | None:
        """The training configuration, for a model loaded from a checkpoint."""
        return self.engine.origin.config if self.engine.origin else None

    @property
    def path(self) -> Path | None:
        """The checkpoint file it was loaded from."""
        return self.engine.origin.path if self.engine.origin else None

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint's metadata (step, metrics, provenance...); empty for a wrapped model."""
        return self.engine.origin.meta if self.engine.origin else {}

    def __repr__(self) -> str:
        shape = (f"{self.config.num_layers}x{self.config.hidden_size} {self.config.cell}"
                 if self.config else type(self.model).__name__)
        where = f" from {self.path}" if self.path else ""
        return f"<charforge.Model {shape}, {len(self.vocab)} characters, on {self.device}{where}>"

    @property
    def chars(self) -> list[str]:
        """The characters the model knows, in id order."""
        return list(self.vocab.chars)

    def _engine(self, batch_size: int = 256, drop_unknown: bool = False) -> BatchGenerator:
        return self.engine.configured(batch_size, drop_unknown)

    # -- generation ---------------------------------------------------------------------------

    @overload
    def generate(self, prompt: str = "", **options: Any) -> str | list[str]: ...

    @overload
    def generate(self, prompt: Sequence[str], **options: Any) -> list[str] | list[list[str]]: ...

    def generate(self, prompt: str | Sequence[str] = "", *, length: int = 500, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, greedy: bool = False, num_samples: int = 1,
                 seed: int | None = None, stop: str | Sequence[str] | None = None, beam: int = 0,
                 batch_size: int = 256, drop_unknown: bool = False
                 ) -> str | list[str] | list[list[str]]:
        """Continue one prompt or many; returns the continuations (without the prompts).

        One prompt gives a string, or a list of ``num_samples`` strings when ``num_samples`` > 1.
        A list of prompts gives a list with one such entry per prompt. Options are those of
        ``charforge generate``: ``length`` characters at most; ``temperature`` (0 or
        ``greedy`` for the most likely character), ``top_k``, ``top_p``; ``stop`` strings end a
        sample early (and are left out); ``beam`` > 0 for beam search; ``seed`` for repeatable
        samples (the same seed gives the same text for a prompt and sample index, whatever the
        other prompts and the ``batch_size``).
        """
        single = isinstance(prompt, str)
        prompts = _prompts(prompt)
        records = self.generate_records(
            prompts, length=length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
            num_samples=num_samples, seed=seed, stop=stop, beam=beam, batch_size=batch_size,
            drop_unknown=drop_unknown)
        texts: list[list[str]] = [[] for _ in prompts]
        for record in records:
            texts[record.index].append(record.text)
        out = [t if num_samples > 1 else (t[0] if t else "") for t in texts]
        return out[0] if single else out

    def generate_records(self, prompts: str | Sequence[str | Request], *, length: int = 500,
                         temperature: float | Sequence[float] = 1.0, top_k: int = 0, top_p: float = 1.0,
                         greedy: bool = False, num_samples: int = 1, seed: int | None = None,
                         stop: str | Sequence[str] | None = None, beam: int = 0, batch_size: int = 256,
                         drop_unknown: bool = False,
                         progress: Callable[[int, int], None] | None = None) -> list[Sample]:
        """Every sample as a :class:`~charforge.sampling.settings.Sample` record (what the CLI writes as JSONL).

        ``temperature`` may be a list to sweep: each prompt is generated at each temperature.
        A prompt may also be a :class:`~charforge.sampling.settings.Request` with its own settings.
        ``seed`` None picks a random one, reported in every record.
        """
        prompts = _prompts(prompts)
        defaults = Settings(length=length, top_k=top_k, top_p=top_p, greedy=greedy, stop=stops(stop),
                            beam=beam)
        temps = parse_temperatures(temperature)
        requests: list[Request] = []
        for index, prompt in enumerate(prompts):
            if isinstance(prompt, Request):
                requests.append(dataclasses.replace(prompt, index=index))
            elif isinstance(prompt, str):
                requests.extend(expand(prompt, index, num_samples, None, defaults, temps))
            else:
                raise CharforgeError(f"a prompt must be a string, not {type(prompt).__name__}.")
        return list(self._engine(batch_size, drop_unknown).run(requests, seed, progress))

    def stream(self, prompt: str = "", *, length: int = 500, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, greedy: bool = False, seed: int | None = None,
               stop: str | Sequence[str] | None = None, sample: int = 0,
               drop_unknown: bool = False) -> Iterator[str]:
        """The characters of one continuation of ``prompt``, one at a time, as they are generated.

        With the same ``seed`` the text is exactly ``generate(prompt, seed=seed, ...)``'s
        (``sample`` picks which of ``num_samples`` to reproduce).
        """
        settings = Settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                            greedy=greedy, stop=stops(stop))
        return self._engine(1, drop_unknown).stream(Request(prompt, settings), seed, sample)

    # -- scoring ------------------------------------------------------------------------------

    @torch.inference_mode()
    def score(self, text: str, prompt: str | None = None) -> Score:
        """Log-likelihood (nats) and bits per character of ``text`` under the model.

        Without ``prompt`` the first character is context and the rest are scored (as in
        validation). With ``prompt`` every character of ``text`` is scored, conditioned on the
        prompt (an empty prompt means the start of a generation: after a line break).
        """
        check_text(text, "the text to score")
        if prompt is not None:
            Request(prompt).check()
        engine = self._engine()
        ids = self.vocab.encode(text)
        if prompt is None:
            if len(ids) < 2:
                return Score(0.0, 0)
            first = 1  # index in ``ids`` of the first scored character
        else:
            _, context = engine.encode_prompt(prompt)
            first = len(context)
            ids = torch.cat([context, ids])
        model, dev = self.model, self.device
        ids = ids.to(dev)
        inputs, targets = ids[:-1], ids[1:]
        state = model.initial_state(1, dev)
        total = 0.0
        for start in range(0, len(inputs), WINDOW):
            x = inputs[start:start + WINDOW]
            t = (torch.arange(start, start + len(x), dtype=torch.float64, device=dev).unsqueeze(0)
                 if model.uses_time else None)
            logits, state = model(x.unsqueeze(0), state, t)
            logp = logits[0].float().log_softmax(dim=-1)
            picked = logp.gather(1, targets[start:start + len(x)].unsqueeze(1)).squeeze(1)
            skip = max(0, first - 1 - start)  # targets before the first scored character
            total += float(picked[skip:].to("cpu", torch.float64).sum())  # summed in double precision
        return Score(total, len(ids) - first)

    # -- inspection ---------------------------------------------------------------------------

    def inspect(self, text: str, top: int = 5) -> Inspection:
        """What the model computes on ``text``, position by position, in float32: each character's
        loss, the ``top`` predictions before it, every layer's states and gates and a time cell's
        clock (an :class:`~charforge.inspection.extract.Inspection`). As with ``score(text,
        prompt="")``, the text starts after a line break, so every character is scored."""
        return inspect_model(self.model, self.vocab, text, self.device, top)


def _prompts(prompts: Any) -> list:
    """The prompts of a generation call as a list: one string, or a list or tuple of them (or of Requests)."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise CharforgeError(f"prompts must be a string or a list of strings, not {type(prompts).__name__}.")
    return list(prompts)


# -- loading and training ----------------------------------------------------------------------

def load(path: str | Path, device: str = "auto", which: str = "best", plugins: Iterable[Any] = (),
         precision: str = "auto") -> Model:
    """A :class:`Model` from a checkpoint file or a run directory (its best, else latest, checkpoint).

    ``device``: auto (a GPU when there is one), cpu, cuda or mps. ``plugins``: extra plugin
    objects, for checkpoints whose cell comes from a plugin registered in code. ``precision``:
    generation's arithmetic: auto (a lossy one only where it measured faster on this CPU), float32,
    float16 or int8.
    """
    return Model.of(load_engine(path, which, device, precision, extra=plugins))


@dataclass
class TrainResult:
    """What :func:`train` returns: the run directory, the last metrics and the final config."""

    run_dir: Path
    metrics: dict[str, Any]
    config: TrainConfig

    def load(self, device: str = "auto", which: str = "best", plugins: Iterable[Any] = (),
             precision: str = "auto") -> Model:
        """The trained model (its best checkpoint by default)."""
        return load(self.run_dir, device, which, plugins, precision)


_ALIASES = {"layers": "num_layers", "keep": "keep_checkpoints"}  # the CLI's names for two fields


def train(corpus: str | Path | None = None, *, resume: str | Path | None = None, runs_dir: str | Path = "runs",
          name: str | None = None, quiet: bool = False, plugins: Iterable[Any] = (),
          **options: Any) -> TrainResult:
    """Train a model, as ``charforge train`` does, and return where the run lives.

    ``corpus``: a text file, folder, glob, named corpus or task (whose settings it suits are the
    defaults, as on the command line). ``options``: any
    :class:`~charforge.config.TrainConfig` field (``hidden_size=256``, ``steps=1000``,
    ``cell_options={"init": "orthogonal"}``...; ``layers`` and ``keep`` also work, as on the
    command line; ``init_from="runs/x"`` fine-tunes that model on ``corpus``, in a new run).
    ``resume``: a run directory or checkpoint to continue instead.
    ``plugins``: extra plugin objects whose hooks (``on_step_end``, ``on_validation_end``...)
    see the run, as installed plugins do. ``quiet`` blocks the console progress plugin.
    """
    from charforge.plugins import make_plugin_manager
    from charforge.trainer import Trainer

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"corpus"}
    overrides: dict[str, Any] = {}
    for key, value in options.items():
        field = _ALIASES.get(key, key)
        if field not in fields:
            raise unknown_name("training option", key, fields | set(_ALIASES))
        if value is not None:
            overrides[field] = value
    pm = make_plugin_manager(extra=plugins, block=["console"] if quiet else ())
    if resume is not None:
        if corpus is not None:
            overrides["corpus"] = str(corpus)
        trainer = Trainer.resume(resume, overrides, pm=pm)
    else:
        if corpus is None:
            raise CharforgeError("give a corpus to train on, or resume= a run.")
        from charforge.data import run_config
        from charforge.plugins import Registry

        config = run_config({"corpus": str(corpus), **overrides}, Registry(pm))
        trainer = Trainer(config, pm=pm, runs_root=runs_dir, name=name)
    metrics = trainer.run()
    return TrainResult(Path(trainer.run_dir), dict(metrics), trainer.config)
