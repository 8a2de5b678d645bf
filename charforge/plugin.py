"""The one namespace plugin authors import from: the stable surface of charforge's plugin contract.

``from charforge.plugin import hookimpl, Cell, Option, OptimizerSpec, NamedCorpus, Task`` is all a
plugin needs; the modules these names live in may move, these names stay. docs/plugins.md
describes every hook and contract. The constants: ``CONTRACT``, the version of this contract (a
plugin may declare the one it was written for as ``charforge_contract = N``; a newer one is
refused); ``GATE_BIAS_LIMIT``, the bound of a gate's initial bias for :func:`check_range`;
``IGNORE``, a task's target that is not scored; ``State``, the type of a cell's state (a tuple of
``(batch, hidden)`` tensors).
"""

from charforge.cell import GATE_BIAS_LIMIT, Cell, State, check_range
from charforge.corpora import NamedCorpus
from charforge.errors import CharforgeError
from charforge.hookspecs import CONTRACT, hookimpl
from charforge.optim import OptimizerSpec
from charforge.options import Option
from charforge.runview import RunView
from charforge.tasks.task import IGNORE, Sequences, Task, TaskData
from charforge.vocab import Vocab

__all__ = ["Cell", "State", "check_range", "GATE_BIAS_LIMIT", "NamedCorpus", "CharforgeError", "hookimpl", "OptimizerSpec", "Option",
           "CONTRACT", "RunView",
           "IGNORE", "Sequences", "Task", "TaskData", "Vocab"]
