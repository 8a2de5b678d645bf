"""The training screen, driven with Pilot against scripted event sources."""

import asyncio
import json
import time

from charforge.tui.app import CharforgeApp
from tui_fakes import ScriptedSource, scripted_run, step_event
from charforge.tui.screens.train import NO_CHECKPOINT, TrainScreen
from charforge.tui.sources.tail import AttachedRun
from charforge.tui.widgets.figures import Figures
from charforge.tui.widgets.loss_plot import LossPlot
from charforge.tui.widgets.sample_log import SampleLog

SIZE = (120, 36)


def make_app(source, **kw):
    return CharforgeApp(lambda: TrainScreen(source, poll_interval=0.05, redraw_interval=0.1, **kw))


async def settle(pilot, seconds=0.15):
    """Let timers fire and the plot's build thread finish."""
    await pilot.pause(seconds)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def figures_text(app) -> str:
    return str(app.screen.query_one(Figures).render())


def log_text(app) -> str:
    return "\n".join(line.text for line in app.screen.query_one(SampleLog).lines)


def test_metrics_arriving_move_the_plot_and_figures():
    source = ScriptedSource(scripted_run(100))

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen, plot = app.screen, app.screen.query_one(LossPlot)
            assert screen.state == "running" and screen.history.step == 100
            assert "100" in figures_text(app) and "123k" in figures_text(app)
            first, builds = plot.text, plot.builds
            assert builds >= 1 and "train" in first
            source.push(*(step_event(s, total=1000, loss=0.5) for s in range(110, 400, 10)))
            await settle(pilot, 0.3)
            assert screen.history.step == 390 and "390" in figures_text(app)
            assert plot.builds > builds and plot.text != first
            assert plot.train[-1] == (390, 0.5)
            assert "39%" in str(screen.query_one("#bar").render()) or screen.history.progress == 0.39
            assert "step 100" in log_text(app)  # the validation's sample
            await pilot.press("b")
            await settle(pilot, 0.3)
            assert plot.unit == "bits/char" and plot.border_title == "loss (bits/char)"
            assert abs(plot.train[-1][1] - 0.5 / 0.693147) < 1e-3

    asyncio.run(go())


def test_pause_resume_and_stop_reach_the_source():
    source = ScriptedSource(scripted_run(50))

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = app.screen
            await pilot.press("p")
            assert source.calls[-1] == "pause" and screen.state == "pausing"
            source.push({"event": "checkpoint", "step": 50, "kind": "latest"},
                        {"event": "end", "reason": "interrupted", "step": 50})
            await settle(pilot)
            assert screen.state == "paused" and "paused at step 50" in log_text(app)
            assert "paused" in screen.sub_title
            await pilot.press("p")
            assert source.calls[-1] == "resume" and screen.state == "resuming"
            source.push({"event": "start", "step": 50, "config": {"steps": 1000}}, step_event(60))
            await settle(pilot)
            assert screen.state == "running" and screen.history.step == 60
            await pilot.press("s")
            assert source.calls[-1] == "stop" and screen.state == "stopping"
            source.push({"event": "end", "reason": "interrupted", "step": 60})
            await settle(pilot)
            assert screen.state == "ended"
            await pilot.press("p")  # nothing runs any more: the key does nothing
            assert source.calls.count("pause") == 1

    asyncio.run(go())


def test_quitting_a_run_the_tui_started_stops_it_and_waits_for_the_save():
    source = ScriptedSource(scripted_run(30))

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("q")
            assert source.calls[-1] == "stop" and app.screen.state == "quitting"
            assert app.is_running
            source.push({"event": "checkpoint", "step": 30, "kind": "latest"},
                        {"event": "end", "reason": "interrupted", "step": 30})
            await settle(pilot)
        assert app.return_value.startswith("stopped at step 30; saved")
        assert source.calls[-1] == "close"

    asyncio.run(go())


def test_quitting_while_attached_leaves_the_run_going(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in scripted_run(40)))

    async def go():
        app = make_app(AttachedRun(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.screen.state == "running"
            assert app.screen.check_action("pause", ()) is False  # read-only: no controls shown
            await pilot.press("q")
        assert app.return_value.endswith(f"goes on training. Follow it again: charforge watch {tmp_path}")

    asyncio.run(go())


def test_attaching_to_a_finished_run_shows_its_history(tmp_path):
    events = scripted_run(1000) + [{"event": "end", "reason": "budget spent", "step": 1000}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))

    async def go():
        app = make_app(AttachedRun(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = app.screen
            assert screen.state == "ended" and "budget spent" in screen.sub_title
            assert len(screen.history.train) == 100 and len(screen.history.val) == 10
            plot = screen.query_one(LossPlot)
            assert plot.builds >= 1 and len(plot.train) <= plot.content_size.width
            assert "1,000" in figures_text(app)
            text = log_text(app)
            assert "step 100 · validation" in text and "step 1000 · validation" in text
            assert "the run ended at step 1,000: budget spent" in text

    asyncio.run(go())


def test_a_failure_is_shown():
    source = ScriptedSource([{"event": "error", "message": "corpus nope.txt does not exist."}])

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.screen.state == "failed"
            assert "training failed: corpus nope.txt does not exist." in log_text(app)

    asyncio.run(go())


def test_sample_now_writes_to_the_log():
    source = ScriptedSource(scripted_run(100))
    asked = []

    def sample_now(run_dir):
        asked.append(run_dir)
        return "sample now · latest · step 100", "[bold]not markup[/bold] just text"

    async def go():
        app = make_app(source, sample_now=sample_now)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("n")
            await settle(pilot)
            assert [str(p) for p in asked] == ["runs/fake"]
            assert "sample now · latest · step 100" in log_text(app)
            assert "[bold]not markup[/bold] just text" in log_text(app)

    asyncio.run(go())


def test_ui_lag_while_events_stream_in():
    """Keys reach the screen quickly while a fast run streams events and the plot keeps redrawing."""
    source = ScriptedSource(scripted_run(10))

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            for i in range(10):
                source.push(*(step_event(s) for s in range(20 + 50 * i, 70 + 50 * i, 10)))
                await pilot.press("b")
                await pilot.pause(0.05)
            lag = app.lag.summary()["key_to_screen_ms"]
            assert lag["n"] >= 10
            assert lag["p50"] < 50, lag

    asyncio.run(go())


def test_detach_leaves_the_run_training():
    source = ScriptedSource(scripted_run(30))
    source.can_detach = True

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("d")
        assert source.calls[-2:] == ["detach", "close"] and "stop" not in source.calls
        assert app.return_value == "training goes on in the background. Follow it: charforge watch runs/fake"

    asyncio.run(go())


def progress_text(app) -> str:
    return str(app.screen.query_one("#eta").render())


def test_the_clock_ticks_between_events_and_stands_still_once_ended():
    now = time.time()
    source = ScriptedSource([
        {"event": "start", "step": 0, "time": now - 3, "config": {"steps": 1000}},
        {**step_event(10), "elapsed": 40.0, "eta": 600.0, "time": now - 2}])

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            first = progress_text(app)
            assert "elapsed 0:4" in first and "ETA 9:5" in first
            await pilot.pause(2.2)  # no event meanwhile: the clock and the ETA move on alone
            later = progress_text(app)
            assert later != first and "elapsed 0:4" in later and "ETA 9:5" in later
            source.push({"event": "end", "reason": "interrupted", "step": 10, "time": time.time()})
            await settle(pilot)
            ended = progress_text(app)
            await pilot.pause(1.2)
            assert progress_text(app) == ended and "elapsed 0:4" in ended  # as at the end event

    asyncio.run(go())


def test_validating_shows_between_its_start_and_its_result():
    source = ScriptedSource(scripted_run(100))

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "validating" not in progress_text(app)
            source.push({"event": "validation_start", "step": 100, "full": True, "windows": 12})
            await settle(pilot)
            assert "validating (all held-out text)" in progress_text(app)
            source.push({"event": "validation", "step": 100, "val_loss": 1.1, "full": True, "sample": "x"})
            await settle(pilot)
            assert "validating" not in progress_text(app)

    asyncio.run(go())


def test_unknown_or_damaged_events_never_break_the_screen():
    source = ScriptedSource(scripted_run(50))

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            source.push({"event": "from the future", "step": 60}, {"event": "step", "step": 60, "loss": "?"},
                        {"event": "step", "step": 60, "loss": 1.0, "accuracy": "most", "chars_per_s": "fast",
                         "elapsed": "long", "progress": None},
                        {"event": "validation", "val_loss": [], "sample": None},
                        {"event": "checkpoint", "kind": "latest", "step": "?"},
                        {"event": "start", "config": "none", "step": 50}, {"unnamed": True})
            await settle(pilot)
            assert app.is_running and app.screen.state == "running" and app.screen.history.step == 60
            source.push(step_event(70))
            await settle(pilot)
            assert "70" in figures_text(app)

    asyncio.run(go())


def test_at_80_by_24_the_figures_keep_best_and_saved():
    source = ScriptedSource(scripted_run(300))

    async def go():
        app = make_app(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            text = figures_text(app)
            assert "best val" in text and "saved" in text and "latest @ 300" in text
            assert "step" in text and "loss" in text

    asyncio.run(go())


def test_sample_keys_before_a_checkpoint_say_why_they_wait():
    source = ScriptedSource(scripted_run(20, eval_every=100), run_dir=None)
    asked, opened = [], []

    async def go():
        app = make_app(source, sample_now=lambda run: asked.append(run) or ("t", "x"),
                       open_sampler=lambda run: opened.append(run))
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await settle(pilot)
            assert app.screen.check_action("sample_now", ()) is None  # shown, dimmed
            await pilot.press("n")
            await pilot.press("i")
            await settle(pilot)
            messages = [n.message for n in app._notifications]
            assert messages.count(NO_CHECKPOINT) == 2 and not asked and not opened
            assert "no checkpoint yet" in NO_CHECKPOINT and "30 s" in NO_CHECKPOINT

    asyncio.run(go())


def test_the_loss_plot_labels_whole_steps_only():
    source = ScriptedSource([scripted_run(0)[0], step_event(1), step_event(2), step_event(3)])

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, 0.3)
            plot = app.screen.query_one(LossPlot)
            axis = [line for line in plot.text.splitlines() if line.strip().startswith("1")][-1]
            assert axis.split() == ["1", "2", "3"], plot.text

    asyncio.run(go())
