"""End to end: a tiny real training run under the TUI, headless, in a child process.

It pauses the run (stop-and-save), resumes it from the checkpoint, lets it finish, samples
from it with "sample now", opens the sampling screen on it, and quits.
"""

import asyncio
import random

from charforge.tui.app import CharforgeApp
from charforge.tui.screens.train import TrainScreen
from charforge.tui.sources.process import TrainProcess
from charforge.tui.widgets.loss_plot import LossPlot
from charforge.tui.widgets.sample_card import SampleCard
from charforge.tui.widgets.sample_log import SampleLog


async def wait_until(pilot, condition, timeout=60.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what} (state {pilot.app.screen.state})"
        await pilot.pause(0.05)


def test_tiny_training_under_the_tui(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARFORGE_CACHE", str(tmp_path / "cache"))
    rng = random.Random(0)
    words = "the cat sat on a mat and the dog ran to the fox".split()
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(10)) for _ in range(300)))
    runs_dir = tmp_path / "runs"
    args = [str(corpus), "--hidden-size", "16", "--steps", "600", "--batch-size", "8", "--seq-len", "32",
            "--log-every", "10", "--eval-every", "200", "--sample-length", "40", "--device", "cpu",
            "--runs-dir", str(runs_dir)]
    source = TrainProcess(args, runs_dir=runs_dir)

    async def go():
        app = CharforgeApp(lambda: TrainScreen(source, poll_interval=0.05, redraw_interval=0.2))
        async with app.run_test(size=(120, 36)) as pilot:
            screen = app.screen
            await wait_until(pilot, lambda: screen.history.step > 0, what="the first steps")
            assert screen.state == "running" and source.run_dir == (runs_dir / "tiny-lstm").resolve()
            await pilot.press("p")
            await wait_until(pilot, lambda: screen.state == "paused", what="the pause")
            paused_at = screen.history.step
            assert paused_at < 600 and screen.history.last_checkpoint["step"] == paused_at
            await pilot.press("p")  # resume: it starts once the paused child has exited
            await wait_until(pilot, lambda: screen.state in ("ended", "failed"), what="the end")
            assert screen.state == "ended", screen.history.error
            history = screen.history
            assert history.ended == "budget spent" and history.step == 600
            steps = [s for s, _ in history.train]
            assert steps == sorted(steps) and steps[-1] == 600 and paused_at in steps
            assert [s.step for s in history.samples][-3:] == [200, 400, 600]
            plot = screen.query_one(LossPlot)
            await wait_until(pilot, lambda: plot.train and plot.train[-1][0] == 600, what="the plot")
            log = screen.query_one(SampleLog)
            text = lambda: "\n".join(line.text for line in log.lines)  # noqa: E731
            assert "paused at step" in text() and "the run ended at step 600: budget spent" in text()

            await pilot.press("n")  # sample now: the latest checkpoint, loaded in this process
            await wait_until(pilot, lambda: "sample now · latest · step 600" in text(), what="sample now")

            await pilot.press("i")  # the sampling screen on this run
            sampler = app.screen
            await wait_until(pilot, lambda: sampler.model is not None, what="the model")
            sampler.action_nudge("length", -25)  # 50 characters
            await pilot.press(*"the ", "enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            card = sampler.query_one(SampleCard)
            assert card.done and card.prompt == "the " and len(card.continuation) == 50
            await pilot.press("escape")  # nothing generating: back to the training screen
            assert app.screen is screen
            await pilot.press("q")
        assert app.return_value == f"done at step 600. Sample it: charforge sample {source.run_dir} --tui"

    asyncio.run(go())
