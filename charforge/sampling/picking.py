"""Picking each row's next character with that row's own settings, for many rows at once.

:func:`choose_rows` is what the compiled loop of :mod:`charforge.sampling.fastpath` calls at
every step, and :class:`Picker` holds a batch's per-row settings as the tensors it takes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from charforge.sampling.settings import Settings

_NO_TOP_P = 2.0  # a top-p that never drops anything, for rows without nucleus sampling
_MAX_TEMPERATURE = float(torch.finfo(torch.float32).max)
_MIN_TEMPERATURE = float(torch.finfo(torch.float32).tiny)  # below it a float32 temperature rounds to 0, and 0/0 is NaN


def choose_rows(logits: Tensor, u: Tensor, temps: Optional[Tensor], kth: Optional[Tensor],
                top_p: Optional[Tensor], greedy: Optional[Tensor], all_greedy: bool) -> Tensor:
    """Next tokens (rows,) from logits (rows, vocab), each row with its own settings and uniform.

    ``u`` (rows, 1) holds each row's uniform number; ``temps`` (rows, 1) the temperatures (None:
    all 1); ``kth`` (rows, 1) the index of each row's k-th largest logit (None: no top-k);
    ``top_p`` (rows, 1) (None: no nucleus; 2 for a row without one); ``greedy`` (rows,) rows
    that take the most likely character. What a row's settings do not ask for leaves its numbers
    exactly as the full computation would, so a row's result never depends on its neighbours.
    """
    if all_greedy:
        return logits.argmax(dim=-1)
    x = logits
    if kth is not None:  # ranked before the temperature, which a huge value could flatten into ties
        kth_value = x.sort(dim=-1, descending=True)[0].gather(1, kth)
        x = x.masked_fill(x < kth_value, float("-inf"))
    if temps is not None:
        # Shifted so that the largest logit is 0: a tiny temperature then gives 0 and -inf, never
        # inf - inf = nan. (softmax shifts the same way, so rows at temperature 1 are unchanged.)
        # Divided by a tensor, never a Python scalar: some devices divide by a scalar through its
        # reciprocal, which would round differently from per-row division.
        x = (x - x.amax(dim=-1, keepdim=True)) / temps
    probs = x.softmax(dim=-1)
    if top_p is not None:
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        drop[:, 0] = False  # the most likely character always stays, whatever the top-p
        probs = probs.masked_fill(drop.scatter(1, order, drop), 0.0)
    cdf = probs.cumsum(dim=-1)
    # The first character whose cumulative probability passes u * total (u < 1 - 2^-20 keeps it
    # below the vocabulary size; the clamp keeps a NaN row in range, not a crash).
    token = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1).clamp_(max=cdf.shape[1] - 1)
    if greedy is not None:
        token = torch.where(greedy, logits.argmax(dim=-1), token)
    return token


class Picker:
    """The per-row sampling settings of the rows in a batch, as the tensors :func:`choose_rows` takes."""

    def __init__(self, settings: Sequence[Settings], vocab_size: int, device: torch.device):
        greedy = [s.is_greedy for s in settings]
        self.all_greedy = all(greedy)
        self.greedy = torch.tensor(greedy, device=device) if any(greedy) and not self.all_greedy else None
        # a temperature beyond float32's range (even inf) means uniform over what top-k and top-p keep; one
        # too small for float32 is its smallest, which already leaves the most likely character alone
        temps = [1.0 if g else min(max(float(s.temperature), _MIN_TEMPERATURE), _MAX_TEMPERATURE)
                 for s, g in zip(settings, greedy)]
        self.temps = torch.tensor([[t] for t in temps], device=device) if any(t != 1 for t in temps) else None
        ks = [s.top_k if 0 < s.top_k < vocab_size else vocab_size for s in settings]
        self.kth = torch.tensor([[k - 1] for k in ks], device=device) if any(k < vocab_size for k in ks) else None
        ps = [float(s.top_p) if s.top_p < 1 else _NO_TOP_P for s in settings]
        self.top_p = torch.tensor([[p] for p in ps], device=device) if any(p < 1 for p in ps) else None

    def choose(self, logits: Tensor, u: Tensor) -> Tensor:
        """Next tokens (rows,) from logits (rows, vocab) and one uniform number per row, (rows, 1)."""
        return choose_rows(logits, u, self.temps, self.kth, self.top_p, self.greedy, self.all_greedy)
