"""Training a grid's points: what each point needs (nothing, a resume, a fresh start), and running
them in this process or in ``jobs`` worker processes that each import PyTorch once.

A point is finished when its run ended by its budget with the settings the grid asks for, or solved
its task; one whose budget grew resumes to the new budget; one interrupted after a checkpoint
resumes from it; one interrupted before its first checkpoint starts again (it had nothing to keep).
A point whose run has other settings than the budget is refused: that is another grid.
"""

from __future__ import annotations

import shutil
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.experiments.check import check_point
from charforge.experiments.grid import Grid, Point
from charforge.experiments.summary import FINISHED
from charforge.runs.directory import Run

HOW_NOT_WHAT = ("threads", "device")  # how a point runs, not what it is: a change does not make it another
BUDGETS = ("steps", "epochs", "minutes")  # a grown budget resumes a point; any other change is another grid


@dataclass
class Planned:
    point: Point
    config: TrainConfig
    action: str  # "skip", "new", "resume" or "restart"
    overrides: dict


def plan(grid: Grid, directory: Path, registry, threads: int) -> list[Planned]:
    """Every point checked and its action decided, before anything trains (CharforgeError naming the
    first point that cannot run). ``threads``: each point's (0: adaptive), unless the grid sets its own."""
    planned = []
    for point in grid.points():
        config = check_point(point.name, point.settings, registry)
        if "threads" not in point.settings:
            config.threads = threads
        planned.append(_action(point, config, Run(directory / point.name)))
    return planned


def _action(point: Point, config: TrainConfig, run: Run) -> Planned:
    if not run.is_run():
        return Planned(point, config, "new", {})
    if not run.checkpoint("latest").exists():
        return Planned(point, config, "restart", {})
    stored = run.config().to_dict()
    wanted = config.to_dict()
    changed = {k: v for k, v in wanted.items() if stored[k] != v and k not in HOW_NOT_WHAT}
    other = [k for k in changed if k not in BUDGETS]
    if other:  # the same point name, another experiment
        key = other[0]
        raise CharforgeError(f"point {point.name}: its run in {run.path} has {key} {stored[key]!r}, the grid "
                             f"asks for {wanted[key]!r}; give the grid another --name.")
    ends = [e for e in run.events() if e["event"] in ("start", "end")]
    reason = ends[-1].get("reason") if ends and ends[-1]["event"] == "end" else None
    if reason == "solved" or (reason in FINISHED and not changed):
        return Planned(point, config, "skip", {})
    return Planned(point, config, "resume", {**changed, **{k: wanted[k] for k in HOW_NOT_WHAT}})


_PM = None  # a worker's plugin manager, made once for all the points it trains


def train_point(directory: str, planned: Planned) -> dict:
    """Train one point; returns how its run ended (``reason``) or the one-line error that stopped it."""
    global _PM
    from charforge.plugins import make_plugin_manager
    from charforge.trainer import Trainer

    if _PM is None:
        _PM = make_plugin_manager(block=["console"])
    path = Path(directory) / planned.point.name
    try:
        if planned.action == "resume":
            trainer = Trainer.resume(path, planned.overrides, pm=_PM)
        else:
            if planned.action == "restart":  # not while another process trains it
                run = Run(path)
                run.acquire()
                run.release()
                shutil.rmtree(path)
            trainer = Trainer(planned.config, pm=_PM, runs_root=directory, name=planned.point.name)
        trainer.run()
        return {"name": planned.point.name, "reason": trainer.outcome, "error": None}
    except CharforgeError as exc:
        return {"name": planned.point.name, "reason": "failed", "error": str(exc)}


def _quiet_worker(threads: int) -> None:
    """A worker ignores Ctrl-C while it waits (a training run catches it, saves and ends)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def run_points(planned: list[Planned], directory: Path, jobs: int, threads: int,
               done: Callable[[Planned, dict], None], running: Callable[[list[str]], None]) -> bool:
    """Train the points that need it, ``jobs`` at a time; ``running(names)`` when that changes,
    ``done(planned, result)`` after each. False when the grid was interrupted (a rerun goes on)."""
    todo = [p for p in planned if p.action != "skip"]
    if jobs <= 1 or len(todo) <= 1:
        for item in todo:
            running([item.point.name])
            try:
                result = train_point(str(directory), item)
            except KeyboardInterrupt:
                return False
            done(item, result)
            if result["reason"] == "interrupted":
                return False
        return True
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn"),
                             initializer=_quiet_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(train_point, str(directory), item): item for item in todo}
        try:
            for future in as_completed(futures):
                done(futures[future], future.result())
                running([item.point.name for f, item in futures.items() if f.running()])
        except KeyboardInterrupt:  # the running points save and end: their workers got the Ctrl-C too
            pool.shutdown(wait=True, cancel_futures=True)
            return False
        except BrokenProcessPool:  # a worker was killed: its point resumes at the next run
            return False
    return not any(f.result()["reason"] == "interrupted" for f in futures)
