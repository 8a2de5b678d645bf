"""The sampling screen, driven with Pilot against a fake model."""

import asyncio
import json
import threading

from textual.worker import WorkerCancelled

from charforge.tui.app import CharforgeApp
from tui_fakes import FakeModels
from charforge.tui.screens.sample import SampleScreen
from charforge.sampling.settings import Settings
from charforge.tui.widgets.sample_card import SampleCard

SIZE = (110, 30)


def make_app(models, **kw):
    return CharforgeApp(lambda: SampleScreen(models, **kw))


async def loaded(pilot):
    for _ in range(100):
        if pilot.app.screen.model is not None:
            return
        await pilot.pause(0.02)
    raise AssertionError("the model never loaded")


async def finished(pilot):
    """Wait for the loading and generating threads; a stopped or replaced one counts as finished."""
    for worker in list(pilot.app.workers):
        try:
            await worker.wait()
        except WorkerCancelled:
            pass
    await pilot.pause()


def cards(app):
    return list(app.screen.query(SampleCard))


def test_temperature_keys_clamp_to_the_valid_range(tmp_path):
    async def go():
        app = make_app(FakeModels(tmp_path), settings=Settings(temperature=0.3, length=300))
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            screen = app.screen
            knob = screen.query_one("#knob-temperature")
            await pilot.press("down", "down", "down", "down", "down")
            assert screen.settings.temperature == 0.0
            assert "0.0 (greedy)" in str(knob.render())
            await pilot.press("up", "up")
            assert screen.settings.temperature == 0.2
            screen.settings = Settings(temperature=4.8, length=300)
            await pilot.press("up", "up", "up", "up")
            assert screen.settings.temperature == 5.0 and "5.0" in str(knob.render())
            await pilot.press("down")
            assert screen.settings.temperature == 4.9
            # The other knobs take left/right when focused (tab moves through them).
            screen.query_one("#knob-top_p").focus()
            await pilot.press("left", "left")
            assert screen.settings.top_p == 0.9
            screen.query_one("#knob-length").focus()
            await pilot.press("shift+right")
            assert screen.settings.length == 400

    asyncio.run(go())


def test_a_prompt_streams_text_labelled_with_its_settings(tmp_path):
    models = FakeModels(tmp_path, delay=0.01)

    async def go():
        app = make_app(models, settings=Settings(temperature=0.7, length=120), seed=3)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press(*"Once")
            # Enter would wait (as Pilot does) until the screen is idle, i.e. the end of the stream;
            # submitting directly lets the test look while the text is still coming in.
            await app.screen.query_one("#prompt").action_submit()
            await asyncio.sleep(0.3)
            card = cards(app)[0]
            assert card.prompt == "Once" and not card.done
            assert len(card.continuation) < 120  # it arrives in pieces, as it is generated
            await finished(pilot)
            assert card.done and len(card.continuation) == 120 and len(card.parts) > 3
            assert card.continuation == "".join(models.text[(3 + i) % len(models.text)] for i in range(120))
            assert "best · step 500 · T 0.7" in card.border_title and "seed 3" in card.border_title
            assert card.border_subtitle == "120 chars"

    asyncio.run(go())


def test_escape_stops_a_generation_and_samples_stay_for_comparison(tmp_path):
    gate = threading.Event()
    models = FakeModels(tmp_path, gate=gate)

    async def go():
        app = make_app(models, settings=Settings(length=5000))
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("h", "i", "enter")
            await pilot.pause(0.1)
            assert app.screen.generating
            await pilot.press("escape")
            gate.set()
            await finished(pilot)
            first = cards(app)[0]
            assert first.done and len(first.continuation) < 5000
            assert first.border_subtitle.startswith("stopped after")
            assert not app.screen.generating
            # Regenerate: same prompt, the current settings, a new card below the first.
            app.screen.settings, app.screen.seed = Settings(temperature=1.5, length=30), 9
            await pilot.press("ctrl+r")
            await finished(pilot)
            assert len(cards(app)) == 2
            second = cards(app)[1]
            assert second.prompt == "hi" and len(second.continuation) == 30 and "T 1.5" in second.border_title
            assert first.text.startswith("hi")  # still there

    asyncio.run(go())


def test_save_and_copy_the_latest_sample(tmp_path):
    async def go():
        app = make_app(FakeModels(tmp_path), settings=Settings(length=40), seed=1)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("x", "enter")
            await finished(pilot)
            text = cards(app)[0].text
            await pilot.press("ctrl+s")
            await pilot.press("ctrl+y")
            assert (tmp_path / "sample-001.txt").read_text() == text
            index = json.loads((tmp_path / "samples.jsonl").read_text())
            assert index["file"] == "sample-001.txt" and "seed 1" in index["label"]
            assert {k: index[k] for k in ("temperature", "top_k", "top_p", "length", "seed", "checkpoint")} == {
                "temperature": 1.0, "top_k": 0, "top_p": 1.0, "length": 40, "seed": 1, "checkpoint": "best"}
            assert index["prompt"] == "x" and index["stopped"] is False
            assert app.clipboard == text

    asyncio.run(go())


def test_picking_another_checkpoint_loads_it(tmp_path):
    models = FakeModels(tmp_path)

    async def go():
        app = make_app(models)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            app.screen.query_one("#checkpoint").value = "latest"
            await finished(pilot)
            assert models.loaded == ["best", "latest"]
            assert app.screen.sub_title == "latest · step 500"

    asyncio.run(go())


def test_at_80_by_24_every_label_keeps_its_seed(tmp_path):
    models = FakeModels(tmp_path, choices=("step-00012000", "best"))

    async def go():
        app = make_app(models, settings=Settings(temperature=0.8, top_k=40, top_p=0.9, length=30), seed=2147483647)
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("a", "enter")
            await finished(pilot)
            card = cards(app)[0]
            title = str(card.border_title)
            # the longest form that fits the border, else the one that starts with the seed
            assert "seed 2147483647" in title
            assert len(title) <= card.size.width - 4 or title.startswith("seed 2147483647")
            assert "seed 2147483647" in card.label and "top-k 40" in card.label  # the full label, saved
            await pilot.press("ctrl+s")
            index = json.loads((tmp_path / "samples.jsonl").read_text())
            assert index["label"] == card.label and index["seed"] == 2147483647
            assert index["checkpoint"] == "step-00012000" and index["top_k"] == 40

    asyncio.run(go())
