"""Snapshots of both screens with deterministic fake data (pytest-textual-snapshot).

After a deliberate change to the UI, look at the report, then refresh the SVGs with
``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from charforge.tui.app import CharforgeApp
from tui_fakes import FakeModels, ScriptedSource, scripted_run
from charforge.tui.screens.sample import SampleScreen
from charforge.tui.screens.train import TrainScreen
from charforge.sampling.settings import Settings


async def _settle(pilot):
    await pilot.pause(0.3)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_training_screen(snap_compare):
    source = ScriptedSource(scripted_run(600, total=1000))
    app = CharforgeApp(lambda: TrainScreen(source, poll_interval=0.05, redraw_interval=0.1))
    assert snap_compare(app, terminal_size=(120, 36), run_before=_settle)


def test_training_screen_paused_in_bits(snap_compare):
    source = ScriptedSource(scripted_run(400, total=1000))

    async def pause_then_bits(pilot):
        await _settle(pilot)
        await pilot.press("p")
        source.push({"event": "checkpoint", "step": 400, "kind": "latest"},
                    {"event": "end", "reason": "interrupted", "step": 400})
        await pilot.press("b")
        await _settle(pilot)

    app = CharforgeApp(lambda: TrainScreen(source, poll_interval=0.05, redraw_interval=0.1))
    assert snap_compare(app, terminal_size=(100, 30), run_before=pause_then_bits)


def test_sampling_screen(snap_compare, tmp_path):
    models = FakeModels(tmp_path, text="the cat sat on the mat. a dog ran in the fog. ")

    async def two_samples(pilot):
        while pilot.app.screen.model is None:
            await pilot.pause(0.02)
        prompt = pilot.app.screen.query_one("#prompt")
        prompt.cursor_blink = False
        await pilot.press(*"Hello ", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.press("up", "up", "up")
        pilot.app.screen.action_nudge("seed", 5)
        await pilot.press("ctrl+r")
        await _settle(pilot)

    app = CharforgeApp(lambda: SampleScreen(models, Settings(temperature=0.8, length=90), seed=2))
    assert snap_compare(app, terminal_size=(100, 28), run_before=two_samples)


def test_inspect_screen(snap_compare, tmp_path):
    from charforge.tui.screens.inspect import InspectScreen
    from tui_fakes import InspectingModels

    text = 'def main(argv):\n    """Run the "tool" on (argv[1:])."""\n    return run(argv[1:], quiet=True)\n'

    async def on_a_unit(pilot):
        while pilot.app.screen.result is None:
            await pilot.pause(0.02)
        pilot.app.screen.query_one("#inspect-source").cursor_blink = False
        await pilot.press("right", "right", "right", "right", "down", "down")
        await _settle(pilot)

    app = CharforgeApp(lambda: InspectScreen(InspectingModels(tmp_path), text))
    assert snap_compare(app, terminal_size=(100, 30), run_before=on_a_unit)
