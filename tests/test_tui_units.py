"""The TUI's pure parts: settings clamping, the run history, tailing metrics, the train command's child."""

import json
import math

import click
import pytest
from click.testing import CliRunner

from charforge.errors import CharforgeError
from charforge.tui.history import RunHistory, downsample
from charforge.sampling.settings import Settings
from charforge.tui import settings as knobs
from charforge.tui.sources.tail import AttachedRun, MetricsTail
from charforge.tui.widgets.figures import fitting, rows
from charforge.tui.widgets.loss_plot import integer_ticks
from charforge.tui.widgets.run_progress import budget
from tui_fakes import scripted_run


def test_temperature_steps_clamp_to_zero_and_five():
    s = Settings(temperature=0.2)
    for _ in range(5):
        s = knobs.nudge(s, "temperature", -1)
    assert s.temperature == 0.0
    for _ in range(80):
        s = knobs.nudge(s, "temperature", 1)
    assert s.temperature == 5.0
    assert knobs.nudge(Settings(temperature=0.7), "temperature", 1).temperature == 0.8  # not 0.7999999


def test_other_settings_clamp_and_show():
    s = Settings(top_k=1, top_p=0.1, length=20)
    for name, steps in (("top_k", -5), ("top_p", -5), ("length", -50)):
        s = knobs.nudge(s, name, steps)
    seed = knobs.nudge_seed(0, -3)
    assert (s.top_k, s.top_p, s.length, seed) == (0, 0.05, 10, None)
    assert knobs.shown("top_k", s.top_k) == "off" and knobs.shown("seed", seed) == "random"
    assert knobs.shown("temperature", 0) == "0.0 (greedy)"
    assert knobs.clamped(Settings(temperature=9, top_p=3, length=10**9)) == Settings(
        temperature=5.0, top_p=1.0, length=5000)
    assert "seed 42" in knobs.label(Settings(), 42)


def test_downsample_keeps_ends_and_means():
    points = [(i, float(i)) for i in range(1001)]
    small = downsample(points, 50)
    assert len(small) == 50
    assert small[-1] == (1000, 1000.0)
    assert all(a[0] < b[0] for a, b in zip(small, small[1:]))
    assert downsample(points[:10], 50) == points[:10]


def test_history_follows_a_run():
    h = RunHistory()
    for event in scripted_run(300, total=1000):
        h.add(event)
    assert h.step == 300 and len(h.train) == 30 and len(h.val) == 3
    assert h.progress == pytest.approx(0.3)
    assert h.eta() == pytest.approx(300 * 0.06 * 0.7 / 0.3)
    assert [s.step for s in h.samples] == [100, 200, 300]
    assert h.best_val == min(v for _, v in h.val)
    train_bits, _ = h.series(bits=True, limit=10)
    assert len(train_bits) == 10 and train_bits[-1][1] == pytest.approx(h.train[-1][1] / math.log(2))
    h.add({"event": "end", "reason": "budget spent", "step": 300})
    assert h.ended == "budget spent"
    # Resumed from an earlier checkpoint: the steps it redoes are dropped, not drawn twice.
    h.add({"event": "start", "step": 200, "config": {}})
    assert h.train[-1][0] == 200 and h.ended is None


def test_history_clock_moves_on_with_the_wall_clock_and_stands_still_otherwise():
    h = RunHistory()
    h.add({"event": "start", "step": 0, "time": 1000.0, "config": {"minutes": 1}})
    assert h.elapsed(now=1007.0) == pytest.approx(7.0)  # ticking before the first step arrives
    h.add({"event": "step", "step": 10, "loss": 2.0, "elapsed": 20.0, "progress": 0.25, "eta": 60.0,
           "time": 1021.0})
    assert h.elapsed() == 20.0 and h.eta() == 60.0  # no wall clock: the figures as written
    assert h.elapsed(now=1031.0) == pytest.approx(30.0) and h.eta(now=1031.0) == pytest.approx(50.0)
    assert h.eta(now=2000.0) == 0.0
    h.add({"event": "step", "step": 20, "loss": 1.9, "elapsed": 40.0, "progress": 0.5, "time": 1041.0})
    assert h.eta(now=1041.0) == pytest.approx(40.0)  # no estimate written: from the progress
    # A resumed process starts its clock from what the run had spent, not from the last step.
    h.add({"event": "start", "step": 20, "time": 5000.0, "config": {}})
    assert h.elapsed(now=5003.0) == pytest.approx(43.0)


def test_history_says_validating_and_ignores_what_it_cannot_read():
    h = RunHistory()
    for event in scripted_run(100):
        h.add(event)
    h.add({"event": "validation_start", "step": 100, "full": True, "windows": 40, "time": 50.0})
    assert h.validating["full"] is True
    h.add({"event": "validation", "step": 100, "val_loss": 1.2, "full": True, "sample": "ok"})
    assert h.validating is None and h.samples[-1].title == "step 100 · validation 1.2000 nats/char"
    before = (list(h.train), h.step, h.best_val)
    for odd in ({"event": "mystery", "step": 5}, {"event": "step", "step": 110, "loss": "high"},
                {"event": "step", "loss": 1.0}, {"no": "event"}, {"event": None},
                {"event": "validation", "val_loss": "low", "sample": 3}, {"event": "start", "step": "x"}):
        h.add(odd)
    assert (h.train, h.step, h.best_val) == before and h.ignored >= 4
    h.add({"event": "end", "reason": 7})
    assert h.ended == "7"


def test_budget_is_said_in_the_singular_and_the_plural():
    assert budget({"steps": 1, "minutes": 2}) == "budget 1 step or 2 minutes"
    assert budget({"epochs": 1.5, "minutes": 1}) == "budget 1.5 epochs or 1 minute"
    assert budget({"steps": "lots"}) == ""


def test_step_ticks_are_whole_numbers():
    assert integer_ticks(1, 3, 8) == [1, 2, 3]  # where evenly spread ticks would fall on 1.5 and 2.5
    assert integer_ticks(10, 10, 5) == [10]
    ticks = integer_ticks(10, 1000, 6)
    assert ticks == [200, 400, 600, 800, 1000] and all(isinstance(t, int) for t in ticks)
    assert integer_ticks(0, 7, 3) == [0, 5]


def test_short_figures_keep_the_step_losses_best_and_saved_rows():
    h = RunHistory()
    for event in scripted_run(300):
        h.add(event)
    shown = [name for name, _ in fitting(rows(h), 8)]
    assert len(shown) == 8 and {"step", "loss", "val loss", "best val", "saved"} <= set(shown)
    assert shown.index("step") < shown.index("loss") < shown.index("best val") < shown.index("saved")
    assert len(fitting(rows(h), 100)) == len(rows(h))
    assert dict(fitting(rows(RunHistory()), 20))["saved"] == "-"


def test_sample_labels_shrink_but_keep_the_seed():
    s = Settings(temperature=0.8, top_k=40, top_p=0.9, length=300)
    titles = knobs.titles("step-00012000 · step 12000", s, 2147483647)
    assert titles[0] == "step-00012000 · step 12000 · T 0.8 · top-k 40 · top-p 0.90 · 300 chars · seed 2147483647"
    assert len(titles[0]) > len(titles[1])
    assert all("seed 2147483647" in t for t in titles) and titles[-1].startswith("seed 2147483647 · T 0.8")
    assert knobs.record(s, 7) == {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "length": 300, "seed": 7}


def test_tail_reads_only_complete_lines_and_survives_replacement(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # not there yet
    path.write_text('{"event": "start"}\n{"event": "st')
    assert tail.read() == [{"event": "start"}]
    with open(path, "a") as f:
        f.write('ep", "step": 1}\nnot json\n')
    assert tail.read() == [{"event": "step", "step": 1}]
    path.write_text('{"event": "end"}\n')  # shorter: a new file
    assert tail.read() == [{"event": "end"}]


def test_attach_needs_a_run_directory(tmp_path):
    with pytest.raises(CharforgeError, match="not a run directory"):
        AttachedRun(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"event": "start", "step": 0}) + "\n")
    run = AttachedRun(tmp_path)
    assert not run.owns_run and not run.can_control
    assert run.poll() == [{"event": "start", "step": 0}]


def test_train_tui_passes_every_option_to_the_child(monkeypatch, tmp_path):
    from charforge import cli
    from charforge.tui import commands

    seen = {}
    monkeypatch.setattr(commands, "run_app", lambda make_screen: seen.update(screen=make_screen()))
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n" * 50)
    result = CliRunner().invoke(cli.cli, [
        "train", str(corpus), "--tui", "--hidden-size", "16", "--no-output-bias", "-c", "forget_bias", "2",
        "--steps", "30", "--eval-every", "90s", "--runs-dir", str(tmp_path / "runs"), "--name", "r1"])
    assert result.exit_code == 0, result.output
    source = seen["screen"].source
    args = source.args
    assert args[0] == str(corpus)
    for pair in (["--hidden-size", "16"], ["-c", "forget_bias", "2"], ["--steps", "30"], ["--name", "r1"],
                 ["--eval-every", "90s"]):
        assert any(args[i:i + len(pair)] == pair for i in range(len(args)))
    assert "--no-output-bias" in args and "--tui" not in args and "--quiet" not in args
    assert source.runs_dir == tmp_path / "runs"


def test_train_tui_rejects_bad_values_before_any_screen(tmp_path):
    from charforge import cli

    result = CliRunner().invoke(cli.cli, ["train", "x.txt", "--tui", "--hidden-size", "0"])
    assert result.exit_code != 0 and "--hidden-size" in result.output


def test_core_never_imports_textual():
    """Outside charforge/tui, nothing imports Textual; cli.py reaches the TUI only inside its commands."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import charforge

    root = Path(charforge.__file__).parent
    for path in root.rglob("*.py"):
        if "tui" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith(("textual", "charforge.tui")) or (
                    "cli" in path.relative_to(root).parts and node not in tree.body), f"{path} imports {name}"
    code = "import sys, charforge.cli; print(sorted(m for m in sys.modules if m.startswith(('textual', 'charforge.tui'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _FakeChild:
    """Stands in for the ``charforge train`` child process."""

    pid = 424242

    def __init__(self, args, stderr=None, **kw):
        self.args, self.stderr, self.returncode = args, stderr, None

    def poll(self):
        return self.returncode


def test_train_process_signals_and_failures(monkeypatch, tmp_path):
    import signal

    from charforge.tui.sources import process

    children, kills = [], []
    monkeypatch.setattr(process.subprocess, "Popen", lambda args, **kw: children.append(_FakeChild(args, **kw))
                        or children[-1])
    monkeypatch.setattr(process.os, "kill", lambda pid, sig: kills.append(sig))
    run_dir = tmp_path / "runs" / "r"
    source = process.TrainProcess(["c.txt", "--steps", "9"], runs_dir=tmp_path / "runs", run_dir=run_dir)
    source.start()
    assert children[0].args[-4:] == ["c.txt", "--steps", "9", "--quiet"]
    source.pause()
    assert kills == [signal.SIGTERM]
    source.resume()  # the paused child has not exited yet: the resume waits for it
    assert len(children) == 1
    children[0].returncode = 0
    assert source.poll() == []
    assert len(children) == 2 and children[1].args[-3:] == ["--resume", str(run_dir), "--quiet"]
    # A child that fails before writing any event: its last line of stderr becomes an error event.
    children[1].stderr.write(b"Traceback...\nError: corpus c.txt does not exist.\n")
    children[1].returncode = 1
    assert source.poll() == [{"event": "error", "message": "corpus c.txt does not exist."}]
    # Closing stops (and so saves) a live run, unless the user detached from it.
    source.start()
    source.close()
    assert kills[-1] == signal.SIGTERM and len(kills) == 2
    source.start()
    source.detach()
    source.close()
    assert len(kills) == 2


def test_the_best_validation_is_judged_on_the_sample_as_the_run_judges_it():
    history = RunHistory()
    history.add({"event": "validation", "step": 10, "val_loss": 2.0})
    history.add({"event": "validation", "step": 20, "val_loss": 1.5, "sample_loss": 1.7, "full": True})
    assert history.best_val == 1.7  # the final, full validation's own loss (1.5) is another text's
