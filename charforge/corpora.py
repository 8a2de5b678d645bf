"""Where training text comes from: a file, a directory, a glob, or a corpus named by a plugin.

Named corpora that live on the web are downloaded once into a cache and checked against
their SHA-256; ``CHARFORGE_CORPUS_DIR`` points that cache at local copies. Encoded corpora
are cached too (keyed by the files' paths, sizes and modification times), so a second run on
the same text starts at once. Every corpus has a :func:`fingerprint`, stored in its runs'
checkpoints, so that a resume on text that changed is refused with what changed.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from charforge.errors import CharforgeError, unknown_name
from charforge.vocab import Vocab, build_and_encode

_CACHE_FORMAT = 1


@dataclass(frozen=True)
class NamedCorpus:
    """A corpus a plugin provides by name: downloaded from ``url``, or made by ``files``/``text``."""

    name: str
    help: str = ""
    url: str | None = None
    sha256: str | None = None
    filename: str | None = None
    files: Callable[[], list[Path]] | None = None
    text: str | None = None
    strip: Callable[[str], str] | None = None  # e.g. drop a licence header and footer
    defaults: dict | None = None  # training settings it suits, e.g. one window for a sentence


def cache_dir() -> Path:
    root = os.environ.get("CHARFORGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "charforge")
    return Path(root)


def corpus_dir() -> Path:
    return Path(os.environ.get("CHARFORGE_CORPUS_DIR") or cache_dir() / "corpora")


@dataclass
class Corpus:
    """Encoded text: ``ids`` in a small integer type, the vocabulary that maps them, and the text's
    :func:`fingerprint`."""

    name: str
    vocab: Vocab
    ids: torch.Tensor
    fingerprint: dict | None = None


def fingerprint(vocab: Vocab, ids: torch.Tensor, files: list[Path] | None) -> dict:
    """What identifies a text: its length, a hash of its contents (in one pass over the encoded ids)
    and, for each file, its name (relative to the files' common folder) and size in bytes."""
    digest = hashlib.blake2b(vocab.to_json().encode("utf-8"), digest_size=16)
    digest.update(ids.contiguous().numpy())  # the buffer itself, not a copy
    files = files or []
    root = Path(os.path.commonpath(files)) if len(files) > 1 else None
    names = [str(p.relative_to(root)) if root else p.name for p in files]
    return {"characters": len(ids), "blake2b": digest.hexdigest(),
            "files": [[name, p.stat().st_size] for name, p in zip(names, files)]}


def changes(stored, now: dict) -> str | None:
    """What differs between a checkpoint's fingerprint of its corpus and the corpus's now, in words
    (None: the same text)."""
    well_formed = (isinstance(stored, dict) and isinstance(stored.get("characters"), int)
                   and isinstance(stored.get("blake2b"), str) and isinstance(stored.get("files"), list)
                   and all(isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and isinstance(f[1], int)
                           for f in stored["files"]))
    if not well_formed:
        return "the checkpoint's record of it is damaged"
    if stored["blake2b"] == now["blake2b"] and stored["characters"] == now["characters"]:
        return None
    before, after = dict(map(tuple, stored["files"])), dict(map(tuple, now["files"]))
    said = []
    if len(before) > 1 or len(after) > 1:
        gained, lost = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
        if gained:
            said.append(f"{len(gained)} file(s) added, {', '.join(gained[:3])}{', ...' if len(gained) > 3 else ''}")
        if lost:
            said.append(f"{len(lost)} file(s) gone, {', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}")
    resized = [f"{name} {before[name]} -> {after[name]} bytes" for name in sorted(before.keys() & after.keys())
               if before[name] != after[name]]
    if resized:
        said.append(", ".join(resized[:3]) + (", ..." if len(resized) > 3 else ""))
    if stored["characters"] != now["characters"]:
        said.append(f"{stored['characters']} -> {now['characters']} characters")
    return "; ".join(said) or "the same length, different contents"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(named: NamedCorpus) -> Path:
    """The local copy of a downloadable corpus, downloading and verifying it the first time."""
    target = corpus_dir() / (named.filename or f"{named.name}.txt")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(named.url, timeout=30) as response, \
                    tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                tmp.write(response.read())
        except OSError as exc:
            raise CharforgeError(
                f"could not download corpus {named.name!r} from {named.url} ({exc}); "
                f"put a copy at {target} or point CHARFORGE_CORPUS_DIR at a folder holding {target.name}."
            ) from None
        os.replace(tmp.name, target)
    if named.sha256 and _sha256(target) != named.sha256:
        raise CharforgeError(f"{target} does not match the SHA-256 of corpus {named.name!r}; "
                             f"delete it to download it again.")
    return target


def _expand(spec: str, registry) -> tuple[str, list[Path] | None, NamedCorpus | None]:
    """(display name, files, named corpus) for a CORPUS argument."""
    if not spec.strip():  # Path("") is the current folder: an empty argument must not train on it
        raise CharforgeError("the corpus is an empty string: give a text file, a folder, a glob or a name "
                             "(`charforge corpora`).")
    path = Path(spec).expanduser()
    if path.is_file():
        return path.stem, [path], None
    if path.exists() and not path.is_dir():  # a FIFO, a device: nothing charforge could read twice
        raise CharforgeError(f"{spec} is not a regular file (a FIFO or a device?): give a text file, a folder "
                             f"or a glob.")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        texts = [p for p in files if not _looks_binary(p)]
        if not texts:
            raise CharforgeError(f"directory {spec} holds no text files.")
        return path.name, texts, None
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(os.path.expanduser(spec), recursive=True)
                       if os.path.isfile(p))
        if not files:
            raise CharforgeError(f"no files match {spec!r}.")
        return Path(spec).stem.strip("*?[]") or "glob", files, None
    named = {p.name: p.obj for p in registry.items("corpus")}
    if spec in named:
        return spec, None, named[spec]
    if os.sep in spec or "." in spec:
        raise CharforgeError(f"corpus file {spec} does not exist.")
    raise unknown_name("corpus (not a file, directory or glob either)", spec, named)


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\x00" in f.read(8192)


def _read(path: Path, encoding: str, errors: str) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise CharforgeError(f"{path} looks binary (it holds NUL bytes), not text.")
    try:
        text = data.decode(encoding, errors)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CharforgeError(
            f"{path} is not valid {encoding}: byte {exc.start} (line {line}) cannot be decoded; "
            f"pass --encoding (e.g. latin-1) or --errors replace."
        ) from None
    except LookupError:
        raise CharforgeError(f"unknown text encoding {encoding!r}.") from None
    return text.removeprefix("\ufeff")


def _cache_key(files: list[Path], encoding: str, errors: str, named: NamedCorpus | None) -> str:
    parts = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    blob = json.dumps([_CACHE_FORMAT, encoding, errors, named.name if named else None, parts])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_corpus(spec: str, registry, encoding: str = "utf-8", errors: str = "strict",
                use_cache: bool = True) -> Corpus:
    """Read, decode and encode a corpus, reusing a cached encoding of the same files."""
    name, files, named = _expand(spec, registry)
    if named is not None and named.text is not None:
        vocab, ids = build_and_encode(named.text)
        return Corpus(name, vocab, ids, fingerprint(vocab, ids, None))
    if named is not None:
        files = named.files() if named.files else [_fetch(named)]
    key = _cache_key(files, encoding, errors, named)
    cached = cache_dir() / "encoded" / f"{key}.safetensors"
    if use_cache and cached.exists():
        try:
            with safe_open(cached, "pt") as f:
                vocab, ids = Vocab.from_json(f.metadata()["tokenizer"]), f.get_tensor("ids")
            return Corpus(name, vocab, ids, fingerprint(vocab, ids, files))
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            pass
    texts = [_read(p, encoding, errors) for p in files]
    text = "".join(t if t.endswith("\n") or i == len(texts) - 1 else t + "\n" for i, t in enumerate(texts))
    if named is not None and named.strip is not None:
        text = named.strip(text)
    if not text:
        raise CharforgeError(f"corpus {spec} is empty.")
    vocab, ids = build_and_encode(text)
    if use_cache:
        _store(cached, vocab, ids)
    return Corpus(name, vocab, ids, fingerprint(vocab, ids, files))


def _store(path: Path, vocab: Vocab, ids: torch.Tensor) -> None:
    """Write the encoding cache atomically; a cache that cannot be written is only skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"ids": ids}, tmp, metadata={"tokenizer": vocab.to_json()})
        os.replace(tmp, path)
    except OSError:
        pass
