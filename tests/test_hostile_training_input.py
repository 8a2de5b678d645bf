"""Training-side values a careless or hostile user gives charforge, and a damaged metrics.jsonl under
``charforge watch`` (issue 14, items 12, 13 and 15): a bad option value is one ``Error:`` line and exit
1, a model too large for memory is refused before anything is allocated, the frequency task's sizes
are bounded, and the terminal UI skips events it cannot read instead of stopping on them."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from click.testing import CliRunner

from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.experiments.grid import Grid
from charforge.model import CharModel, build_model
from charforge.tui.grid_history import GridHistory
from charforge.tui.history import RunHistory
from charforge.tui.sources.tail import MetricsTail
from charforge.tui.widgets.figures import rows
from charforge.tui.widgets.run_progress import budget
from tui_fakes import ScriptedSource, scripted_run

HUGE = str(10**20)  # past int64, where a size reaches torch
FAR = 10**400  # an integer no float holds: a hand-edited metrics line
TINY = ["--hidden-size", "8", "--batch-size", "2", "--seq-len", "8", "--steps", "1", "--device", "cpu", "-q"]
FREQUENCY = ["frequency-task", "--steps", "1", "--samples", "4", "--test-samples", "4", "--hidden-size", "2",
             "--min-points", "2", "--max-points", "3", "--threads", "1", "-q"]


@pytest.fixture
def invoke(tmp_path, text_corpus):
    """Run the command line in process; ``{corpus}`` in an argument is the test's text."""

    def run(*args: str):
        args = [a.replace("{corpus}", str(text_corpus)) for a in args]
        if args[0] in ("train", "compare", "frequency-task"):
            args += ["--runs-dir", str(tmp_path / "runs")]
        return CliRunner().invoke(cli, args)

    return run


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


# -- item 15: a bad option value reads as any other bad value -----------------------------------


@pytest.mark.parametrize("args, said", [
    (["train", "{corpus}", "--steps", "nan"], "Invalid value for '--steps': 'nan' is not a valid integer."),
    (["train", "{corpus}", "--hidden-size", "inf"], "Invalid value for '--hidden-size': 'inf'"),
    (["train", "{corpus}", "--schedule", "sometimes"], "Invalid value for '--schedule'"),
    (["train", "{corpus}", "--eval-every", "5x"], "Invalid value for '--eval-every'"),
    (["frequency-task", "--batch-size", "-inf"], "Invalid value for '--batch-size'"),
    (["compare", "faith", "--hidden-size", "8,x"], "'x' is not a valid integer"),
    (["sample", "nowhere", "--length", "nan"], "Invalid value for '--length'"),
])
def test_a_bad_option_value_is_one_error_line_and_exit_1(invoke, tmp_path, args, said):
    assert said in one_error_line(invoke(*args))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, said", [(["train", "{corpus}", "--bogus"], "No such option"),
                                        (["watch"], "Missing argument 'RUN_DIR'")])
def test_a_usage_error_that_is_not_a_value_keeps_clicks_usage_lines(invoke, args, said):
    result = invoke(*args)
    assert result.exit_code == 2 and said in result.output and "Usage:" in result.output


# -- item 12: a model that cannot fit in memory ------------------------------------------------


@pytest.mark.parametrize("option", [["--hidden-size", "100000"], ["--embedding-dim", "1000000000"],
                                    ["--layers", "99999999999999999999"], ["--hidden-size", HUGE],
                                    ["--embedding-dim", HUGE]])
def test_a_model_too_large_for_memory_is_refused_saying_how_much_it_needs(invoke, tmp_path, monkeypatch, option):
    monkeypatch.setattr("charforge.model.available_memory", lambda: 8 * 10**9)
    line = one_error_line(invoke("train", "{corpus}", *TINY, *option))
    assert "this model needs at least" in line and "GB of memory" in line and "this machine has 8 GB available" in line
    assert not (tmp_path / "runs").exists()


def test_sizes_past_any_machine_are_refused_against_the_real_memory(invoke):
    for option in ("--hidden-size", "--layers", "--embedding-dim"):
        assert "this model needs at least" in one_error_line(invoke("train", "{corpus}", *TINY, option, HUGE))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "phased-lstm"])
def test_the_memory_bound_is_the_real_models_weights_counted_without_building_it(tiny_config, registry,
                                                                                  monkeypatch, cell):
    config = tiny_config(cell=cell, hidden_size=12, num_layers=3, embedding_dim=5, batch_size=4, seq_len=16)
    vocab = 9
    model = CharModel(vocab, registry.get("cell", cell).obj, 12, 3, embedding_dim=5)
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    training = 2 * weights + 4 * 4 * 16 * (12 * 3 + vocab)  # with the gradients and one window's activations
    for available, kind, fits in ((training, True, True), (training - 1, True, False),
                                  (weights, False, True), (weights - 1, False, False)):
        monkeypatch.setattr("charforge.model.available_memory", lambda: available)
        if fits:
            build_model(dataclasses.replace(config), vocab, registry, training=kind)
        else:
            with pytest.raises(CharforgeError, match="this model needs at least"):
                build_model(dataclasses.replace(config), vocab, registry, training=kind)


def test_resume_and_compare_check_the_model_size_too(train, quiet_pm, invoke, monkeypatch):
    from charforge.trainer import Trainer

    run_dir = train().run_dir
    monkeypatch.setattr("charforge.model.available_memory", lambda: 10**4)
    with pytest.raises(CharforgeError, match="this model needs at least"):
        Trainer.resume(run_dir, {}, pm=quiet_pm())
    line = one_error_line(invoke("compare", "faith", "--hidden-size", "8,16", "--steps", "1", "-q"))
    assert "point hidden-size=8,seed=1: this model needs at least" in line


# -- frequency-task: every size bounded, on the way to the checks -------------------------------


@pytest.mark.parametrize("option, said", [
    ("--batch-size", "this model needs at least"), ("--samples", "needs samples from 2"),
    ("--test-samples", "needs test_samples from 2"), ("--max-points", "max_points <= 10000"),
    ("--seed", "--seed must be in [0, 2**63)"), ("--hidden-size", "this model needs at least"),
])
def test_frequency_task_refuses_a_huge_size_in_one_line(invoke, option, said):
    assert said in one_error_line(invoke(*FREQUENCY, option, HUGE))


def test_frequency_task_refuses_an_infinite_learning_rate(invoke):
    assert "--lr must be positive (and finite), not inf" in one_error_line(invoke(*FREQUENCY, "--lr", "inf"))


def test_frequency_task_takes_a_huge_thread_count_to_the_cores_bound(invoke):
    result = invoke(*FREQUENCY, "--threads", HUGE)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "held-out accuracy" in result.output


# -- item 13: a damaged metrics.jsonl under charforge watch ----------------------------------------

# Events no screen can use, each skipped and counted: not events, or numbers no float holds ...
UNREADABLE = [
    {"event": "start", "step": FAR},
    {"event": "start", "step": 0, "config": {"steps": FAR}},
    {"event": "step", "step": FAR, "loss": 1.0},
    {"event": "step", "step": 5, "loss": 1.0, "lr": FAR},
    {"event": "validation", "step": 5, "val_loss": FAR},
    {"event": "checkpoint", "step": FAR, "kind": "latest"},
    {"event": "end", "reason": "budget spent", "elapsed": [FAR]},
    {"event": 5},
    "not an event",
]
# ... or without the numbers their kind needs (the grid's summary leaves these out itself).
DAMAGED = UNREADABLE + [
    {"event": "start", "step": "x", "time": 1.0, "config": {}},
    {"event": "step", "step": 5, "loss": "x"},
    {"event": "step", "step": True, "loss": 1.0},
    {"event": "validation", "step": "x", "val_loss": 1.0, "sample": "abc"},
]
# Events of the right kind with some fields wrongly typed: taken, and shown as dashes.
ODD = [
    {"event": "step", "step": 310, "loss": 1.5, "lr": "x", "elapsed": "x", "eta": [], "progress": "p",
     "epoch": {}, "chars_per_s": None, "grad_norm": "g"},
    {"event": "validation", "step": 310, "val_loss": "x", "sample": 5},
    {"event": "checkpoint", "step": "x", "kind": 5},
    {"event": "error", "message": {"a": 1}},
    {"event": "start", "step": 310, "time": "t", "config": "not a dict"},
]


def test_the_run_history_skips_events_it_cannot_read_and_counts_them():
    h = RunHistory()
    for event in scripted_run(300, total=1000):
        h.add(event)
    train, val, step = list(h.train), list(h.val), h.step
    for event in DAMAGED:
        h.add(event)
    assert h.ignored == len(DAMAGED)
    assert (h.train, h.val, h.step) == (train, val, step)
    for event in ODD:
        h.add(event)
    assert h.ignored == len(DAMAGED) and h.step == 310
    assert all(isinstance(value, str) for _, value, _ in rows(h))
    assert budget(h.config) == "" and h.series(True, 50)[0][-1][0] == 310
    h.elapsed(now=2000.0), h.eta(now=2000.0)


def test_the_grid_history_skips_what_it_cannot_read():
    grid = Grid("faith", {"steps": 1000}, {"cell": ["rnn", "lstm"]}, [1])
    name = grid.points()[0].name
    h = GridHistory(grid)
    h.add(name, scripted_run(300, total=1000) + DAMAGED + ODD)
    assert h.ignored == len(UNREADABLE)
    assert h.step(name) == 310 and h.status(name, now=1000.0) in ("running", "stopped", "failed")
    h.rows(), h.summary(), h.overall(), h.progress(name)
    assert h.curves("step")[grid.points()[0].configuration][-1][0] == 300  # the odd step has no elapsed time
    h.curves("elapsed", bits=True)


def test_the_metrics_tail_skips_a_line_nested_past_what_json_follows(tmp_path):
    good = {"event": "step", "step": 1, "loss": 2.0}
    path = tmp_path / "metrics.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n" + json.dumps(good) + "\n")
    assert MetricsTail(path).read() == [good]


def test_the_training_screen_shows_a_damaged_run_without_stopping():
    from charforge.tui.app import CharforgeApp
    from charforge.tui.screens.train import TrainScreen

    events = [e for e in scripted_run(300, total=1000) + DAMAGED + ODD if isinstance(e, dict)]  # as a source's are
    source = ScriptedSource(events, owns_run=False, can_control=False)

    async def go():
        app = CharforgeApp(lambda: TrainScreen(source, poll_interval=0.05, redraw_interval=0.05))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.3)
            await pilot.press("b")  # bits: the plot redrawn from the history
            await pilot.pause(0.2)
            assert app.screen.history.step == 310 and app.screen.history.ignored == len(DAMAGED) - 1

    asyncio.run(go())
