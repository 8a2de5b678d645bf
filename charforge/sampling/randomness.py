"""Each sample's own random stream, so that its text never depends on the batch it shares.

Step ``j`` of a sample uses ``uniforms(key, j)``, a SplitMix64 hash of the sample's key and
``j``, where the key is :func:`row_seed` of (seed, prompt, sample index): the same numbers on
every device, for every batch size and every order of the prompts.
"""

from __future__ import annotations

import hashlib
import json
import os

import torch
from torch import Tensor


def row_seed(seed: int, prompt: str, sample: int) -> int:
    """The key of one sample's random stream: a hash of (seed, prompt, sample index), 63 bits."""
    digest = hashlib.blake2b(json.dumps([seed, prompt, sample]).encode("utf-8"), digest_size=8,
                             person=b"charforge-gen").digest()
    return int.from_bytes(digest, "little") >> 1


def random_seed() -> int:
    """A fresh seed for runs that were given none (small enough for any JSON reader)."""
    return int.from_bytes(os.urandom(4), "little") >> 1


def _s64(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


_GOLDEN, _MIX1, _MIX2 = _s64(0x9E3779B97F4A7C15), _s64(0xBF58476D1CE4E5B9), _s64(0x94D049BB133111EB)
# Uniforms are scaled just below 1 so that u * total < total after float32 rounding: inverse-CDF
# sampling then never runs past the last character with non-zero probability.
_U_SCALE = 2.0 ** -24 * (1 - 2.0 ** -20)


def _lsr(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 values."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def uniforms(keys: Tensor, start: Tensor, n: int) -> Tensor:
    """(rows, n) float32 uniforms in [0, 1): step ``start[r] + j`` of the stream of ``keys[r]``.

    SplitMix64 (Steele et al. 2014) of key + (step + 1) * golden gamma, in wrapping int64
    arithmetic.
    """
    steps = start.unsqueeze(1) + torch.arange(n, device=keys.device)
    z = keys.unsqueeze(1) + (steps + 1) * _GOLDEN
    z = (z ^ _lsr(z, 30)) * _MIX1
    z = (z ^ _lsr(z, 27)) * _MIX2
    z = z ^ _lsr(z, 31)
    return _lsr(z, 40).to(torch.float32) * _U_SCALE
