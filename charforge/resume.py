"""What a resumed run may change: the budget, the learning rate and such, never the run itself (its
text included)."""

from __future__ import annotations

import dataclasses

from charforge.config import ARCHITECTURE, TrainConfig
from charforge.corpora import changes
from charforge.errors import CharforgeError
from charforge.options import resolve_options
from charforge.runs.directory import Run

# What a resumed run must keep: the model's shape and everything the data position depends on.
RESUME_FIXED = ARCHITECTURE + ("optimizer", "optimizer_options", "batch_size", "seq_len", "corpus",
                               "task_options", "encoding", "errors", "val_fraction", "init_from")

_OWNER = {"cell_options": "cell", "optimizer_options": "optimizer", "task_options": "corpus"}  # whose options


def resumed_config(config: TrainConfig, overrides: dict, registry) -> TrainConfig:
    """A stored configuration with a resume's ``overrides``, refusing any that would change the run
    itself (:data:`RESUME_FIXED`)."""
    config = dataclasses.replace(config)
    for key, value in overrides.items():
        if key in _OWNER and value:
            # given options (strings from the command line) are parsed as the run's were, and
            # merged into its full set: `-c init orthogonal` must not reset the other options
            kind, name = key.removesuffix("_options"), getattr(config, _OWNER[key])
            parsed = resolve_options(f"{kind} {name!r}", registry.get(kind, name).obj.options, value)
            value = {**getattr(config, key), **{k: v for k, v in parsed.items() if k in value}}
        if key in RESUME_FIXED and value != getattr(config, key):
            raise CharforgeError(
                f"cannot change {key} when resuming (the run has {getattr(config, key)!r}, "
                f"asked for {value!r}); start a new run instead.")
        setattr(config, key, value)
    return config


def same_text(ckpt, vocab, fingerprint: dict | None, corpus: str) -> None:
    """Refuse to resume on text other than the run's: its characters, or (for checkpoints that hold
    one) the corpus's fingerprint; the line offers fine-tuning on the new text instead."""
    why = "its characters differ" if ckpt.vocab != vocab else None
    if why is None and fingerprint is not None and "corpus" in ckpt.meta:
        why = changes(ckpt.meta["corpus"], fingerprint)
    if why is not None:
        raise CharforgeError(f"the corpus {corpus!r} has changed since this run started ({why}); resume needs "
                             f"the same text. To go on training this model on the new text, start a new run "
                             f"from it: charforge train {corpus} --init-from {Run.of(ckpt.path).path}")
