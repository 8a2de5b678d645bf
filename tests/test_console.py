"""The console output of training (the ``console`` plugin) and of ``charforge generate --progress``.

A rich Console writing to a string stands in for a terminal; a fake trainer with a hand-moved
clock shows what the progress columns say while a validation takes long.
"""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

import charforge
from charforge.cli.progress import Progress
from charforge_builtins.console import ConsoleOutput, StatusColumn, TimesColumn, amount

CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TINY = dict(cell="lstm", hidden_size=16, batch_size=4, seq_len=16, lr=3e-3, seed=0, device="cpu", threads=1,
            log_every=1, sample_length=20)


def terminal(width: int = 200) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=width, color_system=None), out


def plain(text: str) -> str:
    return CONTROL.sub("", text).replace("\r", "\n")


def test_a_terminal_gets_a_bar_every_line_and_a_clean_end(tmp_path, text_corpus):
    console, out = terminal()
    charforge.train(text_corpus, quiet=True, plugins=[ConsoleOutput(console)], steps=8, eval_every=4,
                    runs_dir=tmp_path, name="run", **TINY)
    raw = out.getvalue()
    text = plain(raw)
    assert "charforge: 1x16 lstm" in text and "budget 8 steps," in text
    assert f"run directory: {tmp_path / 'run'}" in text
    assert "step 4: validation loss" in text and "  | " in text
    assert "━" in text and "elapsed 0:0" in text  # the bar and its clock
    assert "step 8 · loss" in text and "bpc" in text and "chars/s" in text
    assert "done (budget spent) at step 8, best validation loss" in text
    assert f"Sample with: charforge sample {tmp_path / 'run'}" in text
    # The display was stopped before the last line: the cursor is back, nothing is drawn after it.
    assert "\x1b[?25h" in raw and raw.rindex("\x1b[?25h") < raw.rindex("done (budget spent)")
    assert raw.endswith("\n")


def test_elsewhere_plain_lines_go_to_stdout(tmp_path, text_corpus, capsys):
    console = Console(file=io.StringIO(), force_terminal=False)
    charforge.train(text_corpus, quiet=True, plugins=[ConsoleOutput(console, plain_every=0)], steps=3,
                    minutes=1, eval_every=100, runs_dir=tmp_path, name="run", **TINY)
    out = capsys.readouterr().out
    assert "budget 3 steps, 1 minute," in out
    lines = [line for line in out.splitlines() if "ETA" in line]
    assert len(lines) == 3 and all(" loss " in line and "elapsed" in line for line in lines)
    assert "done (budget spent) at step 3" in out
    assert console.file.getvalue() == ""  # no bar, no escape codes


def test_budgets_are_said_in_the_singular_and_the_plural():
    assert [amount(v, "minute") for v in (1, 2, 0.5)] == ["1 minute", "2 minutes", "0.5 minutes"]
    assert amount(1, "step") == "1 step" and amount(3.0, "epoch") == "3 epochs"


class FakeTrainer:
    """What the columns read from a run's view, in the middle of a long validation."""

    def __init__(self, eta=None):
        self.phase, self.validation_fraction = "validating", 0.4
        self.elapsed, self.metrics = 12.0, {"val_loss": 1.5}
        self.device = SimpleNamespace(type="cuda")
        self._eta = eta

    def progress(self):
        return 0.5

    def eta(self):
        return self._eta


def test_the_clock_and_the_eta_move_on_during_a_long_validation():
    now = [1000.0]
    output = ConsoleOutput(clock=lambda: now[0])
    trainer = FakeTrainer(eta=100.0)
    output.follow(trainer)
    status, times = StatusColumn(output), TimesColumn(output)
    assert status.render().plain == " 50% validating 40%"
    assert times.render().plain == "elapsed 0:12 · ETA 1:40"
    now[0] += 5  # no step, no event: only the wall clock moved
    assert times.render().plain == "elapsed 0:17 · ETA 1:35"
    trainer.validation_fraction = 0.9
    assert status.render().plain == " 50% validating 90%"
    trainer._eta = 30.0  # a new estimate from the trainer replaces the countdown
    assert times.render().plain == "elapsed 0:17 · ETA 0:30"
    now[0] += 40
    assert times.render().plain == "elapsed 0:57 · ETA 0:00"
    trainer.phase = "training"
    assert status.render().plain == " 50%"


def test_without_an_estimate_from_the_trainer_the_eta_comes_from_the_steps():
    now = [0.0]
    output = ConsoleOutput(clock=lambda: now[0])
    trainer = FakeTrainer(eta=None)
    trainer.phase = "training"
    output.follow(trainer)
    assert output.eta() is None
    now[0] = 10.0
    output.on_step_end(trainer, 5, {"step": 5, "loss": 2.0, "bpc": 2.9, "accuracy": 0.3, "chars_per_s": 1e4,
                                    "progress": 0.75, "threads": 2})
    assert output.eta() == pytest.approx(10.0)  # 10 s for a quarter of the budget, a quarter left
    now[0] = 15.0
    assert output.eta() == pytest.approx(5.0)
    assert "step 5 · loss 2.000 (2.90 bpc) · acc 30% · val 1.500 · 10.0k chars/s · 2 threads" == output.figures()


def test_generation_progress_on_a_terminal():
    console, out = terminal(width=150)
    bar = Progress(100, 2, console=console)
    bar(60, 1)
    bar(40, 1)
    bar.close()
    raw = out.getvalue()
    text = plain(raw)
    assert "2/2 samples, 100 chars" in text and "chars/s" in text and "elapsed 0:00" in text and "100%" in text
    assert text.endswith("\n") and "\x1b[?25h" in raw  # the line ended, the cursor back


def test_generation_progress_elsewhere_prints_plain_lines():
    stream = io.StringIO()
    bar = Progress(200, 4, stream=stream, every=0)
    bar(50, 1)
    bar(150, 3)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith(" 25% 1/4 samples, 50 chars") and "ETA" in lines[0]
    assert lines[-1].startswith("100% 4/4 samples, 200 chars") and "ETA" not in lines[-1]
    assert "\x1b" not in stream.getvalue()


def test_generation_clock_ticks_between_calls():
    bar = Progress(1000, 1, stream=io.StringIO(), every=3600)
    bar(100, 0)
    bar.started = bar.updated - 60  # a tenth of the work took a minute
    at = bar.updated
    assert "elapsed 1:00, ETA 9:00" in bar.line(now=at) and "2 chars/s" in bar.line(now=at)
    assert "elapsed 1:05, ETA 8:55" in bar.line(now=at + 5)  # no call meanwhile: the clock moves on
