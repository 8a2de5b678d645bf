"""A grid from start to end: checked, trained (what is not finished yet), summarised and plotted.
What it shows while it works is the caller's (``report``), so the command line and tests each bring
their own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from charforge.experiments.grid import Grid
from charforge.experiments.plots import loss_curves, sweeps
from charforge.experiments.runner import Planned, plan, run_points
from charforge.threads import usable_cores
from charforge.experiments.summary import FINISHED, point_figures, write_summary
from charforge.runs.directory import Run


class QuietReport:
    """A report that shows nothing (a script's); the command line brings one that shows progress."""

    def planned(self, total: int, to_train: int, jobs: int, threads: int) -> None:
        pass

    def running(self, names: list[str]) -> None:
        pass

    def finished(self, name: str, line: str) -> None:
        pass


@dataclass
class Outcome:
    rows: list[dict]
    summary: list[dict]
    table: str
    plots: list[Path]
    total: int
    finished: int
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False


def run_grid(grid: Grid, directory: Path, jobs: int = 1, metric: str | None = None, report=None,
             pm=None) -> Outcome:
    """Check every point (CharforgeError, naming the point, before anything trains), train those not
    finished ``jobs`` at a time, and write the summary and plots into ``directory``."""
    from charforge.plugins import Registry, make_plugin_manager

    report = report or QuietReport()
    registry = Registry(pm if pm is not None else make_plugin_manager(block=["console"]))
    # one process: the adaptive count (a busy machine's other work makes a pinned count collapse);
    # several: the cores shared out, so that jobs x threads fits them
    threads = 0 if jobs == 1 else max(1, usable_cores() // jobs)
    planned = plan(grid, directory, registry, threads)
    grid.save(directory)
    report.planned(len(planned), sum(p.action != "skip" for p in planned), jobs, threads)
    failed: list[str] = []

    def done(item: Planned, result: dict) -> None:
        if result["error"]:
            failed.append(f"{item.point.name}: {result['error']}")
            report.finished(item.point.name, f"failed: {result['error']}")
        else:
            report.finished(item.point.name, _line(point_figures(item.point, Run(directory / item.point.name))))

    complete = run_points(planned, directory, jobs, threads, done, report.running)
    rows, summary, table = write_summary(grid, directory)
    metric = metric or _metric(grid, registry, rows)
    plots = loss_curves(grid, directory) + sweeps(grid, directory, rows, metric)
    finished = sum(row["status"] in FINISHED for row in rows)
    return Outcome(rows, summary, table, plots, len(rows), finished, failed, not complete)


def _metric(grid: Grid, registry, rows: list[dict]) -> str:
    if grid.target in registry.names("task"):
        return registry.get("task", grid.target).obj.metric
    return "val_loss" if any("val_loss" in row for row in rows) else "loss"


def _line(row: dict) -> str:
    parts = [row["status"]]
    if "loss" in row:
        parts.append(f"loss {row['loss']:.4f}")
    if "val_loss" in row:
        parts.append(f"val loss {row['val_loss']:.4f}")
    accuracy = row.get("val_accuracy", row.get("accuracy"))
    if accuracy is not None:
        parts.append(f"{'val ' * ('val_accuracy' in row)}accuracy {accuracy:.1%}")
    if "solved_step" in row:
        parts.append(f"reproduced at step {row['solved_step']}")
    if "steps" in row:
        parts.append(f"{row['steps']} steps in {row['seconds']:.1f} s")
    return ", ".join(parts)
