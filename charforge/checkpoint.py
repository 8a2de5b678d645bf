"""Checkpoints: one safetensors file with weights, optimizer and RNG state, and JSON metadata.

Nothing here unpickles: a file is read only through safetensors' header-and-buffer format,
and its metadata is validated before anything is built from it. Writes are atomic (temporary
file, fsync, rename), so a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from charforge import __version__
from charforge.errors import CharforgeError

FORMAT_VERSION = 1
META_KEY = "charforge"
_REQUIRED = {"format": int, "charforge_version": str, "config": dict, "tokenizer": str,
             "cell": dict, "optimizer": dict, "step": int}


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CharforgeError(f"could not write checkpoint {path}: {exc.strerror or exc}.") from None
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    meta = {"format": FORMAT_VERSION, "charforge_version": __version__, **meta}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, save(tensors, metadata={META_KEY: json.dumps(meta)}))


class Checkpoint:
    """A validated checkpoint: ``meta`` (JSON metadata) and its tensors by name."""

    def __init__(self, path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]):
        self.path = path
        self.meta = meta
        self.tensors = tensors

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors whose names start with ``prefix.``, with the prefix removed."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def resolve_checkpoint(target: str | Path, which: str = "best") -> Path:
    """A checkpoint file, or the best (falling back to latest) checkpoint of a run directory."""
    path = Path(target)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        order = [which, "latest"] if which != "latest" else ["latest"]
        for name in order:
            candidate = folder / f"{name}.safetensors"
            if candidate.is_file():
                return candidate
        raise CharforgeError(f"{target} holds no checkpoint ({which}.safetensors or latest.safetensors).")
    if not path.exists():
        raise CharforgeError(f"checkpoint {target} does not exist.")
    return path


def load_checkpoint(target: str | Path, which: str = "best") -> Checkpoint:
    path = resolve_checkpoint(target, which)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        raise CharforgeError(f"{path} is a pickle or torch.save file; charforge never unpickles. "
                             f"Only .safetensors checkpoints written by charforge can be loaded.")
    try:
        with safe_open(path, "pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CharforgeError(f"{path} is not a readable safetensors checkpoint ({exc}).") from None
    if raw is None:
        raise CharforgeError(f"{path} is a safetensors file but not a charforge checkpoint (no metadata).")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise CharforgeError(f"{path}: the checkpoint metadata is not valid JSON.") from None
    _validate(path, meta, tensors)
    return Checkpoint(path, meta, tensors)


def _validate(path: Path, meta: Any, tensors: dict[str, torch.Tensor]) -> None:
    if not isinstance(meta, dict):
        raise CharforgeError(f"{path}: the checkpoint metadata is not a JSON object.")
    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind) or (kind is int and isinstance(meta.get(key), bool)):
            raise CharforgeError(f"{path}: checkpoint metadata field {key!r} is missing or not a {kind.__name__}.")
    if meta["format"] > FORMAT_VERSION:
        raise CharforgeError(
            f"{path} was written by charforge {meta['charforge_version']} (checkpoint format "
            f"{meta['format']}); this charforge {__version__} reads format {FORMAT_VERSION}. Upgrade charforge."
        )
    from charforge.vocab import Vocab

    vocab = Vocab.from_json(meta["tokenizer"])
    head = tensors.get("model.head.weight")
    if head is None or head.dim() != 2 or head.shape[0] != len(vocab):
        raise CharforgeError(
            f"{path}: the vocabulary has {len(vocab)} characters but the output layer "
            f"{'is missing' if head is None else f'has shape {tuple(head.shape)}'}."
        )


def load_model(target: str | Path, registry, device: str | torch.device = "cpu", which: str = "best"):
    """(model in eval mode, vocabulary, checkpoint) from a checkpoint file or run directory."""
    from charforge.config import TrainConfig
    from charforge.model import build_model
    from charforge.vocab import Vocab

    ckpt = load_checkpoint(target, which)
    cell = ckpt.meta["cell"]
    if cell.get("name") not in registry.names("cell"):
        source = cell.get("dist") or cell.get("plugin") or "an unknown plugin"
        raise CharforgeError(
            f"{ckpt.path} needs cell {cell.get('name')!r} from plugin {cell.get('plugin')!r} "
            f"(install {source}{' ' + cell['version'] if cell.get('version') else ''}); it is not installed."
        )
    try:
        config = TrainConfig.from_dict(ckpt.meta["config"])
    except TypeError as exc:
        raise CharforgeError(f"{ckpt.path}: the stored configuration is invalid ({exc}).") from None
    vocab = Vocab.from_json(ckpt.meta["tokenizer"])
    model = build_model(config, len(vocab), registry)
    try:
        model.load_state_dict(ckpt.group("model"))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise CharforgeError(f"{ckpt.path}: the weights do not fit the stored architecture ({' '.join(first)}).") from None
    return model.to(device).eval(), vocab, ckpt
