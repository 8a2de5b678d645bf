"""Stop strings: where one ends a sample, on the host per round of text, or on the device per step.

Sampling rows search each round's text with ``str.find`` (:func:`first_stop`, :func:`cut_at_stop`);
streaming holds back what might begin a stop string (:func:`prefix_overlap`); beam search,
which must know at every step which hypotheses finished, matches token windows on the device
(:class:`StopMatcher`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from charforge.vocab import Vocab


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Where the stop string that completes first in ``text`` starts (the longest on a tie), or -1."""
    best = None
    for stop in stops:
        i = text.find(stop)
        if i >= 0 and (best is None or (i + len(stop), i) < best):
            best = (i + len(stop), i)
    return -1 if best is None else best[1]


def prefix_overlap(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that begins some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if stop.startswith(text[-n:]):
                best = n
                break
    return best


def cut_at_stop(parts: list[str], tail: str, piece: str, stops: Sequence[str]) -> tuple[list[str], str, str, bool]:
    """A row's text after a new ``piece``: (earlier parts, tail, the part of ``piece`` to keep, stopped).

    ``tail`` holds the row's last characters, for stop strings that span rounds; when a stop
    string began in an earlier round's text, the earlier parts are cut back to where it began.
    """
    window = tail + piece
    cut = first_stop(window, stops)
    if cut < 0:
        longest = max(len(s) for s in stops)
        return parts, (window[len(window) - (longest - 1):] if longest > 1 else ""), piece, False
    if cut >= len(tail):
        return parts, tail, piece[:cut - len(tail)], True
    text = "".join(parts)
    return [text[:len(text) - (len(tail) - cut)]], tail, "", True


class StopMatcher:
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
