"""Loss and accuracy of a model over held-out streams, with the state carried across windows: what
validation measures (the trainer's periodic and final validations)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from charforge.data import Streams

LN2 = math.log(2)


@torch.no_grad()
def evaluate(model, data: Streams, vocab_size: int, device: torch.device, windows: int | None = None,
             sample: int | None = None, progress=None) -> tuple[dict, float | None, int]:
    """(metrics, the loss of the first ``sample`` windows, windows read) of ``model`` over the first
    ``windows`` windows of ``data`` (all by default), with state carried across them.

    ``progress(windows done)`` is called after each window; when it returns True, evaluation
    stops there (a periodic validation that has used its time).
    """
    windows = data.windows if windows is None else windows
    model.eval()
    state = model.initial_state(data.batch, device)
    total, correct = torch.zeros((), device=device), torch.zeros((), device=device)
    sample_total, read = None, 0
    for i in range(windows):
        x, y, t = data.window(i, model.uses_time)
        logits, state = model(x, state, t)
        total += F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1), reduction="sum")
        correct += (logits.argmax(-1) == y).sum()
        read = i + 1
        if read == sample:
            sample_total = float(total)
        if progress is not None and progress(read):
            break
    count = read * data.chars_per_window
    loss = float(total) / count
    sample_loss = None if sample_total is None else sample_total / (sample * data.chars_per_window)
    return ({"val_loss": loss, "val_bpc": loss / LN2, "val_accuracy": float(correct) / count}, sample_loss, read)
