"""A grid's results, read from its runs' own ``metrics.jsonl``: one row per run (``points.csv``) and
one per configuration, the mean and spread over seeds (``summary.csv``, ``summary.md``)."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path

from charforge.display import finite
from charforge.experiments.grid import Grid, Point
from charforge.runs.directory import Run
from charforge.runs.files import atomic_write

LN2 = math.log(2)
# what every validation event holds (the trainer's); the rest of an event is a task's own figures
_VALIDATION = {"event", "time", "step", "sample", "full", "val_loss", "val_bpc", "val_accuracy", "sample_loss"}
FINISHED = ("budget spent", "solved", "budget already spent")  # how a finished point's run ended
FIGURES = ("parameters", "loss", "best_loss", "bpc", "accuracy", "val_loss", "best_val_loss", "val_bpc",
           "val_accuracy", "solved_step", "solved_seconds", "target_step", "target_seconds", "steps", "seconds",
           "wall")
SHOWN = {"parameters": "params", "loss": "loss", "best_loss": "best loss", "bpc": "bpc", "accuracy": "accuracy",
         "val_loss": "val loss", "best_val_loss": "best val loss", "val_bpc": "val bpc",
         "val_accuracy": "val accuracy", "solved_step": "solved at step", "target_step": "target at step",
         "target_seconds": "target at s", "steps": "steps", "seconds": "seconds"}


_NEEDS = {"start": ("step",), "step": ("step", "loss", "accuracy", "elapsed"), "validation": ("step",),
          "end": (), "error": ()}  # the numbers each kind of event must hold to be read


def timeline(events: list[dict]) -> list[dict]:
    """The events of a run as one history: a resume from step S replaces what the interrupted process
    had logged past S. An event without the numbers its kind needs (a damaged or hand-edited record)
    is left out, as are kinds the summary does not read."""
    kept: list[dict] = []
    for event in events:
        needs = _NEEDS.get(event.get("event")) if isinstance(event, dict) else None
        if needs is None or not all(finite(event.get(k)) for k in needs) or not finite(event.get("time", 0)):
            continue
        if event["event"] == "start":
            kept = [e for e in kept if e["event"] not in ("step", "validation") or e.get("step", 0) <= event["step"]]
        kept.append(event)
    return kept


def point_figures(point: Point, run: Run, target_loss: float | None = None) -> dict:
    """One run's figures: final and best losses (nats and bits per character) and accuracies, in
    training (the last logged steps') and held out (the last validation's; the best of all
    validations, the periodic ones reading a fixed sample of the held-out text and the final one all
    of it), when it first solved its task or reached ``target_loss``, its steps, its own training
    seconds and its wall time."""
    events = timeline(run.events())
    steps = [e for e in events if e["event"] == "step"]
    vals = [e for e in events if e["event"] == "validation"]
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] in ("end", "error")]
    row: dict = {"name": point.name, "configuration": point.configuration, "seed": point.seed,
                 **point.values, "status": ends[-1].get("reason", "failed") if ends else "not run"}
    if starts:
        row["parameters"] = starts[-1].get("parameters")
    if steps:
        row.update(loss=steps[-1]["loss"], best_loss=min(e["loss"] for e in steps), bpc=steps[-1]["loss"] / LN2,
                   accuracy=steps[-1]["accuracy"], steps=steps[-1]["step"], seconds=steps[-1]["elapsed"])
    with_loss = [e for e in vals if finite(e.get("val_loss")) and finite(e.get("val_accuracy"))]
    if with_loss:
        row.update(val_loss=with_loss[-1]["val_loss"], val_bpc=with_loss[-1]["val_loss"] / LN2,
                   best_val_loss=min(e["val_loss"] for e in with_loss), val_accuracy=with_loss[-1]["val_accuracy"])
    if vals:  # a task's own figures, as its last validation gave them
        row.update({k: v for k, v in vals[-1].items() if k not in _VALIDATION and k not in row
                    and isinstance(v, (int, float)) and not isinstance(v, bool)})

    def seconds_at(step: int) -> float | None:
        before = [e["elapsed"] for e in steps if e["step"] <= step]
        return before[-1] if before else None

    solved = next((e["step"] for e in vals if e.get("reproduced") == 1.0), None)
    if solved is not None:
        row.update(solved_step=solved, solved_seconds=seconds_at(solved))
    if target_loss is not None:
        reached = next((e["step"] for e in steps if e["loss"] <= target_loss), None)
        if reached is not None:
            row.update(target_step=reached, target_seconds=seconds_at(reached))
    pairs = _segments(events)
    if pairs:
        row["wall"] = sum(end - start for start, end in pairs)
    return row


def _segments(events: list[dict]) -> list[tuple[float, float]]:
    """(start, end) times of each process that trained the run and ended it (killed ones left out)."""
    out, started = [], None
    for event in events:
        if event["event"] == "start":
            started = event.get("time")
        elif event["event"] in ("end", "error") and finite(started) and finite(event.get("time")):
            out.append((started, event["time"]))
            started = None
    return out


def configurations(rows: list[dict], axes: list[str]) -> list[dict]:
    """One row per configuration: its axes, how many seeds, and each figure's mean and standard
    deviation over them (the deviation left empty for one seed); how many seeds solved or reached
    the target, when some did."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["configuration"], []).append(row)
    out = []
    for name, members in groups.items():
        summary = {"configuration": name, **{a: members[0].get(a) for a in axes}, "seeds": len(members)}
        for figure in (*FIGURES, *task_figures(rows, axes)):
            values = [m[figure] for m in members if isinstance(m.get(figure), (int, float))]
            if not values:
                continue
            summary[f"{figure}_mean"] = statistics.fmean(values)
            summary[f"{figure}_std"] = statistics.stdev(values) if len(values) > 1 else None
            if figure in ("solved_step", "target_step"):
                summary[figure.replace("_step", "")] = f"{len(values)}/{len(members)}"
        out.append(summary)
    return out


def task_figures(rows: list[dict], axes: list[str]) -> list[str]:
    """The figures of a task's own in ``rows`` (``bits_per_parameter``, ``reproduced``...), in order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in FIGURES and key not in axes and key != "seed" and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                seen[key] = None
    return list(seen)


def _csv(rows: list[dict]) -> bytes:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue().encode()


def _figure(value: float | None, spread: float | None, figure: str) -> str:
    if value is None:
        return ""
    if figure == "parameters":
        return f"{value:,.0f}"
    if figure in ("accuracy", "val_accuracy"):
        text, unit = f"{100 * value:.1f}", "%"
        return text + (f" ± {100 * spread:.1f}" if spread else "") + unit
    digits = 0 if figure in ("solved_step", "target_step", "steps") else 4
    if "seconds" in figure:
        digits = 1 if value >= 10 else 2
    return f"{value:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread else "")


def markdown(summary: list[dict], axes: list[str]) -> str:
    """The summary as a Markdown table: mean ± standard deviation over seeds."""
    own = [k.removesuffix("_mean") for row in summary for k in row if k.endswith("_mean")
           and k.removesuffix("_mean") not in FIGURES]  # a task's figures, after the common ones
    figures = [f for f in SHOWN if any(f"{f}_mean" in row for row in summary)] + list(dict.fromkeys(own))
    extra = [k for k in ("solved", "target") if any(k in row for row in summary)]
    header = [*[a.replace("_", "-") for a in axes], "seeds", *[SHOWN.get(f, f.replace("_", " ")) for f in figures],
              *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary:
        cells = [str(row.get(a, "")).lower() if isinstance(row.get(a), bool) else str(row.get(a, "")) for a in axes]
        cells += [str(row["seeds"])]
        cells += [_figure(row.get(f"{f}_mean"), row.get(f"{f}_std"), f) for f in figures]
        cells += [row.get(k, f"0/{row['seeds']}") for k in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(grid: Grid, directory: Path) -> tuple[list[dict], list[dict], str]:
    """Write ``points.csv``, ``summary.csv`` and ``summary.md``; returns (rows, summary, the Markdown)."""
    axes = list(grid.axes)
    rows = [point_figures(p, Run(directory / p.name), grid.target_loss) for p in grid.points()]
    summary = configurations(rows, axes)
    table = markdown(summary, axes)
    atomic_write(directory / "points.csv", _csv(rows))
    atomic_write(directory / "summary.csv", _csv(summary))
    atomic_write(directory / "summary.md", table.encode())
    return rows, summary, table
