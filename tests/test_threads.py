"""The thread tuner on a simulated machine, and how generation feeds it.

A fake clock, a fake ``set_threads`` and a fake idle-time counter stand in for time, torch and
/proc/stat: each unit of work takes the seconds its thread count gives at the machine's current
speeds (the first unit after a switch a little longer, as it pays for the switch, and every unit
within 10% either way), and the cores that neither this process nor the others use count as
idle, so a test can take a core away mid-run and give it back.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from click.testing import CliRunner

from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.model import CharModel
from charforge.plugins import Registry, make_plugin_manager
from charforge.sampling import loading
from charforge.sampling.engine import ROUND, BatchGenerator
from charforge.sampling.settings import Request, Settings
from charforge.threads import LOOK, PERIOD, PROBE_UNITS, ThreadTuner, candidates
from charforge.vocab import Vocab

# (chars/s at each thread count, cores other processes hold) on a 2-core machine
IDLE = {1: 10_000, 2: 17_000}, 0
BUSY = {1: 10_000, 2: 2_500}, 1


class Machine:
    """The simulated machine: its clock, idle time, the thread count set on it, and the time spent at each."""

    def __init__(self, load: tuple[dict[int, float], int], cores: int = 2, idle_known: bool = True):
        self.speeds, self.others = load  # set again by a test to load or free the machine
        self.cores, self.idle_known = cores, idle_known
        self.now = self.idle_seconds = 0.0
        self.threads: int | None = None
        self.calls: list[int] = []
        self.spent: Counter = Counter()  # seconds at each thread count
        self.units: list[int] = []  # the thread count of every unit run
        self._switched = False
        self._jitter = random.Random(0)

    def set_threads(self, n: int) -> None:
        self.calls.append(n)
        self.threads, self._switched = n, True

    def idle(self) -> float | None:
        return self.idle_seconds if self.idle_known else None

    def tuner(self, threads: int = 0) -> ThreadTuner:
        return ThreadTuner(threads, cores=self.cores, clock=lambda: self.now, set_threads=self.set_threads,
                           idle=self.idle)

    def run(self, tuner: ThreadTuner, seconds: float, work: float = 2000) -> None:
        """Units of ``work`` characters, each recorded, until ``seconds`` have passed."""
        end = self.now + seconds
        while self.now < end:
            took = work / self.speeds[self.threads] * (1.5 if self._switched else 1) * self._jitter.uniform(0.9, 1.1)
            self._switched = False
            self.now += took
            self.idle_seconds += max(0, self.cores - self.others - self.threads) * took
            self.spent[self.threads] += took
            self.units.append(self.threads)
            tuner.record(work, took)


def started(machine: Machine, threads: int = 0) -> ThreadTuner:
    tuner = machine.tuner(threads)
    tuner.start()
    return tuner


def test_candidates_are_one_all_cores_and_the_powers_of_two_between():
    assert candidates(1) == [1]
    assert candidates(2) == [1, 2]
    assert candidates(6) == [1, 2, 4, 6]
    assert candidates(16) == [1, 2, 4, 8, 16]


def test_at_start_it_keeps_all_cores_when_they_are_faster():
    machine = Machine(IDLE)
    tuner = started(machine)
    machine.run(tuner, 5)
    assert machine.calls == [1, 2]
    assert tuner.threads == machine.threads == 2
    assert tuner.describe() == "adaptive 1-2 threads, now 2"
    assert machine.units.index(2) == PROBE_UNITS + 1  # one thread was timed after the unit that paid the switch


def test_at_start_it_never_tries_a_core_another_process_holds():
    machine = Machine(BUSY)
    tuner = started(machine)
    machine.run(tuner, 5 * PERIOD)
    assert machine.calls == [1]
    assert tuner.threads == 1 and tuner.describe() == "adaptive 1-2 threads, now 1"


def test_without_idle_time_it_tries_the_busy_core_but_leaves_it_after_one_unit():
    machine = Machine(BUSY, idle_known=False)
    tuner = started(machine)
    machine.run(tuner, 5)
    assert machine.calls == [1, 2, 1]
    assert tuner.threads == machine.threads == 1
    assert machine.spent[2] < 1.7 * 2000 / BUSY[0][2]  # one unit at the slow count, not a full trial


def test_without_idle_time_it_keeps_probing_but_probing_costs_little():
    machine = Machine(BUSY, idle_known=False)
    tuner = started(machine)
    machine.run(tuner, 20 * PERIOD)
    assert machine.calls.count(2) >= 15  # it keeps looking for a free core
    assert machine.spent[2] < 0.1 * machine.now
    assert tuner.threads == 1


def test_without_idle_time_a_costly_probe_makes_the_next_one_wait_longer():
    machine = Machine(({1: 10_000, 2: 150}, 1), idle_known=False)  # one unit at 2 threads costs ~13 s
    tuner = started(machine)
    machine.run(tuner, 40 * PERIOD)
    assert machine.calls.count(2) >= 3
    assert machine.spent[2] < 0.1 * machine.now


def test_it_climbs_to_the_peak_and_no_further():
    machine = Machine(({1: 10_000, 2: 18_000, 4: 25_000, 8: 9_000, 16: 4_000}, 0), cores=16)
    tuner = started(machine)
    machine.run(tuner, 5)
    assert machine.calls == [1, 2, 4, 8, 4]  # 16 is never tried: 8 was already slower than 4
    assert tuner.threads == 4
    machine.speeds[8] = 40_000
    machine.run(tuner, PERIOD + 5)
    assert machine.calls == [1, 2, 4, 8, 4, 8, 16, 8]  # up while faster; not down again once up paid
    assert tuner.threads == 8


def test_it_drops_to_fewer_threads_when_another_process_takes_a_core_and_returns_when_it_is_free():
    machine = Machine(IDLE)
    tuner = started(machine)
    machine.run(tuner, 5)
    assert tuner.threads == 2
    machine.speeds, machine.others = BUSY
    machine.run(tuner, 8)
    assert tuner.threads == machine.threads == 1
    assert machine.calls == [1, 2, 1]
    machine.run(tuner, 3 * PERIOD)
    assert machine.calls == [1, 2, 1]  # no room for a second thread: not tried
    machine.speeds, machine.others = IDLE
    machine.run(tuner, 3 * LOOK)
    assert tuner.threads == machine.threads == 2  # a look found the idle core
    assert machine.calls == [1, 2, 1, 2]


def test_a_drop_counts_from_the_best_rate_the_count_has_reached():
    machine = Machine(({1: 8_000, 2: 12_000}, 0))  # chosen while caches were cold, say
    tuner = started(machine)
    machine.run(tuner, 5)
    machine.speeds = {1: 13_000, 2: 20_000}
    machine.run(tuner, 5)
    machine.speeds = {1: 13_000, 2: 10_000}  # a little below the rate 2 was chosen at, far below its best
    machine.run(tuner, 5)
    assert machine.calls == [1, 2, 1]
    assert tuner.threads == 1


def test_after_a_drop_it_goes_down_to_the_peak_and_does_not_turn_back_up():
    machine = Machine(({1: 10_000, 2: 18_000, 4: 12_000}, 0), cores=4)
    tuner = started(machine)
    machine.run(tuner, 5)
    assert machine.calls == [1, 2, 4, 2]
    machine.speeds = {1: 10_000, 2: 5_000, 4: 2_000}
    machine.run(tuner, 5)
    assert machine.calls == [1, 2, 4, 2, 1]  # 4 threads, the other way from the peak, is not tried
    assert tuner.threads == 1


def test_where_more_threads_do_not_help_it_tries_them_only_now_and_then():
    machine = Machine(({1: 10_000, 2: 9_000}, 0))  # idle cores, but a second thread only adds hand-offs
    tuner = started(machine)
    machine.run(tuner, 20 * PERIOD)
    assert 15 <= machine.calls.count(2) <= 21  # about once a PERIOD, not at every look
    assert machine.spent[2] < 0.1 * machine.now
    assert tuner.threads == 1


def test_a_pinned_tuner_sets_its_count_once_and_never_again():
    machine = Machine(BUSY, cores=4)
    tuner = started(machine, threads=2)
    machine.run(tuner, 3 * PERIOD)
    machine.speeds = {1: 10_000, 2: 100}
    machine.run(tuner, PERIOD)
    assert machine.calls == [2]
    assert tuner.threads == 2 and tuner.describe() == "2 threads (pinned)"
    assert Machine(IDLE).tuner(threads=8).threads == 2  # never more than the cores


def test_off_the_cpu_it_never_sets_a_thread_count(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    tuner = ThreadTuner.for_device(torch.device("cuda"))
    tuner.start()
    for seconds in (1.0, 0.1, 5.0, 0.01) * 50:
        tuner.record(1000, seconds)
    assert calls == []
    assert tuner.threads == torch.get_num_threads()
    assert "cuda" in tuner.describe()


def test_a_negative_count_is_refused():
    with pytest.raises(CharforgeError, match="must not be negative"):
        ThreadTuner(-1)


class _Recording:
    """A stand-in tuner: sets 2 threads at start and keeps the work of every round it is told of."""

    def __init__(self):
        self.starts, self.work = 0, []

    def start(self):
        self.starts += 1
        torch.set_num_threads(2)

    def record(self, work, seconds):
        assert seconds > 0
        self.work.append(work)


@pytest.fixture(scope="module")
def engine():
    vocab = Vocab.from_text("the quick brown fox jumps over the lazy dog\n")
    torch.manual_seed(0)
    cell = Registry(make_plugin_manager()).get("cell", "lstm").obj
    return BatchGenerator(CharModel(len(vocab), cell, 16).eval(), vocab, "cpu", batch_size=4, precision="float32")


def test_generation_times_every_round_and_gives_the_thread_count_back(engine):
    before = torch.get_num_threads()
    engine.tuner = tuner = _Recording()
    texts = [s.text for s in engine.run([Request("fox", Settings(length=150), num_samples=3)], seed=0)]
    assert [len(t) for t in texts] == [150] * 3
    assert tuner.work == [3 * ROUND, 3 * ROUND, 3 * (150 - 2 * ROUND)]  # rows x steps, round by round
    assert torch.get_num_threads() == before != 2

    streamed = "".join(engine.stream(Request("fox", Settings(length=200)), seed=0))
    assert len(streamed) == 200
    assert tuner.work[3:] == [ROUND, ROUND]  # the short first chunks are not timed
    assert torch.get_num_threads() == before

    next(engine.run([Request("fox", Settings(length=100), num_samples=2)], seed=0))  # left unfinished
    assert tuner.starts == 3 and torch.get_num_threads() == before


def test_the_engine_keeps_its_thread_policy_and_tuner_when_reconfigured(engine):
    pinned = BatchGenerator(engine.model, engine.vocab, "cpu", threads=3)
    assert pinned.tuner.pinned and pinned.configured(batch_size=2).threads == 3
    assert engine.configured(batch_size=2).tuner is engine.tuner


def test_cli_threads_reach_the_engine(monkeypatch):
    seen = {}

    def load_engine(*args, threads, **kwargs):
        seen["threads"] = threads
        raise CharforgeError("no checkpoint here")

    monkeypatch.setattr(loading, "load_engine", load_engine)
    for args, threads in ((["--threads", "3"], 3), ([], 0)):
        result = CliRunner().invoke(cli, ["generate", "nowhere", "-p", "x", *args])
        assert "no checkpoint here" in result.output and seen.pop("threads") == threads
    result = CliRunner().invoke(cli, ["sample", "nowhere", "--threads", "-1"])
    assert "must not be negative" in result.output and not seen


def test_a_run_gives_the_thread_count_back_whatever_its_tuner_chose(tmp_path, monkeypatch):
    """A script (or a grid training its points in one process) keeps its own thread count."""
    from charforge.data import run_config
    from charforge.plugins import Registry, make_plugin_manager
    from charforge.threads import ThreadTuner
    from charforge.trainer import Trainer

    before = torch.get_num_threads()
    monkeypatch.setattr(ThreadTuner, "start", lambda self: torch.set_num_threads(before + 1))
    pm = make_plugin_manager(block=["console"])
    config = run_config({"corpus": "faith", "cell": "rnn", "hidden_size": 8, "steps": 3}, Registry(pm))
    trainer = Trainer(config, pm=pm, runs_root=tmp_path, name="t")
    trainer.run()
    assert torch.get_num_threads() == before
