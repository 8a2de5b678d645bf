"""Batches for truncated backpropagation through time.

The text is cut into ``batch`` contiguous streams; step ``i`` of an epoch reads window ``i``
(``seq_len`` characters) of every stream, so the hidden state carried from one window to the
next has seen exactly the preceding text. Timestamps, for cells that use time, are the
absolute character index within each stream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from charforge.errors import CharforgeError


def split(ids: Tensor, val_fraction: float) -> tuple[Tensor, Tensor]:
    """The last ``val_fraction`` of the text, contiguous, is held out (as nanoGPT does)."""
    cut = len(ids) - int(len(ids) * val_fraction)
    return ids[:cut], ids[cut:]


class Streams:
    """``batch`` parallel contiguous streams over ``ids``, read ``seq_len`` characters at a time."""

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

    @property
    def chars_per_window(self) -> int:
        return self.batch * self.seq_len

    def window(self, i: int, with_time: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """Inputs, targets (both (batch, seq_len) int64) and timestamps (float64) of window ``i``."""
        cols = slice(i * self.seq_len, (i + 1) * self.seq_len)
        t = self._offsets + i * self.seq_len if with_time else None
        return self.x[:, cols].long(), self.y[:, cols].long(), t
