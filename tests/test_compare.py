"""``charforge compare``: a grid from the command line or a file, every point checked before any
trains, finished points skipped on a rerun, an interrupted grid resumed to the same summary, and the
summary's figures against the runs' own records."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from charforge.cli import cli
from charforge.experiments.grid import Grid
from charforge.experiments.summary import timeline
from charforge.runs.directory import Run
from charforge.config import TrainConfig

FAITH_GRID = ["compare", "faith", "--cell", "rnn,lstm", "--hidden-size", "8,16", "--seeds", "2", "--steps", "30",
              "--name", "GRID"]
PALINDROME_GRID = ["compare", "palindrome", "--cell", "rnn,lstm", "-T", "length", "5,25", "--seeds", "1",
                   "--steps", "300", "--name", "GRID"]


def compare(tmp_path: Path, *args: str):
    result = CliRunner().invoke(cli, [*args, "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    return result


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_grid_of_the_command_line_and_of_a_file_are_one_grid(tmp_path):
    from charforge.cli.compare import grid_from_options, compare as command

    ctx = command.make_context("compare", ["faith", "--cell", "rnn,lstm", "--hidden-size", "8,16", "--seeds",
                                           "2", "--steps", "30", "-c", "bias", "true,false", "--eval-every", "10"])
    options = {k: v for k, v in ctx.params.items() if k not in ("target", "seeds", "grid_file", "name",
                                                                "runs_dir", "jobs", "target_loss", "metric", "quiet")}
    grid, _ = grid_from_options(ctx, "faith", options, 2, None, None)
    assert grid.axes == {"cell": ["rnn", "lstm"], "hidden_size": [8, 16], "cell.bias": ["true", "false"]}
    assert grid.fixed == {"steps": 30, "eval_every": 10} and grid.seeds == [1, 2]
    points = grid.points()
    assert len(points) == 2 * 2 * 2 * 2
    assert points[0].name == "cell=rnn,hidden-size=8,cell.bias=true,seed=1"
    assert points[1].name == "cell=rnn,hidden-size=8,cell.bias=true,seed=2"  # seeds vary fastest
    assert points[-1].settings == {"corpus": "faith", "seed": 2, "steps": 30, "eval_every": 10, "cell": "lstm",
                                   "hidden_size": 16, "cell_options": {"bias": "false"}}
    assert len({p.name for p in points}) == len(points)
    assert points[0].configuration == points[1].configuration != points[2].configuration

    toml = tmp_path / "grid.toml"
    toml.write_text('target = "faith"\nname = "G"\nseeds = 2\nsteps = 30\neval-every = 10\n'
                    'cell = ["rnn", "lstm"]\nhidden-size = [8, 16]\n[cell-options]\nbias = ["true", "false"]\n')
    from_file, name = Grid.from_toml(toml)
    assert name == "G"
    assert [p.name for p in from_file.points()] == [p.name for p in points]
    assert [p.settings for p in from_file.points()] == [p.settings for p in points]


def test_a_bad_point_is_named_before_anything_trains(tmp_path):
    result = compare(tmp_path, "compare", "faith", "--cell", "rnn,lstm", "-c", "forget_bias", "1,2", "--steps", "5")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: point cell=rnn,cell.forget-bias=1,seed=1: cell 'rnn' has no option 'forget_bias'. Its options: "
        "bias, init, nonlinearity."]
    assert not (tmp_path / "runs").exists()  # nothing started, not even the grid's folder
    typo = compare(tmp_path, "compare", "faith", "--cell", "rnn,lstm", "--optimizer", "adam,rmsprp", "--steps", "5")
    assert typo.exit_code == 1 and "point cell=rnn,optimizer=rmsprp,seed=1" in typo.output
    assert "Did you mean 'rmsprop'?" in typo.output
    value = compare(tmp_path, "compare", "faith", "--hidden-size", "8,x")
    assert value.exit_code == 1 and "'x' is not a valid integer" in value.output
    impossible = compare(tmp_path, "compare", "faith", "--dropout", "0.1,1.5", "--steps", "5")
    assert impossible.exit_code == 1 and "point dropout=1.5,seed=1: --dropout must be in [0, 1)" in impossible.output
    assert not (tmp_path / "runs").exists()


def test_the_issues_two_command_lines_write_the_summary_and_plots_and_a_rerun_skips_every_point(tmp_path):
    for args, points in ((FAITH_GRID, 8), ([*PALINDROME_GRID[:-1], "PAL"], 4)):
        name = args[-1]
        first = compare(tmp_path, *args)
        assert first.exit_code == 0, first.output
        grid_dir = tmp_path / "runs" / name
        for file in ("grid.json", "summary.csv", "summary.md", "points.csv", "loss_steps.png", "loss_seconds.png"):
            assert (grid_dir / file).is_file(), file
        assert (grid_dir / "loss_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"{points} points: 0 finished before, {points} to train" in first.output
        assert len(rows(grid_dir / "points.csv")) == points
        again = compare(tmp_path, *args)
        assert again.exit_code == 0 and f"{points} points: {points} finished before, 0 to train" in again.output
    palindrome = rows(tmp_path / "runs" / "PAL" / "summary.csv")
    assert [(r["cell"], r["task.length"]) for r in palindrome] == [("rnn", "5"), ("rnn", "25"), ("lstm", "5"),
                                                                    ("lstm", "25")]
    assert (tmp_path / "runs" / "PAL" / "val_accuracy_vs_task-length.png").is_file()
    assert (tmp_path / "runs" / "GRID" / "loss_vs_hidden_size.png").is_file()
    short = {r["task.length"]: float(r["val_accuracy_mean"]) for r in palindrome if r["cell"] == "lstm"}
    assert short["5"] > 0.9 > short["25"]  # T = 5 is learned in 300 steps; T = 25 is not


def test_a_grown_grid_trains_only_its_new_points_and_a_larger_budget_resumes_the_old(tmp_path):
    base = ["compare", "faith", "--cell", "rnn", "--hidden-size", "8,16", "--steps", "20", "--name", "G"]
    assert compare(tmp_path, *base).exit_code == 0
    grown = compare(tmp_path, *[a if a != "8,16" else "8,16,24" for a in base])
    assert grown.exit_code == 0 and "3 points: 2 finished before, 1 to train" in grown.output
    longer = compare(tmp_path, *[a if a != "20" else "40" for a in base])
    assert longer.exit_code == 0 and "2 points: 0 finished before, 2 to train" in longer.output
    for row in rows(tmp_path / "runs" / "G" / "points.csv"):
        assert row["steps"] == "40"
    run = Run(tmp_path / "runs" / "G" / "hidden-size=8,seed=1")
    assert [e["step"] for e in run.events() if e["event"] == "start"] == [0, 20]  # resumed, not retrained
    for change, said in ((["--lr", "0.02"], f"has lr {TrainConfig.lr:g}, the grid asks for 0.02"),
                         (["--layers", "2"], "has num_layers 1, the grid asks for 2")):
        refused = compare(tmp_path, *base, *change)  # the same point names, another experiment
        assert refused.exit_code == 1 and said in refused.output
    other = compare(tmp_path, *base, "--layers", "2")
    assert other.exit_code == 1 and "has num_layers 1, the grid asks for 2; give the grid another --name" \
        in other.output


def test_the_summary_is_the_runs_own_record(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text(" ".join("abc cab bca aab" for _ in range(300)))
    result = compare(tmp_path, "compare", str(text), "--cell", "rnn", "--hidden-size", "8,12", "--seeds", "3",
                     "--steps", "40", "--batch-size", "4", "--seq-len", "16", "--log-every", "5", "--eval-every",
                     "10", "--target-loss", "1.2", "--name", "S")
    assert result.exit_code == 0, result.output
    grid_dir = tmp_path / "runs" / "S"
    points = rows(grid_dir / "points.csv")
    for row in points:
        events = timeline(Run(grid_dir / row["name"]).events())
        steps = [e for e in events if e["event"] == "step"]
        vals = [e for e in events if e["event"] == "validation"]
        assert float(row["loss"]) == pytest.approx(steps[-1]["loss"])
        assert float(row["best_loss"]) == pytest.approx(min(e["loss"] for e in steps))
        assert float(row["bpc"]) == pytest.approx(steps[-1]["loss"] / math.log(2))
        assert float(row["val_loss"]) == pytest.approx(vals[-1]["val_loss"])
        assert float(row["best_val_loss"]) == pytest.approx(min(e["val_loss"] for e in vals))
        assert float(row["accuracy"]) == pytest.approx(steps[-1]["accuracy"])
        assert float(row["val_accuracy"]) == pytest.approx(vals[-1]["val_accuracy"])
        assert int(row["steps"]) == 40 and float(row["seconds"]) == pytest.approx(steps[-1]["elapsed"])
        reached = next((e["step"] for e in steps if e["loss"] <= 1.2), None)
        assert (int(row["target_step"]) if row["target_step"] else None) == reached
        assert int(row["parameters"]) == next(e for e in events if e["event"] == "start")["parameters"]
    assert any(row["target_step"] for row in points)
    for summary in rows(grid_dir / "summary.csv"):
        mine = [r for r in points if r["configuration"] == summary["configuration"]]
        assert len(mine) == int(summary["seeds"]) == 3
        for figure in ("loss", "val_loss", "best_val_loss", "accuracy", "val_accuracy"):
            values = [float(r[figure]) for r in mine]
            assert float(summary[f"{figure}_mean"]) == pytest.approx(statistics.fmean(values))
            assert float(summary[f"{figure}_std"]) == pytest.approx(statistics.stdev(values))
    table = (grid_dir / "summary.md").read_text()
    assert table.splitlines()[0].startswith("| hidden-size | seeds | params | loss |") and table in result.output


def _grid_process(runs: Path, name: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "charforge", *FAITH_GRID[:-1], name, "--steps", "600", "--checkpoint-every", "50",
            "--threads", "1", "--jobs", "2", "--device", "cpu", "--runs-dir", str(runs), "-q"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _ended(run: Path, reason: str | None = None) -> bool:
    return any(e["event"] == "end" and reason in (None, e["reason"]) for e in Run(run).events())


def test_a_grid_killed_mid_way_resumes_to_the_summary_of_one_never_interrupted(tmp_path):
    runs = tmp_path / "runs"
    killed = _grid_process(runs, "killed")
    grid_dir = runs / "killed"
    deadline = time.monotonic() + 120
    while not (grid_dir.is_dir() and any(_ended(p) for p in grid_dir.iterdir() if p.is_dir())):
        assert time.monotonic() < deadline and killed.poll() is None, killed.stderr.read() if killed.poll() else ""
        time.sleep(0.05)
    with_checkpoint = lambda: [p for p in grid_dir.iterdir() if p.is_dir() and not _ended(p)  # noqa: E731
                               and (p / "checkpoints" / "latest.safetensors").exists()]
    while not with_checkpoint() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)  # the command and both its workers, at once
    killed.wait()
    done = [p.name for p in grid_dir.iterdir() if p.is_dir() and _ended(p, "budget spent")]
    assert 0 < len(done) < 8
    resumed = _grid_process(runs, "killed")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    whole = _grid_process(runs, "whole")
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    timing = ("seconds", "wall", "target_seconds", "solved_seconds")
    figures = lambda name: [{k: v for k, v in r.items() if k.split("_")[0] not in timing and k not in timing}  # noqa
                            for r in rows(runs / name / "summary.csv")]
    assert figures("killed") == figures("whole")
    for point in done:  # the points finished before the kill were not trained again
        assert [e["event"] for e in Run(grid_dir / point).events()].count("start") == 1
    assert json.loads((grid_dir / "grid.json").read_text())["axes"] == {"cell": ["rnn", "lstm"], "hidden_size": [8, 16]}


def test_a_grid_file_runs_as_its_command_line_would_and_options_override_it(tmp_path):
    grid = tmp_path / "optimizers.toml"
    grid.write_text('target = "memorise"\nname = "opt"\nseeds = 1\nsteps = 60\nhidden-size = 8\n'
                    'optimizer = ["rmsprop", "adam"]\n[task-options]\nsentence = ["amazon"]\n')
    result = compare(tmp_path, "compare", "--grid", str(grid), "--steps", "80")
    assert result.exit_code == 0, result.output
    points = rows(tmp_path / "runs" / "opt" / "points.csv")
    assert [p["name"] for p in points] == ["optimizer=rmsprop,seed=1", "optimizer=adam,seed=1"]
    assert all(int(p["steps"]) <= 80 for p in points)  # the command line's budget, not the file's
    assert json.loads((tmp_path / "runs" / "opt" / "grid.json").read_text())["fixed"]["steps"] == 80
    summary = rows(tmp_path / "runs" / "opt" / "summary.csv")  # the task's own figures are summarised too
    assert [float(r["reproduced_mean"]) for r in summary] == [float(p["reproduced"]) for p in points]
    assert "| reproduced | matched |" in (tmp_path / "runs" / "opt" / "summary.md").read_text()
    broken = tmp_path / "broken.toml"
    broken.write_text('target = "faith"\ncell = ["rnn",\n')
    bad = compare(tmp_path, "compare", "--grid", str(broken))
    assert bad.exit_code == 1 and bad.output.startswith(f"Error: {broken}: cannot read the grid")


def test_ctrl_c_stops_the_grid_saves_the_point_in_training_and_a_rerun_goes_on(tmp_path):
    runs = tmp_path / "runs"
    args = [sys.executable, "-m", "charforge", "compare", "faith", "--cell", "rnn", "--hidden-size", "8,16",
            "--steps", "100000", "--threads", "1", "--device", "cpu", "--runs-dir", str(runs), "--name", "C"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = runs / "C" / "hidden-size=8,seed=1"
    deadline = time.monotonic() + 120
    while not (first.is_dir() and sum(e["event"] == "step" for e in Run(first).events()) >= 3):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: 0 of 2 points finished; run the same command again" in err
    step = [e for e in Run(first).events() if e["event"] == "end"][-1]["step"]
    assert step > 0 and not (runs / "C" / "hidden-size=16,seed=1").exists()
    again = subprocess.run([*args[:-6], "--steps", str(step + 5), *args[-6:]], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 points: 0 finished before, 2 to train" in again.stdout
    starts = [e["step"] for e in Run(first).events() if e["event"] == "start"]
    assert starts == [0, step]  # resumed from the checkpoint the Ctrl-C saved


def test_a_damaged_record_is_read_around_not_crashed_on(tmp_path):
    from charforge.experiments.grid import Point
    from charforge.experiments.summary import point_figures

    run = tmp_path / "p"
    run.mkdir()
    good = {"event": "step", "time": 2.0, "step": 10, "loss": 1.5, "accuracy": 0.5, "elapsed": 1.0}
    lines = [{"event": "start", "time": 1.0, "step": "x"}, {"event": "start", "time": 1.0, "step": 0, "parameters": 9},
             good, {**good, "step": 20, "loss": "nan"}, {**good, "step": 30, "elapsed": None},
             {"event": "validation", "time": 3.0, "step": 10, "val_loss": "1.2"}, "not an event", [1, 2],
             {"event": "end", "time": "late", "reason": "budget spent"}, {"event": "end", "time": 4.0, "step": 10,
                                                                            "reason": "budget spent"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"event": "st')
    row = point_figures(Point("p", {}, 1, {}), Run(run))
    assert (row["loss"], row["steps"], row["parameters"], row["status"]) == (1.5, 10, 9, "budget spent")
    assert "val_loss" not in row and row["wall"] == 3.0
