"""charforge: train and sample character-level recurrent language models.

Importing the package stays cheap (no torch); the Python API loads on first use::

    import charforge
    model = charforge.load("runs/python-stdlib-lstm")
    print(model.generate("def ", length=200, seed=1))
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# MKL's conditional numerical reproducibility: without it, the last bits of a product may depend on
# how its operands happen to lie in memory, so a resumed run could drift from an uninterrupted one.
# MKL reads it when it starts, so it is set here, before charforge imports torch (a script that
# imports torch first must set it itself); a value the user set is kept (benchmarks/exactness.py
# measures what it costs).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from charforge.version import __version__

# Public name -> the module that defines it, imported on first attribute access (PEP 562).
_LAZY = {
    "load": "charforge.api",
    "train": "charforge.api",
    "Model": "charforge.api",
    "Score": "charforge.api",
    "TrainResult": "charforge.api",
    "Sample": "charforge.sampling.settings",
    "Settings": "charforge.sampling.settings",
    "Request": "charforge.sampling.settings",
    "TrainConfig": "charforge.config",
    "CharforgeError": "charforge.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from charforge.api import Model, Score, TrainResult, load, train
    from charforge.config import TrainConfig
    from charforge.errors import CharforgeError
    from charforge.sampling.settings import Request, Sample, Settings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'charforge' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
