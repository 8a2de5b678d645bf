"""The plugin author's test kit: pytest fixtures, and one-line checks of the cell and optimizer contracts.

``check_cell(MyCell, **options)`` and ``check_optimizer(spec)`` run every property charforge relies
on and raise :class:`ContractError` naming the first one that fails, with the numbers (the cell
checks live in :mod:`charforge.testing.cells`, the optimizer's in :mod:`charforge.testing.optimizers`).
This module is also a pytest plugin (entry point ``charforge`` in ``pytest11``), so its fixtures need
no conftest; every pytest run in an environment with charforge loads it, which is why the kit imports
torch only inside the functions that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from charforge.testing.cells import check_cell
from charforge.testing.common import ContractError, quiet_plugin_manager, tiny_text
from charforge.testing.optimizers import check_optimizer

__all__ = ["ContractError", "check_cell", "check_optimizer", "quiet_plugin_manager", "tiny_text"]


@pytest.fixture
def charforge_pm() -> Callable:
    """A factory of fresh plugin managers: ``charforge_pm(extra=[my_plugin])``, console blocked."""
    return quiet_plugin_manager


@pytest.fixture
def charforge_corpus(tmp_path) -> Path:
    """A 3 KB text file to train on."""
    path = tmp_path / "charforge-corpus.txt"
    path.write_text(tiny_text(), encoding="utf-8")
    return path


@pytest.fixture
def charforge_entry_points(monkeypatch, tmp_path) -> Callable[[str, str], None]:
    """``add(name, source)``: an entry point of the ``charforge`` group backed by a module of ``source``
    written to tmp_path, seen by every plugin manager built while the test runs."""
    from importlib.metadata import EntryPoint

    import charforge.plugins as plugins

    real = plugins.entry_points
    added: list = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "entry_points", lambda group: [*real(group=group), *added])

    def add(name: str, source: str) -> None:
        module = f"charforge_test_ep_{name}"
        (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
        added.append(EntryPoint(name=name, value=module, group=plugins.GROUP))

    return add
