"""A checkpoint's metadata read from its safetensors header alone: no torch, no tensor bytes.

The terminal UI and the run directory use it to label checkpoints without importing PyTorch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

META_KEY = "charforge"  # the safetensors metadata key holding charforge's JSON
_MAX_HEADER = 50_000_000  # bytes: larger headers are not read here (the full loader says why)


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The JSON metadata of a checkpoint, or None when the file cannot be read as one."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > _MAX_HEADER:
                return None
            header = json.loads(f.read(size))
        meta = json.loads(header["__metadata__"][META_KEY])
    except (OSError, ValueError, KeyError, TypeError, RecursionError, struct.error):
        return None
    return meta if isinstance(meta, dict) else None


def checkpoint_step(path: str | Path) -> int | None:
    """The training step a checkpoint was saved at, or None if it cannot be read."""
    step = (read_meta(path) or {}).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None
