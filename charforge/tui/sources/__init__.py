"""Where the training screen's events come from: the same dicts a run writes to metrics.jsonl.

``AttachedRun`` follows a run started elsewhere (read-only); ``TrainProcess`` runs
``charforge train --quiet`` as a child process and controls it with signals.
"""

from charforge.tui.sources.base import EventSource
from charforge.tui.sources.tail import AttachedRun, MetricsTail

__all__ = ["EventSource", "AttachedRun", "MetricsTail"]
