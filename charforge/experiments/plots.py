"""A grid's plots, drawn with matplotlib into PNG files: the loss against steps and against seconds
(one line per configuration, the band spanning its seeds), and for each numeric axis swept, the
grid's metric at the end against that axis (one line per combination of the other axes)."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from charforge.experiments.curves import band
from charforge.experiments.grid import Grid, label
from charforge.experiments.summary import timeline
from charforge.runs.directory import Run

LEGEND_MOST = 12  # lines; past that a legend covers the plot
NAMES = {"loss": "training loss (nats/char)", "val_loss": "validation loss (nats/char)",
         "accuracy": "accuracy", "val_accuracy": "held-out accuracy", "solved_step": "steps to reproduce"}


def _number(value) -> float | None:
    """A numeric axis's value (an option given as text, ``-T length 5``, counts), else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, whatever the machine has
    import matplotlib.pyplot as plt

    return plt


def _curves(grid: Grid, directory: Path, x: str) -> dict[str, list[list[tuple[float, float]]]]:
    """Per configuration, each seed's training loss against ``x`` (``step`` or ``elapsed``)."""
    out: dict[str, list] = {}
    for point in grid.points():
        steps = [e for e in timeline(Run(directory / point.name).events()) if e["event"] == "step"]
        if steps:
            out.setdefault(point.configuration, []).append([(e[x], e["loss"]) for e in steps])
    return out


def loss_curves(grid: Grid, directory: Path) -> list[Path]:
    """``loss_steps.png`` and ``loss_seconds.png``."""
    plt = _pyplot()
    written = []
    for x, name, xlabel in (("step", "loss_steps.png", "step"), ("elapsed", "loss_seconds.png", "seconds")):
        curves = _curves(grid, directory, x)
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for configuration, runs in curves.items():
            xs, mean, low, high = np.array(band(runs)).T
            (line,) = ax.plot(xs, mean, label=configuration, linewidth=1.2)
            if len(runs) > 1:
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(NAMES["loss"])
        ax.set_title(f"{grid.target}: training loss" + (", band over seeds" if len(grid.seeds) > 1 else ""))
        if len(curves) <= LEGEND_MOST:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(directory / name, dpi=110)
        plt.close(fig)
        written.append(directory / name)
    return written


def sweeps(grid: Grid, directory: Path, rows: list[dict], metric: str) -> list[Path]:
    """``METRIC_vs_AXIS.png`` for each numeric axis of two or more values: the mean over seeds (error
    bars: their standard deviation, as in the summary) against the axis, one line per combination of
    the other axes."""
    plt = _pyplot()
    written = []
    for axis, values in grid.axes.items():
        if len(values) < 2 or not all(_number(v) is not None for v in values):
            continue
        others = [a for a in grid.axes if a != axis]
        lines: dict[str, dict[float, list[float]]] = {}
        for row in rows:
            if isinstance(row.get(metric), (int, float)):
                key = label({a: row[a] for a in others}) or grid.target
                lines.setdefault(key, {}).setdefault(_number(row[axis]), []).append(row[metric])
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, by_value in lines.items():
            xs = sorted(by_value)
            means = [statistics.fmean(by_value[v]) for v in xs]
            spread = [statistics.stdev(by_value[v]) if len(by_value[v]) > 1 else 0.0 for v in xs]  # as the table
            ax.errorbar(xs, means, yerr=spread if any(spread) else None, marker="o", capsize=3, label=key)
        ax.set_xlabel(axis.replace("_", "-"))
        ax.set_ylabel(NAMES.get(metric, metric))
        ax.set_title(f"{grid.target}: {NAMES.get(metric, metric)} at the end, against {axis.replace('_', '-')}")
        if len(lines) <= LEGEND_MOST:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = directory / f"{metric}_vs_{axis.replace('.', '-')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
