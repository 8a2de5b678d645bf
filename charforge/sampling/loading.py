"""The one front door of generation: a checkpoint or run directory in, a ready engine out.

``charforge sample`` and ``generate``, :func:`charforge.load` and the terminal UI's sampling
screen all call :func:`load_engine`; it picks the device, loads the plugins the checkpoint's cell
needs, reads the weights alone (never the optimizer state) and builds the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from charforge.device import pick_device
from charforge.errors import CharforgeError
from charforge import plugins
from charforge.runs.checkpoint import build_from, load_checkpoint
from charforge.runs.directory import KINDS
from charforge.sampling.engine import BatchGenerator

def load_engine(target: str | Path, which: str = "best", device: str = "auto", precision: str = "auto",
                batch_size: int = 256, drop_unknown: bool = False, extra: Iterable[Any] = (),
                threads: int = 0) -> BatchGenerator:
    """The engine for a checkpoint file or a run directory; its ``origin`` is the checkpoint's
    metadata (path, step, configuration, vocabulary).

    ``which``: a run's best checkpoint (falling back to latest before its first validation) or its
    latest. ``device``: auto (a GPU when there is one), cpu, cuda or mps. ``precision``: auto,
    float32 or int8 (see :mod:`charforge.sampling.fastpath`). ``extra``: plugin objects,
    for a cell registered in code. ``threads``: CPU threads, 0 for the count measured fastest
    (:mod:`charforge.threads`).
    """
    if which not in KINDS:
        raise CharforgeError(f"which must be best or latest, not {which!r}.")
    dev = pick_device(device)
    ckpt = load_checkpoint(target, which, model_only=True)
    model = build_from(ckpt, plugins.Registry(plugins.make_plugin_manager(extra=extra))).to(dev)
    return BatchGenerator(model, ckpt.vocab, dev, batch_size, drop_unknown, precision, origin=ckpt.metadata_only(),
                          threads=threads)
