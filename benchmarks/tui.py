"""Measure: does training keep its speed, and the UI its responsiveness, with training in a
child process or in a thread of the UI's process?

    python benchmarks/tui.py CORPUS [--hidden-size 128] [--steps 1500]

Runs the same training three ways: alone (``charforge train --quiet``), under the training
screen in a child process, and under it in a thread. The screen runs headless (it renders
everything but writes nothing to a terminal) while a key is pressed every 500 ms; the app's
lag probe reports how late its 50 ms timer fired (event-loop stalls) and how long each key
took to reach the screen. Training speed is the run's own characters per second of training.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from charforge.runs.directory import Run


def _speed(run_dir: Path) -> float:
    events = Run(run_dir).events()
    start = next(e for e in events if e["event"] == "start")
    c = start["config"]
    end = [e for e in events if e["event"] == "step"][-1]
    return end["step"] * c["batch_size"] * c["seq_len"] / end["elapsed"]


async def _under_ui(source, seconds_limit: float = 600) -> dict:
    from charforge.tui.app import CharforgeApp
    from charforge.tui.screens.train import TrainScreen

    app = CharforgeApp(lambda: TrainScreen(source))
    async with app.run_test(size=(120, 36)) as pilot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds_limit
        while app.screen.state not in ("ended", "failed") and loop.time() < deadline:
            await pilot.press("b")
            await asyncio.sleep(0.5)
        screen = app.screen
        result = {"state": screen.state, "error": screen.history.error, **app.lag.summary()}
        run_dir = source.run_dir
    result["chars_per_s"] = round(_speed(Path(run_dir)))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--modes", default="alone,process,thread")
    ns = parser.parse_args(argv)
    train = ["--hidden-size", str(ns.hidden_size), "--steps", str(ns.steps), "--eval-every", "500",
             "--sample-length", "100", "--device", "cpu"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ns.modes.split(","):
            runs_dir = Path(tmp) / mode
            if mode == "alone":
                subprocess.run([sys.executable, "-m", "charforge", "train", ns.corpus, *train, "--quiet",
                                "--runs-dir", str(runs_dir), "--name", "r"], check=True)
                results[mode] = {"chars_per_s": round(_speed(runs_dir / "r"))}
            elif mode == "process":
                from charforge.tui.sources.process import TrainProcess

                source = TrainProcess([ns.corpus, *train, "--runs-dir", str(runs_dir), "--name", "r"],
                                      runs_dir=runs_dir, name="r")
                results[mode] = asyncio.run(_under_ui(source))
            elif mode == "thread":
                from charforge.config import TrainConfig
                from tui_thread import TrainThread

                config = TrainConfig(corpus=ns.corpus, hidden_size=ns.hidden_size, steps=ns.steps, eval_every=500,
                                     sample_length=100, device="cpu")
                results[mode] = asyncio.run(_under_ui(TrainThread(config, runs_dir=runs_dir, name="r")))
            print(mode, json.dumps(results[mode]), flush=True)
    print(json.dumps({"hidden_size": ns.hidden_size, "steps": ns.steps, **results}, indent=2))


if __name__ == "__main__":
    main()
