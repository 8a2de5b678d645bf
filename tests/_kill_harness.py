"""SIGKILL `charforge train` at random moments, many times, checking what is left on disk each time.

Run by tests/test_reliability.py as ``python _kill_harness.py RUNS_DIR CORPUS KILLS SEED``; prints
one JSON report. Importing torch costs seconds, so this process imports charforge once and then
forks: each child runs the real command line (``charforge train``, fresh, then ``--resume``),
saving a checkpoint at every step, and is SIGKILLed after a random delay. After each kill the
parent loads ``latest.safetensors`` (it must load, and its step must never go back) and notes
whether the kill landed inside a save (a temporary file was left behind). At the end it trains
an uninterrupted reference run to the same step in this process, for the test to compare.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

SETTINGS = {"cell": "lstm", "hidden_size": 32, "batch_size": 4, "seq_len": 16, "steps": 100_000,
            "eval_every": 1, "log_every": 1, "sample_length": 0, "dropout": 0.1, "warmup": 5,
            "device": "cpu", "seed": 7, "keep_checkpoints": 2}
FLAGS = {"keep_checkpoints": "--keep"}


def cli_args(settings: dict) -> list[str]:
    args = []
    for key, value in settings.items():
        args += [FLAGS.get(key, "--" + key.replace("_", "-")), str(value)]
    return args


def run_child(args: list[str]) -> None:
    """In the forked child: the real command line, then exit without running the parent's cleanup."""
    from charforge.cli import cli

    code = 0
    try:
        cli.main(args, prog_name="charforge", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported through the exit status
        import traceback

        traceback.print_exc()
        code = 3
    finally:
        os._exit(code)


def main() -> None:
    runs, corpus, kills, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import torch

    torch.set_num_threads(1)  # no thread pool in the parent, so forking is safe
    import charforge.trainer  # noqa: F401 - imported once, here, for every child

    from charforge.plugins import make_plugin_manager

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: seconds
    make_plugin_manager()  # imports every plugin module
    from charforge.runs.checkpoint import load_checkpoint

    run = runs / "killed"
    folder = run / "checkpoints"
    latest = folder / "latest.safetensors"
    fresh = ["train", corpus, *cli_args(SETTINGS), "--runs-dir", str(runs), "--name", "killed", "-q"]
    rng = random.Random(seed)
    report = {"kills": 0, "exited": [], "mid_save": 0, "steps": [], "errors": []}
    started = time.perf_counter()
    startup, per_step = calibrate(fresh, folder)
    report["startup_s"], report["step_s"] = round(startup, 3), round(per_step, 4)
    last_step = load_checkpoint(latest).meta["step"]
    for i in range(kills):
        if latest.exists():
            args = ["train", "--resume", str(run), "-q"]
        else:  # killed before its first checkpoint: start again
            shutil.rmtree(run, ignore_errors=True)
            args = fresh
        pid = os.fork()
        if pid == 0:
            run_child(args)
        # from before the run is set up to a few checkpoints into it
        time.sleep(rng.uniform(0.5 * startup, startup + 4 * per_step))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            report["kills"] += 1
        else:
            report["exited"].append(os.WEXITSTATUS(status))
        if folder.is_dir() and any(p.name.endswith(f".tmp{pid}") for p in folder.iterdir()):
            report["mid_save"] += 1  # the kill landed between opening and renaming a checkpoint
        if latest.exists():
            try:
                step = load_checkpoint(latest).meta["step"]
            except Exception as exc:  # noqa: BLE001 - the test fails with this message
                report["errors"].append(f"after kill {i}: latest.safetensors does not load: {exc}")
                break
            if step < last_step:
                report["errors"].append(f"after kill {i}: the checkpoint went back from {last_step} to {step}")
            last_step = step
        report["steps"].append(last_step)
    report["kill_seconds"] = round(time.perf_counter() - started, 2)
    report["final_step"] = last_step
    if last_step:
        report["reference"] = str(reference_run(runs, corpus, last_step))
    print(json.dumps(report))


def calibrate(fresh: list[str], folder: Path) -> tuple[float, float]:
    """(seconds from fork to the first checkpoint, seconds per step after it) on this machine, now.

    A first child runs until it has saved a few checkpoints; the random delays of the kills are
    scaled by what it measured, so that they land during start-up, steps and saves alike.
    """
    latest = folder / "latest.safetensors"
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        run_child(fresh)
    first = None
    while True:
        time.sleep(0.005)
        if first is None and latest.exists():
            first = time.perf_counter()
        if first is not None and len(list(folder.glob("step-*.safetensors"))) >= 2 \
                and time.perf_counter() - first > 0.2:
            break
        if time.perf_counter() - t0 > 60:
            raise SystemExit("the calibration run saved no checkpoint in 60 s")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    now = time.perf_counter()
    from charforge.runs.checkpoint import load_checkpoint

    steps = max(load_checkpoint(latest).meta["step"] - 1, 1)
    return first - t0, (now - first) / steps


def reference_run(runs: Path, corpus: str, stop_at: int) -> Path:
    """The same training, uninterrupted, stopped at ``stop_at``: its latest checkpoint."""
    from charforge.config import TrainConfig
    from charforge.hookspecs import hookimpl
    from charforge.plugins import make_plugin_manager
    from charforge.trainer import Trainer

    class StopAt:
        @hookimpl
        def on_step_end(self, run, step):
            if step >= stop_at:
                run.request_stop("reference")

    pm = make_plugin_manager(extra=[StopAt()], block=["console"])
    trainer = Trainer(TrainConfig(corpus=corpus, **SETTINGS), pm=pm, runs_root=runs, name="reference")
    trainer.run()
    return trainer.run_dir / "checkpoints" / "latest.safetensors"


if __name__ == "__main__":
    main()
