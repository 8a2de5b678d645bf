"""When a run validates and checkpoints: every N steps, every S seconds, or by the time rule.

The rule, for whatever the user did not set (``--eval-every``, ``--checkpoint-every``): the
first time :data:`FIRST` seconds into this process's training, so that a short run shows a
sample and leaves something to resume within half a minute; then every tenth of the budget
(:data:`FRACTION`), never more often than every :data:`FIRST` seconds nor less often than every
:data:`LONGEST` seconds. A budget in steps or epochs is turned into seconds from the run's own
rate so far. Work lost to a crash is bounded by the checkpoint interval.
"""

from __future__ import annotations

FIRST = 30.0  # seconds of training before the first validation and checkpoint
FRACTION = 0.1  # of the budget between two of them
LONGEST = 300.0  # seconds, at most, between two of them


class Cadence:
    """Says when something periodic is due; ``steps`` or ``seconds`` fix the interval, else the rule."""

    def __init__(self, steps: int | None = None, seconds: float | None = None, budget_seconds: float | None = None):
        self.steps, self.seconds, self.budget_seconds = steps, seconds, budget_seconds
        self._last: float | None = None  # the elapsed time it was last done at, in this process

    def interval(self, elapsed: float, progress: float) -> float:
        """Seconds between two of them under the rule, for a run ``progress`` of the way through its budget
        after ``elapsed`` seconds."""
        total = self.budget_seconds
        if total is None:
            total = elapsed / progress if progress > 0 else LONGEST / FRACTION
        return min(max(FRACTION * total, FIRST), LONGEST)

    def due(self, step: int, elapsed: float, progress: float, started: float) -> bool:
        """Whether it is due after ``step``, ``elapsed`` seconds into the run (``started``: when this
        process's training began, on the same clock)."""
        if self.steps is not None:
            return step % self.steps == 0
        last = started if self._last is None else self._last
        if self.seconds is not None:
            return elapsed - last >= self.seconds
        wait = FIRST if self._last is None else self.interval(elapsed, progress)
        return elapsed - last >= wait

    def done(self, elapsed: float) -> None:
        """It happened now (at ``elapsed`` seconds)."""
        self._last = elapsed
