"""The character vocabulary: a standard ``tokenizers`` tokenizer.json, with a fast tensor encoder.

Ids are characters sorted by code point. Encoding goes through one lookup table indexed by
code point, so a 100 MB corpus is encoded in a few vectorised passes rather than per character.
"""

from __future__ import annotations

import json

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from charforge.errors import CharforgeError

_CHUNK = 1 << 23  # characters per vectorised pass, bounding peak memory


def codepoints(text: str) -> torch.Tensor:
    """The code points of ``text`` as int32 (no Python loop over characters); a lone surrogate too,
    so that the vocabulary, not the encoder, refuses it."""
    return torch.frombuffer(bytearray(text.encode("utf-32-le", "surrogatepass")), dtype=torch.int32)


def storage_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer type holding every id of a vocabulary of this size."""
    return torch.uint8 if vocab_size <= 256 else torch.int16 if vocab_size <= 32767 else torch.int32


class Vocab:
    """An ordered set of characters; id ``i`` is ``chars[i]``."""

    def __init__(self, chars: list[str]):
        if not chars:
            raise CharforgeError("the vocabulary is empty: the corpus has no characters.")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise CharforgeError("a vocabulary must hold distinct single characters.")
        surrogates = [c for c in chars if "\ud800" <= c <= "\udfff"]
        if surrogates:  # half of a UTF-16 pair: no text holds one alone, and no terminal can print it
            raise CharforgeError(f"the vocabulary holds a lone surrogate, {surrogates[0]!r}, which is not a "
                                 f"character of any text.")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        points = torch.tensor([ord(c) for c in self.chars], dtype=torch.int64)
        self._lut = torch.full((int(points.max()) + 2,), -1, dtype=torch.int32)
        self._lut[points] = torch.arange(len(chars), dtype=torch.int32)

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(sorted(set(text)))

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` this vocabulary lacks, sorted."""
        return sorted({c for c in set(text) if c not in self.index})

    def encode(self, text: str, drop_unknown: bool = False, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """Ids of ``text``; unknown characters are an error naming them, or dropped."""
        out = [self._encode_chunk(text[i:i + _CHUNK], drop_unknown).to(dtype)
               for i in range(0, len(text), _CHUNK)]
        return torch.cat(out) if out else torch.zeros(0, dtype=dtype)

    def _encode_chunk(self, text: str, drop_unknown: bool) -> torch.Tensor:
        cp = codepoints(text).to(torch.int64).clamp_(max=len(self._lut) - 1)
        ids = self._lut[cp]
        if bool((ids < 0).any()):
            if not drop_unknown:
                missing = self.unknown(text)
                shown = "".join(missing[:40]) + ("..." if len(missing) > 40 else "")  # one line stays readable
                raise CharforgeError(
                    f"{len(missing)} character(s) not in the model's vocabulary: {shown!r} "
                    f"(drop them with --drop-unknown)."
                )
            ids = ids[ids >= 0]
        return ids

    def decode(self, ids) -> str:
        chars = self.chars
        return "".join(chars[i] for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))

    def tokenizer(self) -> Tokenizer:
        """This vocabulary as a ``tokenizers`` Tokenizer that splits text into single characters."""
        tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(self.chars)}, unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        return tok

    def to_json(self) -> str:
        return self.tokenizer().to_str()

    @classmethod
    def from_json(cls, data: str) -> "Vocab":
        """Read a tokenizer.json written by :meth:`to_json` (validated, never executed)."""
        try:
            vocab = json.loads(data)["model"]["vocab"]
            chars = [c for c, _ in sorted(vocab.items(), key=lambda item: item[1])]
            ok = sorted(vocab.values()) == list(range(len(vocab)))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise CharforgeError("the tokenizer stored in the checkpoint is not a valid tokenizer.json.") from None
        if not ok:
            raise CharforgeError("the tokenizer's ids are not 0..n-1.")
        return cls(chars)


def build_and_encode(text: str) -> tuple[Vocab, torch.Tensor]:
    """The vocabulary of ``text`` and its ids in the smallest integer type, chunk by chunk."""
    present = torch.zeros(0, dtype=torch.bool)
    for i in range(0, len(text), _CHUNK):
        counts = torch.bincount(codepoints(text[i:i + _CHUNK]).to(torch.int64))
        if len(counts) > len(present):
            present = torch.cat([present, torch.zeros(len(counts) - len(present), dtype=torch.bool)])
        present[: len(counts)] |= counts > 0
    vocab = Vocab([chr(int(p)) for p in present.nonzero().flatten()])
    return vocab, vocab.encode(text, dtype=storage_dtype(len(vocab)))
