"""The inspect screen, driven with Pilot: against fake inspections, and once against a real model."""

import asyncio

import torch

from charforge.errors import CharforgeError
from charforge.sampling.settings import Settings
from charforge.tui import commands
from charforge.tui.app import CharforgeApp
from charforge.tui.models import CheckpointModels
from charforge.tui.screens.inspect import InspectScreen
from charforge.tui.screens.sample import SampleScreen
from charforge.tui.widgets.inspect_text import DIVERGING, SURPRISAL, InspectText, surprisal_styles
from charforge.tui.widgets.predictions import Predictions
from tui_fakes import InspectingModels

SIZE = (110, 34)
TEXT = "the cat sat on the mat.\nthe dog ran."


def make_app(models, text="", **kw):
    return CharforgeApp(lambda: InspectScreen(models, text, **kw))


async def inspected(pilot, text=None):
    """Wait until the screen shows the inspection of ``text`` (of anything, without one)."""
    for _ in range(300):
        result = getattr(pilot.app.screen, "result", None)
        if result is not None and (text is None or result.text == text):
            await pilot.pause()
            return result
        await pilot.pause(0.02)
    raise AssertionError("the text was never inspected")


def line_styles(widget: InspectText, y: int = 0) -> list:
    """(glyph, style) of every cell of a line of the coloured text, as it draws it."""
    return [(ch, seg.style) for seg in widget.render_line(y) for ch in seg.text]


def panel(app) -> str:
    return "\n".join(line.text for line in app.screen.query_one(Predictions).render_lines(
        app.screen.query_one(Predictions).region.reset_offset))


def test_typing_a_text_inspects_it_once_it_rests_and_colours_each_character(tmp_path):
    models = InspectingModels(tmp_path)

    async def go():
        app = make_app(models)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"ab ba")
            result = await inspected(pilot, "ab ba")
            assert models.models[0].inspected == ["ab ba"]  # typed quickly: one inspection, of the whole text
            widget = app.screen.query_one(InspectText)
            drawn = line_styles(widget)[:5]
            assert "".join(ch for ch, _ in drawn) == "ab ba"
            expected = surprisal_styles(result.bits)
            for (_, style), want in zip(drawn, expected):
                assert style.bgcolor == want.bgcolor
            assert len({str(style.bgcolor) for _, style in drawn}) > 1  # coloured, not uniform
            assert f"{result.bits_per_char:.3f} bits/char" in str(app.screen.query_one("#inspect-status").render())
            assert widget.border_title == "surprisal · bits"

    asyncio.run(go())


def test_arrow_keys_move_the_cursor_and_the_panel_shows_what_the_model_expected_there(tmp_path):
    async def go():
        app = make_app(InspectingModels(tmp_path), TEXT)
        async with app.run_test(size=SIZE) as pilot:
            result = await inspected(pilot, TEXT)
            widget = app.screen.query_one(InspectText)
            assert app.screen.focused is widget and widget.cursor == 0
            await pilot.press("right", "right", "right", "right")
            assert widget.cursor == 4
            shown = panel(app)
            assert f"character 5 of {len(TEXT)}" in shown and f"{float(result.bits[4]):.2f} bits" in shown
            for char, p in result.predictions(4):
                assert f"{p:.3f}" in shown
            await pilot.press("left")
            assert widget.cursor == 3
            await pilot.press("end")
            assert widget.cursor == len(TEXT) - 1 and f"character {len(TEXT)} of {len(TEXT)}" in panel(app)
            await pilot.click("#inspect-text", offset=(5, 2))  # inside the border: line 2, column 5
            assert widget.cursor == TEXT.index("\n") + 1 + 4 and "'d'" in panel(app)
            await pilot.press("home", "left")
            assert widget.cursor == 0
            cursor_cell = line_styles(widget)[0][1]
            assert cursor_cell.reverse  # the cursor is drawn
            # the newline is drawn as a glyph ending the first line; the second line starts after it
            assert "".join(ch for ch, _ in line_styles(widget, 0)).rstrip().endswith("mat.↵")
            assert "".join(ch for ch, _ in line_styles(widget, 1)).startswith("the dog ran.")

    asyncio.run(go())


def test_up_and_down_switch_between_surprisal_and_units_and_the_title_says_which(tmp_path):
    async def go():
        app = make_app(InspectingModels(tmp_path), TEXT)
        async with app.run_test(size=SIZE) as pilot:
            result = await inspected(pilot, TEXT)
            widget = app.screen.query_one(InspectText)
            await pilot.press("right", "right", "down")
            assert widget.border_title == "layer 0 · h · unit 0 of 8"
            value = float(result.unit(0, 0, "h")[2])
            assert f"layer 0 · h · unit 0 = {value:+.3f}" in panel(app)
            # the colours are now the unit's: its most negative value the bluest, its largest the reddest
            values = result.unit(0, 0, "h")[:23]
            cells = line_styles(widget)
            assert cells[int(values.argmin())][1].bgcolor == DIVERGING[0].bgcolor
            assert cells[int(values.argmax())][1].bgcolor == DIVERGING[-1].bgcolor
            await pilot.press("right_square_bracket")
            assert widget.border_title == "layer 0 · h · unit 1 of 8"
            await pilot.press("up", "up", "up")
            assert widget.border_title == "layer 0 · c · unit 7 of 8"  # before surprisal: the last unit
            await pilot.press("s")
            assert widget.border_title == "surprisal · bits"
            assert line_styles(widget)[5][1].bgcolor in {s.bgcolor for s in SURPRISAL}

    asyncio.run(go())


def test_n_steps_through_the_most_surprising_characters(tmp_path):
    async def go():
        app = make_app(InspectingModels(tmp_path), TEXT)
        async with app.run_test(size=SIZE) as pilot:
            result = await inspected(pilot, TEXT)
            widget = app.screen.query_one(InspectText)
            spans = result.surprising_spans(10)
            await pilot.press("n")
            start, end, _ = spans[0]
            assert widget.cursor == start + int(result.bits[start:end].argmax())
            await pilot.press("n")
            start, end, _ = spans[1]
            assert widget.cursor == start + int(result.bits[start:end].argmax())

    asyncio.run(go())


def test_the_sampling_screen_opens_it_on_its_model_and_latest_sample(tmp_path):
    models = InspectingModels(tmp_path)

    async def go():
        app = CharforgeApp(lambda: SampleScreen(models, Settings(length=30), seed=4))
        async with app.run_test(size=SIZE) as pilot:
            while app.screen.model is None:
                await pilot.pause(0.02)
            await pilot.press(*"Hi", "enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            sample = app.screen.query("SampleCard").last().text
            await pilot.press("ctrl+n")
            assert isinstance(app.screen, InspectScreen)
            result = await inspected(pilot, sample)
            assert app.screen.query_one("#inspect-source").text == sample and len(result) == 32
            assert models.loaded == ["best"]  # the sampling screen's model, not loaded again
            await pilot.press("escape")
            assert isinstance(app.screen, SampleScreen)

    asyncio.run(go())


def test_an_error_from_inspecting_is_a_notification_and_the_screen_carries_on(tmp_path):
    models = InspectingModels(tmp_path, error=CharforgeError("the text is too long to inspect"))

    async def go():
        app = make_app(models, "abc")
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(200):
                if app._notifications:
                    break
                await pilot.pause(0.02)
            messages = [n.message for n in app._notifications]
            assert messages == ["could not inspect the text: the text is too long to inspect"]
            assert isinstance(app.screen, InspectScreen) and app.screen.result is None
            await pilot.press("tab", "x")  # still answering keys
            assert app.screen.is_current

    asyncio.run(go())


def test_characters_the_model_never_saw_are_left_out_and_counted(tmp_path):
    async def go():
        app = make_app(InspectingModels(tmp_path, alphabet="abc "), "a€b€ c")
        async with app.run_test(size=SIZE) as pilot:
            await inspected(pilot, "ab c")
            assert "2 characters the model never saw left out" in str(
                app.screen.query_one("#inspect-status").render())

    asyncio.run(go())


def test_a_long_text_stays_quick_to_move_over(tmp_path):
    text = ("In the beginning was the text, and the text was long.\n" * 400)[:20000]

    async def go():
        app = make_app(InspectingModels(tmp_path), text)
        async with app.run_test(size=SIZE) as pilot:
            await inspected(pilot, text)
            widget = app.screen.query_one(InspectText)
            await pilot.press("right")  # the first full draw
            app.lag.keys.clear()
            await pilot.press(*["right"] * 10, "down", "pagedown", "pagedown", "end")
            assert widget.cursor == len(text) - 1 and widget.scroll_offset.y > 300  # scrolled to the cursor
            assert widget.border_title.startswith("layer 0 · h · unit 0")
            # from a key to the screen: redrawing the whole text at each key would take far longer
            keys = sorted(app.lag.keys)
            assert len(keys) == 14 and keys[len(keys) // 2] < 200

    asyncio.run(go())


def test_a_real_model_inspected_on_the_screen_matches_the_api(train, corpus_text, monkeypatch):
    """End to end: charforge.tui.commands.inspect on a trained run shows inspect_model's figures."""
    import charforge

    run_dir = train(steps=4).run_dir
    text = corpus_text[:60]
    screens = []
    monkeypatch.setattr(commands, "run_app", lambda make_screen: screens.append(make_screen))
    commands.inspect(str(run_dir), "latest", "cpu", text)
    screen = screens[0]()
    assert isinstance(screen, InspectScreen) and isinstance(screen.models, CheckpointModels)
    want = charforge.load(run_dir, device="cpu", which="latest").inspect(text)

    async def go():
        app = CharforgeApp(lambda: screen)
        async with app.run_test(size=SIZE) as pilot:
            got = await inspected(pilot, text)
            assert torch.allclose(got.losses, want.losses, atol=1e-5)
            assert torch.equal(got.top_ids, want.top_ids)
            assert got.traces.keys() == want.traces.keys() == {"0.h", "0.c", "0.gate.i", "0.gate.f", "0.gate.o"}
            await pilot.press("end", "down")
            assert app.screen.query_one(InspectText).border_title == "layer 0 · h · unit 0 of 32"
            assert f"{float(want.unit(0, 0)[-1]):+.3f}" in panel(app)

    asyncio.run(go())
