"""Batches for truncated backpropagation through time.

The text is cut into ``batch`` contiguous streams; step ``i`` of an epoch reads window ``i``
(``seq_len`` characters) of every stream, so the hidden state carried from one window to the
next has seen exactly the preceding text. Timestamps, for cells that use time, are the
absolute character index within each stream.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from charforge.config import TrainConfig
from charforge.corpora import load_corpus
from charforge.errors import CharforgeError
from charforge.options import resolve_options
from charforge.vocab import Vocab, storage_dtype


def split(ids: Tensor, val_fraction: float) -> tuple[Tensor, Tensor]:
    """The last ``val_fraction`` of the text, contiguous, is held out (as nanoGPT does)."""
    cut = len(ids) - int(len(ids) * val_fraction)
    return ids[:cut], ids[cut:]


class Streams:
    """``batch`` parallel contiguous streams over ``ids``, read ``seq_len`` characters at a time."""

    carries_state = True  # window i+1 continues where window i ended

    def __init__(self, ids: Tensor, batch: int, seq_len: int, device: torch.device | str = "cpu",
                 what: str = "training"):
        for flag, value in (("--batch-size", batch), ("--seq-len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise CharforgeError(f"{flag} must be a positive integer, not {value!r}.")
        per_stream = max(len(ids) - 1, 0) // batch
        self.windows = per_stream // seq_len
        if self.windows == 0:
            fit = (len(ids) - 1) // seq_len
            hint = (f"use --batch-size {fit} or less" if fit >= 1
                    else f"use --seq-len {len(ids) - 1} or less with --batch-size 1" if len(ids) >= 2
                    else "give it at least 2 characters")
            raise CharforgeError(
                f"the {what} text has {len(ids)} characters, too short for --batch-size {batch} x "
                f"--seq-len {seq_len} (needs at least {batch * seq_len + 1}); {hint}."
            )
        used = self.windows * seq_len
        self.batch, self.seq_len = batch, seq_len
        self.x = ids[: batch * per_stream].view(batch, per_stream)[:, :used].to(device)
        self.y = ids[1: batch * per_stream + 1].view(batch, per_stream)[:, :used].to(device)
        self._offsets = torch.arange(seq_len, dtype=torch.float64, device=device).expand(batch, seq_len)

    @classmethod
    def fitting(cls, ids: Tensor, batch: int, seq_len: int, device="cpu") -> "Streams | None":
        """Streams for evaluation, shrinking batch and then sequence length to fit short text."""
        if len(ids) < 2:
            return None
        batch = max(1, min(batch, (len(ids) - 1) // seq_len))
        return cls(ids, batch, min(seq_len, len(ids) - 1), device, "validation")

    def shard(self, world) -> "Streams":
        """The streams of one rank of a :class:`~charforge.distributed.World`: its contiguous share of them."""
        part = copy.copy(self)
        part.x, part.y = world.share(self.x), world.share(self.y)
        part.batch = part.x.shape[0]
        part._offsets = self._offsets[: part.batch]
        return part

    @property
    def chars_per_window(self) -> int:
        return self.batch * self.seq_len

    def window(self, i: int, with_time: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """Inputs, targets (both (batch, seq_len) int64) and timestamps (float64) of window ``i``."""
        cols = slice(i * self.seq_len, (i + 1) * self.seq_len)
        t = self._offsets + i * self.seq_len if with_time else None
        return self.x[:, cols].long(), self.y[:, cols].long(), t


@dataclass
class TrainingData:
    """What a run trains on: a corpus's streams, or a task's batches (``task`` then says which)."""

    name: str
    vocab: Vocab
    train: Any  # Streams, or charforge.tasks.task.Sequences
    val: Any | None
    task: Any | None = None  # a charforge.tasks.task.Task
    input_size: Any | None = None  # a task's TaskData.input_size: inputs that are vectors
    fingerprint: dict | None = None  # a corpus's (charforge.corpora.fingerprint); a task's data is its options'


def training_data(config, registry, device, vocab: Vocab | None = None) -> TrainingData:
    """The data ``config.corpus`` names: a registered task (its options, ``config.task_options``,
    resolved and filled in) or a corpus, split into training and held-out text. ``vocab``: encode
    the text in this vocabulary (a model's, that training starts from), extended by the characters
    it lacks."""
    if config.corpus in registry.names("task"):
        cls = registry.get("task", config.corpus).obj
        config.task_options = resolve_options(f"task {config.corpus!r}", cls.options, config.task_options)
        task = cls(**config.task_options)
        data = task.data(config.batch_size, config.seq_len, config.seed, device)
        if vocab is not None and vocab != data.vocab:
            raise CharforgeError(f"the task {config.corpus!r} has its own vocabulary of {len(data.vocab)} "
                                 f"symbols; the model starting it knows {len(vocab)} others.")
        return TrainingData(config.corpus, data.vocab, data.train, data.val, task, data.input_size)
    if config.task_options:
        raise CharforgeError(f"-T sets a task's option, but {config.corpus!r} is a corpus, not a task "
                             f"(tasks: {', '.join(registry.names('task')) or 'none'}).")
    corpus = load_corpus(config.corpus, registry, config.encoding, config.errors)
    vocab, ids = (corpus.vocab, corpus.ids) if vocab is None else encoded_in(vocab, corpus.vocab, corpus.ids)
    train_ids, val_ids = split(ids, config.val_fraction)
    val = Streams.fitting(val_ids, config.batch_size, config.seq_len, device) if config.val_fraction > 0 else None
    return TrainingData(corpus.name, vocab, Streams(train_ids, config.batch_size, config.seq_len, device), val,
                        fingerprint=corpus.fingerprint)


def encoded_in(vocab: Vocab, own: Vocab, ids: Tensor) -> tuple[Vocab, Tensor]:
    """``ids`` (in their ``own`` vocabulary) in ``vocab``, extended at its end by the characters it lacks,
    so that the ids it had keep their meaning."""
    new = [c for c in own.chars if c not in vocab.index]
    merged = Vocab(vocab.chars + new) if new else vocab
    table = torch.tensor([merged.index[c] for c in own.chars], dtype=torch.int64)
    return merged, table[ids.long()].to(storage_dtype(len(merged)))


def target_defaults(target: str, task_options: dict | None, registry) -> dict[str, Any]:
    """The training settings ``target`` suits: a task's, or a named corpus's (the seed sentences train
    as one window of one stream); a run's settings are TrainConfig's defaults, overlaid with these,
    overlaid with the user's."""
    if target in registry.names("task"):
        cls = registry.get("task", target).obj
        return cls(**resolve_options(f"task {target!r}", cls.options, task_options or {})).defaults()
    if target in registry.names("corpus"):
        return dict(registry.get("corpus", target).obj.defaults or {})
    return {}


def run_config(settings: dict[str, Any], registry) -> TrainConfig:
    """The whole configuration of a new run: TrainConfig's defaults, overlaid with what
    ``settings["corpus"]`` suits (:func:`target_defaults`) and the shape of the model it starts from
    (``init_from``), overlaid with ``settings``; each field's type and value checked."""
    defaults = target_defaults(settings["corpus"], settings.get("task_options"), registry)
    if settings.get("init_from") is not None:  # fine-tuning: the model's shape is the checkpoint's
        from charforge.finetune import architecture_from

        defaults.update(architecture_from(settings["init_from"], settings, registry))
        settings = {k: v for k, v in settings.items() if k != "init_from"}
    return TrainConfig.from_dict({**defaults, **settings}).check()
