"""Loss and accuracy of a model over held-out streams (the state carried across windows) or a task's
held-out sequences: what validation measures (the trainer's periodic and final validations)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from charforge.data import Streams
from charforge.tasks.task import IGNORE

LN2 = math.log(2)


@torch.no_grad()
def evaluate(model, data: Streams, vocab_size: int, device: torch.device, windows: int | None = None,
             sample: int | None = None, progress=None, reduce=None) -> tuple[dict, float | None, int]:
    """(metrics, the loss of the first ``sample`` windows, windows read) of ``model`` over the first
    ``windows`` windows of ``data`` (all by default), with state carried across them.

    ``progress(windows done)`` is called after each window; when it returns True, evaluation
    stops there (a periodic validation that has used its time). ``reduce`` sums the totals over the
    processes that each read a share of the streams (:meth:`charforge.distributed.World.sum`).
    """
    reduce = reduce or (lambda t: t)
    windows = data.windows if windows is None else windows
    model.eval()
    state = model.initial_state(data.batch, device)
    total, correct, count = (torch.zeros((), device=device) for _ in range(3))
    sample_loss, read = None, 0
    for i in range(windows):
        x, y, t = data.window(i, model.uses_time)
        if i and not data.carries_state:  # a task's independent sequences
            state = model.initial_state(data.batch, device)
        logits, state = model(x, state, t)
        scored = y != IGNORE  # a task scores some targets only; every character of a text counts
        total += F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1), reduction="sum")
        correct += ((logits.argmax(-1) == y) & scored).sum()
        count += scored.sum()
        read = i + 1
        if read == sample:
            sample_loss = float(reduce(total) / reduce(count))
        if progress is not None and progress(read):
            break
    total, correct, count = reduce(total), reduce(correct), reduce(count)
    loss, count = float(total / count), float(count)
    return ({"val_loss": loss, "val_bpc": loss / LN2, "val_accuracy": float(correct) / count}, sample_loss, read)
