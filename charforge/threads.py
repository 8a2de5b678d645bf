"""The CPU thread count that is fastest now, found by measuring the caller's own work.

PyTorch uses every core by default. On a machine other processes share, that can be many times
slower than one thread: each parallel operation waits for its slowest thread, and a thread whose
core is busy with another process is slow. The fastest count depends on the model, the batch and
the load at the moment, so no rule fixed in advance picks it; :class:`ThreadTuner` times the
units of work it is given (training steps, generation rounds) at each count, keeps the fastest,
and times again when the rate falls (another process took a core) and when cores stand idle
(they may be free for more threads). ``benchmarks/threads.py`` measures it against fixed counts.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Callable

from charforge.errors import CharforgeError, warn

if TYPE_CHECKING:
    import torch

PROBE_UNITS = 3  # units timed at a count on trial, at least ...
PROBE_SECONDS = 0.2  # ... and seconds of them, so that one short unit decides nothing
GIVE_UP = 0.5  # a unit below this share of the best rate so far ends its count's trial at once
WINDOW = 5  # units in the rolling median of the count in force
DROP = 0.75  # that median below this share of the count's rate starts a new probe
ROOM = 0.75  # idle cores, per thread added, that a count above must find before it is tried
LOOK = 5.0  # seconds between looks for idle cores ...
PERIOD = 25.0  # ... and at least these between probes for more threads ...
BACKOFF = 20.0  # ... or this many times what the last probe lost at slower counts: at most ~1/20 of the time


def idle_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent idle since it booted, all cores together (Linux's
    /proc/stat), or None where that is not known."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = stat.readline().split()
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle + iowait
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system says, else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def candidates(cores: int) -> list[int]:
    """The counts worth trying: 1, ``cores`` and the powers of two between."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [cores]


class ThreadTuner:
    """Sets the CPU thread count from the measured rate of the caller's units of work.

    The caller calls :meth:`start` before its loop and :meth:`record` after each unit. A probe
    tries counts one after another: the first unit after each switch is not timed (it pays for
    the switch), then a count is on trial for :data:`PROBE_UNITS` units and :data:`PROBE_SECONDS`
    and scores the median of their rates. The probe climbs from the count in force in one
    direction for as long as each count beats the best so far (the rate has one peak in the
    count), so a machine with many cores tries a few neighbours, not every count. The first
    probe starts from one thread, the count that is never much slower.

    More threads are tried only where the machine's idle time (:func:`idle_cpu_seconds`) shows
    idle cores for them while the count in force ran: a thread that has to share a core with
    another process can make a single unit cost more than a whole run at one thread, so the
    cheapest trial of such a count is none. Where idle time is not known, or a core is taken
    between the look and the trial, a unit at half the best rate or less ends its trial at once.

    Settled, the tuner keeps the rolling median of the last :data:`WINDOW` units and probes
    again, fewer threads first, when it falls below :data:`DROP` of the rate the count was chosen
    at; and it looks for idle cores every :data:`LOOK` seconds of the clock, probing more threads
    when it finds them, at most every :data:`PERIOD` seconds (longer after a probe that cost much).
    """

    def __init__(self, threads: int = 0, *, cores: int | None = None, clock: Callable[[], float] = time.perf_counter,
                 set_threads: Callable[[int], object] | None = None,
                 idle: Callable[[], float | None] = idle_cpu_seconds):
        """``threads`` 0: adaptive between 1 and ``cores`` (:func:`usable_cores` by default); N > 0:
        N, or ``cores`` if fewer (with a warning: more threads than cores only wait for each other,
        and far more crash OpenMP), and never changed. ``set_threads`` applies a count
        (``torch.set_num_threads`` by default, looked up here so that importing this module
        never imports torch); ``idle`` is the machine's idle CPU seconds so far, as ``clock``
        counts them."""
        if threads < 0:
            raise CharforgeError(f"--threads must not be negative, not {threads}.")
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        cores = cores or usable_cores()
        if threads > cores:
            warn(f"--threads {threads} is more than the {cores} core{'s' * (cores != 1)} this process may use; "
                 f"using {cores}.")
        self.pinned = threads > 0
        self._counts = [min(threads, cores)] if self.pinned else candidates(cores)
        self._clock, self._set_threads, self._idle = clock, set_threads, idle
        self._off: str | None = None  # the device type, where the CPU threads are not this tuner's business
        self._fixed = len(self._counts) == 1  # nothing to tune
        self._started = False
        self._at = 0  # index in _counts of the count in force
        self._rates = [0.0] * WINDOW  # the rates of the last timed units at that count, a ring
        self._units, self._seconds, self._spent = 0, 0.0, 0.0  # timed units and seconds, and all seconds, there
        self._fresh = True  # the next unit pays for a switch
        self._probing = False
        self._plan: list[list[int]] = []  # probing: the counts still to try, one list per direction
        self._best = 0, 0.0  # probing: (index, rate) of the fastest count so far
        self._lost = 0.0  # probing: seconds spent at counts slower than the best
        self._rate = 0.0  # settled: the rate the count in force was chosen at, or has reached since
        self._tried = False  # probing: whether any count other than the one it started from was tried
        self._look: tuple[float, float | None] = (0.0, None)  # (clock, idle seconds) when idle time was last read
        self._due = math.inf  # settled: when to look for idle cores next

    @classmethod
    def for_device(cls, device: torch.device, threads: int = 0) -> "ThreadTuner":
        """A tuner for work on ``device``; off a CPU it never sets anything."""
        tuner = cls(threads)
        if device.type != "cpu":
            tuner._off, tuner._fixed = device.type, True
        return tuner

    @property
    def threads(self) -> int:
        """The count in force now."""
        if self._off:
            import torch

            return torch.get_num_threads()
        return self._counts[self._at]

    def describe(self) -> str:
        """The policy and the count in force, for a progress line."""
        if self._off:
            return f"CPU threads left as they are ({self._off})"
        n = self.threads
        if self._fixed:
            return f"{n} thread{'s' if n > 1 else ''} ({'pinned' if self.pinned else 'one core'})"
        return f"adaptive 1-{self._counts[-1]} threads, now {n}"

    def start(self) -> None:
        """Set the count to run: the first to try at the first call; later, the count in force
        again, since something else in the process may have changed it meanwhile."""
        if self._off:
            return
        if not (self._started or self._fixed):
            self._plan = [list(range(1, len(self._counts)))]  # climbing from one thread
            self._probing, self._tried, self._best, self._lost = True, False, (0, 0.0), 0.0
        self._started = True
        self._switch(self._at)

    def record(self, work: float, seconds: float) -> None:
        """One unit of ``work`` (characters, say) took ``seconds``; may switch to another count."""
        if self._fixed or seconds <= 0:
            return
        self._spent += seconds
        rate = work / seconds
        if self._fresh:
            self._fresh = False
            if self._probing and rate < GIVE_UP * self._best[1]:
                self._judge(rate)
            return
        self._rates[self._units % WINDOW] = rate
        self._units += 1
        self._seconds += seconds
        if self._probing:
            if rate < GIVE_UP * self._best[1]:
                self._judge(rate)
            elif self._units >= PROBE_UNITS and self._seconds >= PROBE_SECONDS:
                self._judge(self._median())
            return
        if self._units >= WINDOW:
            median = self._median()
            if median < DROP * self._rate:
                self._probe(median, fewer_first=True)
                return
            self._rate = max(self._rate, median)
        if self._clock() >= self._due:
            self._probe(self._median(), fewer_first=False)

    def _median(self) -> float:
        k = min(self._units, WINDOW)
        return sorted(self._rates[:k])[k // 2]

    def _switch(self, at: int) -> None:
        self._at = at
        self._units, self._seconds, self._spent, self._fresh = 0, 0.0, 0.0, True
        self._set_threads(self._counts[at])
        self._look = self._clock(), self._idle()

    def _room(self, at: int) -> bool:
        """Whether the machine had idle cores for the threads ``at`` adds, since idle time was last
        read (at the switch to the count in force, or the last look); reads it afresh."""
        now, idle = self._clock(), self._idle()
        (then, before), self._look = self._look, (now, idle)
        if idle is None or before is None or now <= then:
            return True
        return (idle - before) / (now - then) >= ROOM * (self._counts[at] - self.threads)

    def _probe(self, rate: float, fewer_first: bool) -> None:
        """Try the neighbours of the count in force, which scores ``rate``: fewer threads and then
        more, or more alone."""
        more = list(range(self._at + 1, len(self._counts)))
        self._plan = [list(range(self._at - 1, -1, -1)), more] if fewer_first else [more]
        self._probing, self._tried, self._best, self._lost = True, False, (self._at, rate), 0.0
        self._next()

    def _judge(self, rate: float) -> None:
        """The count on trial scored ``rate``: go on the same way if it is the best so far, else turn."""
        if rate > self._best[1]:
            self._best = self._at, rate
            del self._plan[1:]  # a single peak: past a better count, the other way cannot be better
        else:
            self._lost += self._spent
            del self._plan[:1]
        self._next()

    def _next(self) -> None:
        """Put the next count on trial (more threads only where there is room for them), or settle
        on the best when none is left."""
        while self._plan:
            way = self._plan[0]
            if way and (way[0] < self._at or self._room(way[0])):
                self._tried = True
                self._switch(way.pop(0))
                return
            del self._plan[0]
        self._probing = False
        at, self._rate = self._best
        if at != self._at:
            self._switch(at)
        self._due = self._clock() + (max(PERIOD, BACKOFF * self._lost) if self._tried else LOOK)
