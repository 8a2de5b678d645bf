"""Generating text from a model, one character per step, with the step path of its cells."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from charforge.errors import CharforgeError
from charforge.model import CharModel
from charforge.vocab import Vocab


@dataclass(frozen=True)
class SampleOptions:
    """How to pick each next character."""

    length: int = 500
    temperature: float = 1.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0  # nucleus sampling; 1: no limit
    greedy: bool = False  # always the most likely character (also temperature 0)

    def check(self) -> "SampleOptions":
        if self.length < 0:
            raise CharforgeError(f"--length must not be negative, not {self.length}.")
        if not self.temperature >= 0:
            raise CharforgeError(f"--temperature must be 0 or more, not {self.temperature}.")
        if self.top_k < 0:
            raise CharforgeError(f"--top-k must not be negative, not {self.top_k}.")
        if not 0 < self.top_p <= 1:
            raise CharforgeError(f"--top-p must be in (0, 1], not {self.top_p}.")
        return self


def pick(logits: Tensor, options: SampleOptions, generator: torch.Generator | None) -> Tensor:
    """Next tokens (batch,) from logits (batch, vocab)."""
    if options.greedy or options.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / options.temperature
    if 0 < options.top_k < logits.shape[-1]:
        kth = torch.topk(logits, options.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= options.top_p  # keeps the first token always
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


class Sampler:
    """Primes a model on a prompt, then samples ``length`` characters for each of ``num_samples``."""

    def __init__(self, model: CharModel, vocab: Vocab, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.vocab = vocab
        self.device = torch.device(device)

    def prime_ids(self, prime: str, drop_unknown: bool = False) -> Tensor:
        ids = self.vocab.encode(prime, drop_unknown=drop_unknown)
        if len(ids) == 0:  # no prompt: start as after a line break, or on the first character
            ids = torch.tensor([self.vocab.index.get("\n", 0)])
        return ids

    @torch.inference_mode()
    def tokens(self, prime: str, options: SampleOptions, num_samples: int = 1, seed: int | None = None,
               drop_unknown: bool = False) -> Iterator[Tensor]:
        """Yields the next token of every sample, (num_samples,), ``options.length`` times."""
        options.check()
        if num_samples < 1:
            raise CharforgeError(f"--num-samples must be at least 1, not {num_samples}.")
        ids = self.prime_ids(prime, drop_unknown).to(self.device)
        generator = torch.Generator(self.device).manual_seed(
            seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        model, B = self.model, num_samples
        state = model.initial_state(B, self.device)
        uses_time = model.uses_time
        if len(ids) > 1:
            warm = ids[:-1].expand(B, -1)
            t = (torch.arange(len(ids) - 1, dtype=torch.float64, device=self.device).expand(B, -1)
                 if uses_time else None)
            _, state = model(warm, state, t)
        token = ids[-1:].expand(B).contiguous()
        position = len(ids) - 1
        for _ in range(options.length):
            t = torch.full((B,), float(position), dtype=torch.float64, device=self.device) if uses_time else None
            logits, state = model.step(token, state, t)
            token = pick(logits, options, generator)
            position += 1
            yield token

    def sample(self, prime: str, options: SampleOptions, num_samples: int = 1, seed: int | None = None,
               drop_unknown: bool = False) -> list[str]:
        """Whole continuations (without the prompt), one per sample."""
        steps = list(self.tokens(prime, options, num_samples, seed, drop_unknown))
        if not steps:
            return [""] * num_samples
        table = torch.stack(steps, dim=1).cpu()
        return [self.vocab.decode(row) for row in table]
