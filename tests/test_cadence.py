"""When a run validates and checkpoints (steps, seconds, or the time rule), and how validation fits the
budget: a fixed sample of held-out windows, a full last validation the budget leaves room for."""

from __future__ import annotations

import itertools
import math

import pytest
from click.testing import CliRunner

from charforge import cadence
from charforge.cadence import Cadence
from charforge.cli import cli
from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.runs.checkpoint import load_checkpoint
from charforge.runs.directory import Run
from charforge.trainer import Trainer


# -- the rule, on its own ---------------------------------------------------------------------------

def test_the_first_comes_thirty_seconds_into_this_process():
    rule = Cadence(budget_seconds=3600)
    assert not rule.due(step=1, elapsed=100 + 29.9, progress=0.1, started=100)  # resumed at 100 s
    assert rule.due(step=2, elapsed=100 + 30.0, progress=0.1, started=100)


def test_then_a_tenth_of_the_budget_between_thirty_seconds_and_five_minutes():
    assert Cadence(budget_seconds=120).interval(10, 0.1) == cadence.FIRST  # 12 s would be too often
    assert Cadence(budget_seconds=1200).interval(10, 0.01) == 120
    assert Cadence(budget_seconds=36_000).interval(10, 0.01) == cadence.LONGEST
    # a budget in steps: the total is estimated from the rate so far (40 s for a fifth: 200 s)
    assert Cadence().interval(40, 0.2) == 30 and Cadence().interval(400, 0.2) == 200
    rule = Cadence(budget_seconds=1200)
    rule.done(30)
    assert not rule.due(5, 149, 0.1, 0) and rule.due(6, 150, 0.1, 0)


def test_steps_or_seconds_override_the_rule():
    assert [s for s in range(1, 10) if Cadence(steps=3).due(s, 1e9, 0.5, 0)] == [3, 6, 9]
    every = Cadence(seconds=10)
    assert not every.due(1, 9.9, 0.0, 0) and every.due(2, 10, 0.0, 0)
    every.done(10)
    assert not every.due(3, 19, 0.0, 0) and every.due(4, 20.5, 0.0, 0)


# -- in a real run, on a fake clock ---------------------------------------------------------------------

@pytest.fixture
def fake_clock(monkeypatch):
    """The trainer's clock advances ``tick`` seconds at each reading, whatever the machine does."""
    import charforge.trainer as trainer_module

    class Clock:
        tick = 0.5
        now = 0.0

        def perf_counter(self):
            self.now += self.tick
            return self.now

    clock = Clock()
    monkeypatch.setattr(trainer_module.time, "perf_counter", clock.perf_counter)
    return clock


def _events(run_dir, kind):
    return [e for e in Run(run_dir).events() if e["event"] == kind]


def test_a_run_validates_and_saves_thirty_seconds_in_then_by_the_rule(train, fake_clock):
    trainer = train(steps=120, eval_every=None, log_every=1)
    validations = _events(trainer.run_dir, "validation")
    times = [e["elapsed"] for e in _events(trainer.run_dir, "step")]
    assert times[-1] > 60  # the fake clock made this a run of over a minute
    first = validations[0]
    first_elapsed = next(e["elapsed"] for e in _events(trainer.run_dir, "step") if e["step"] >= first["step"])
    assert 30 <= first_elapsed < 35  # within about 30 s of the first step, not at step 500
    assert validations[-1]["step"] == 120 and validations[-1]["full"] is True
    assert all(v["full"] is False for v in validations[:-1]) and len(validations) >= 2
    kinds = [e["kind"] for e in _events(trainer.run_dir, "checkpoint")]
    assert kinds[0] == "latest" and kinds.count("latest") == len(validations)


def test_checkpoint_every_seconds_saves_between_validations(train, fake_clock):
    trainer = train(steps=60, eval_every=1000, checkpoint_seconds=5.0, log_every=5)
    saved = [e["step"] for e in _events(trainer.run_dir, "checkpoint") if e["kind"] == "latest"]
    assert len(saved) >= 4 and saved[-1] == 60  # every few seconds, not only at the end


def test_periodic_validation_reads_a_fixed_sample_and_the_last_reads_everything(train, fake_clock):
    trainer = train(steps=120, eval_every=40, log_every=40)
    starts = _events(trainer.run_dir, "validation_start")
    windows = trainer.val_data.windows
    assert trainer.val_windows is not None and 1 <= trainer.val_windows <= windows
    assert [s["full"] for s in starts] == [False, False, True]
    assert starts[-1]["windows"] == windows
    final = _events(trainer.run_dir, "validation")[-1]
    assert final["sample_loss"] == trainer.best_val or trainer.best_val < final["sample_loss"]  # judged on it
    assert "sample_loss" not in load_checkpoint(trainer.run_dir, "latest").meta["metrics"]
    # the checkpoint keeps the sample's size, so that a resumed run measures the same text
    assert load_checkpoint(trainer.run_dir, "latest").meta["val_windows"] == trainer.val_windows
    resumed = Trainer.resume(trainer.run_dir, {"steps": 160}, pm=trainer.pm)
    assert resumed.val_windows == trainer.val_windows


def test_a_minutes_budget_leaves_room_for_the_final_validation(train, fake_clock):
    fake_clock.tick = 0.05
    trainer = train(steps=None, minutes=1.0, eval_every=None, log_every=1)
    end = _events(trainer.run_dir, "end")[0]
    assert trainer.final_validation_seconds() > 0
    assert end["elapsed"] <= 60 * 1.1  # ends within 10% of its budget, the full validation included
    assert _events(trainer.run_dir, "validation")[-1]["full"] is True


def test_eta_counts_the_final_validation(train, fake_clock):
    trainer = train(steps=80, eval_every=40, log_every=10)
    last = [e for e in _events(trainer.run_dir, "step") if e["step"] < 80][-1]
    assert last["eta"] is not None and last["eta"] > 0
    assert math.isfinite(trainer.final_validation_seconds())


# -- the options ---------------------------------------------------------------------------------------

def test_every_takes_steps_or_time_on_the_command_line(text_corpus, tmp_path):
    for given, field, value in (("7", "eval_every", 7), ("90s", "eval_seconds", 90.0), ("2m", "eval_seconds", 120.0)):
        result = CliRunner().invoke(cli, ["train", str(text_corpus), "--hidden-size", "8", "--batch-size", "2",
                                          "--seq-len", "8", "--steps", "2", "--eval-every", given, "-q",
                                          "--runs-dir", str(tmp_path), "--name", f"r{field}{value}"])
        assert result.exit_code == 0, result.output
        assert Run(tmp_path / f"r{field}{value}").events()[0]["config"][field] == value
    bad = CliRunner().invoke(cli, ["train", str(text_corpus), "--eval-every", "soon"])
    assert bad.exit_code != 0 and "neither a number of steps" in bad.output


def test_steps_and_seconds_together_are_refused():
    with pytest.raises(CharforgeError, match="steps or seconds, not both"):
        TrainConfig(eval_every=5, eval_seconds=3.0).check()
    with pytest.raises(CharforgeError, match="positive number of seconds"):
        TrainConfig(checkpoint_seconds=-1.0).check()


def test_more_counts_the_budget_from_where_the_run_stands(train):
    trainer = train(steps=6)
    again = Trainer.resume(trainer.run_dir, {"steps": 4}, pm=trainer.pm, more=True)
    assert again.config.steps == 10
    again.close()  # a trainer holds its run's lock until it has run or is closed
    assert Trainer.resume(trainer.run_dir, {"steps": 8}, pm=trainer.pm).config.steps == 8  # the whole run's


def test_runs_last_points_at_the_newest_run(train, runs_root):
    first = train(steps=2)
    second = train(steps=2)
    assert first.run_dir != second.run_dir
    assert (runs_root / "last").resolve() == second.run_dir.resolve()
    assert Run.of(runs_root / "last").path == second.run_dir
    assert list(itertools.islice(Run(runs_root / "last").events(), 1))[0]["event"] == "start"
