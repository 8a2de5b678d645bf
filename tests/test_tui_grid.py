"""The grid screen (``charforge watch runs/GRID``), driven with Pilot against scripted grids, and
``charforge watch`` choosing it for a grid directory made by hand (no training)."""

import asyncio
import json
import math
import statistics

import pytest
from click.testing import CliRunner

from charforge.experiments.grid import Grid
from charforge.experiments.summary import configurations, markdown, point_figures
from charforge.tui.app import CharforgeApp
from charforge.experiments.curves import band
from charforge.tui.grid_history import STALE_AFTER, GridHistory
from charforge.tui.screens.grid import GridScreen
from charforge.tui.sources.grid import GridDirectory, GridSource
from charforge.tui.widgets.grid_plot import GridPlot
from charforge.tui.widgets.grid_points import GridProgress, PointList
from charforge.tui.widgets.grid_table import GridTable, parse_markdown

SIZE = (120, 36)
NOW = 1000.0  # the clock the screens get, and the time of every scripted event
GRID = Grid("faith", {"steps": 100}, {"cell": ["rnn", "lstm"], "hidden_size": [8, 16]}, [1, 2])
A, B, C, D = "cell=rnn,hidden-size=8", "cell=rnn,hidden-size=16", "cell=lstm,hidden-size=8", "cell=lstm,hidden-size=16"


class ScriptedGrid(GridSource):
    """A grid whose points' events are handed out as given (all at once, or as ``push`` adds them)."""

    def __init__(self, grid=GRID, events=None, directory="runs/GRID"):
        self.grid, self.directory = grid, directory
        self.pending = {name: list(e) for name, e in (events or {}).items()}
        self.calls = []

    def push(self, name, *events):
        self.pending.setdefault(name, []).extend(events)

    def poll(self):
        out, self.pending = {k: v for k, v in self.pending.items() if v}, {}
        return out

    def start(self):
        self.calls.append("start")

    def close(self):
        self.calls.append("close")


def loss_at(step, seed, hidden):
    return 1.0 + 2.0 * math.exp(-step / (30 + hidden)) + 0.05 * seed


def point_events(hidden, seed, upto, total=100, end=True, every=10, time=NOW):
    """A believable point's events up to step ``upto`` (ended by its budget when it reaches it)."""
    events = [{"event": "start", "step": 0, "parameters": 100 * hidden, "config": {"steps": total}}]
    for step in range(every, upto + 1, every):
        events.append({"event": "step", "step": step, "loss": loss_at(step, seed, hidden), "accuracy": 0.2 + step / 500,
                       "elapsed": step * 0.01 * seed, "progress": step / total})
    if end and upto >= total:
        events.append({"event": "end", "reason": "budget spent", "step": upto})
    return [{**event, "time": time} for event in events]


def scripted_events():
    """A: both seeds done; B: one done, one at step 50; C: one at step 30, one failed; D: not started."""
    return {
        f"{A},seed=1": point_events(8, 1, 100), f"{A},seed=2": point_events(8, 2, 100),
        f"{B},seed=1": point_events(16, 1, 100), f"{B},seed=2": point_events(16, 2, 50),
        f"{C},seed=1": point_events(8, 1, 30),
        f"{C},seed=2": [{"event": "start", "step": 0, "time": NOW}, {"event": "error", "message": "no", "time": NOW}],
    }


def make_app(source, clock=lambda: NOW):
    return CharforgeApp(lambda: GridScreen(source, poll_interval=0.05, redraw_interval=0.1, clock=clock))


async def settle(pilot, seconds=0.3):
    """Let the timers fire and the plot's build thread finish."""
    await pilot.pause(seconds)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_one_line_per_configuration_the_table_and_the_status_counts():
    source = ScriptedGrid(events=scripted_events())

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = app.screen
            plot, table = screen.query_one(GridPlot), screen.query_one(GridTable)
            # one line per configuration that logged steps, the mean over its seeds
            assert list(plot.curves) == [A, B, C]
            assert dict(plot.curves[A])[10] == statistics.fmean([loss_at(10, 1, 8), loss_at(10, 2, 8)])
            assert dict(plot.curves[B])[100] == loss_at(100, 1, 16)  # past the running seed's end: the other
            assert plot.builds >= 1 and A in plot.text and C in plot.text
            assert len({plot.colours[c] for c in (A, B, C, D)}) == 4
            # the table: summary.md's cells, and how many seeds finished
            rows = table.row_cells()
            assert [row[1:5] for row in rows] == [["rnn", "8", "2", "2/2"], ["rnn", "16", "2", "1/2 · 1 running"],
                                                  ["lstm", "8", "2", "0/2 · 1 running"], ["lstm", "16", "2", "0/2"]]
            final = [loss_at(100, 1, 8), loss_at(100, 2, 8)]
            assert f"{statistics.fmean(final):.4f} ± {statistics.stdev(final):.4f}" in rows[0]
            header, expected = parse_markdown(markdown(configurations(
                [point_figures(p, _Events(scripted_events().get(p.name, [])), None) for p in GRID.points()],
                list(GRID.axes)), list(GRID.axes)))
            assert [row[:4] + row[5:] for row in rows] == [["━━", *row] for row in expected]
            assert table.row_count == 4 and str(table.columns[table.ordered_columns[4].key].label) == "done"
            # which points are where
            counts = str(screen.query_one(GridProgress).query_one("#counts").render())
            assert counts == "8 points: 3 finished · 2 running · 1 failed · 2 not started"
            points = screen.query_one(PointList).text
            assert f"✓ {A},seed=1" in points and f"✗ {C},seed=2" in points and f"· {D},seed=1" in points
            assert any(line.startswith(f"▶ {B},seed=2") and line.endswith("50%") for line in points.splitlines())

            # B's second seed goes on and finishes; C's first one moves
            builds = plot.builds
            source.push(f"{B},seed=2", *point_events(16, 2, 100)[6:])
            source.push(f"{C},seed=1", *point_events(8, 1, 60)[4:])
            await settle(pilot)
            assert table.row_cells()[1][4] == "2/2" and table.row_cells()[2][4] == "0/2 · 1 running"
            counts = str(screen.query_one(GridProgress).query_one("#counts").render())
            assert counts.startswith("8 points: 4 finished · 1 running")
            assert plot.builds > builds and plot.curves[C][-1][0] == 60

    asyncio.run(go())


class _Events:
    def __init__(self, events):
        self._events = events

    def events(self):
        return self._events


def test_bits_and_seconds_and_quitting_leaves_the_grid_going():
    source = ScriptedGrid(events=scripted_events())

    async def go():
        app = make_app(source)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            plot = app.screen.query_one(GridPlot)
            nats = dict(plot.curves[A])[100]
            await pilot.press("b")
            await settle(pilot)
            assert plot.unit == "bits/char" and "bits/char" in plot.border_title
            assert abs(dict(plot.curves[A])[100] - nats / math.log(2)) < 1e-9
            await pilot.press("t")
            await settle(pilot)
            assert plot.xlabel == "seconds" and not plot.whole_x and "seconds" in plot.border_title
            assert plot.curves[A][-1][0] == 2.0  # seed 2's elapsed at step 100 (seed 1 stops at 1.0)
            await pilot.press("q")
        assert app.return_value == ("runs/GRID goes on training (3 of 8 points finished). "
                                    "Follow it again: charforge watch runs/GRID")
        assert source.calls == ["start", "close"]  # nothing to stop: the grid trains on

    asyncio.run(go())


def test_a_point_silent_too_long_counts_as_stopped_and_curves_average_over_seeds():
    h = GridHistory(GRID)
    h.add(f"{A},seed=1", point_events(8, 1, 40))
    h.add(f"{A},seed=2", point_events(8, 2, 100))
    h.add("not-a-point", [{"event": "start", "step": 0}])
    h.add(f"{B},seed=1", ["junk", {"no": "event"}])
    assert h.status(f"{A},seed=1", now=1000.0 + STALE_AFTER - 1) == "running"
    assert h.status(f"{A},seed=1", now=1000.0 + STALE_AFTER + 1) == "stopped"
    assert h.status(f"{A},seed=2", now=1e12) == "finished"
    assert h.status(f"{B},seed=1") == "not started" and h.ignored == 3
    assert h.counts(now=1e12) == {"finished": 1, "running": 0, "stopped": 1, "failed": 0, "not started": 6}
    # each seed interpolated where the other logged, and left out past its own ends
    curve = band([[(0, 1.0), (10, 3.0)], [(5, 4.0), (20, 0.0)]])
    assert [x for x, *_ in curve] == [0, 5, 10, 20]
    assert [y for _, y, _, _ in curve] == pytest.approx([1.0, (2.0 + 4.0) / 2, (3.0 + 4.0 * 10 / 15) / 2, 0.0])
    assert [low for _, _, low, _ in curve] == pytest.approx([1, 2, 4 * 10 / 15, 0])
    assert [high for *_, high in curve] == pytest.approx([1, 4, 3, 0])
    # a resumed point's redone steps count once
    h.add(f"{B},seed=2", point_events(16, 2, 50, end=False) + [{"event": "start", "step": 30}]
          + point_events(16, 2, 60, end=False)[4:])
    assert [x for x, _ in h.curve(f"{B},seed=2")] == [10, 20, 30, 40, 50, 60]


def _write_grid(directory, events):
    GRID.save(directory)
    for name, lines in events.items():
        (directory / name).mkdir()
        (directory / name / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_watch_opens_the_grid_screen_on_a_grid_directory(monkeypatch, tmp_path):
    from charforge import cli
    from charforge.tui import commands
    from charforge.tui.screens.train import TrainScreen

    grid_dir = tmp_path / "runs" / "GRID"
    _write_grid(grid_dir, scripted_events())
    seen = []
    monkeypatch.setattr(commands, "run_app", lambda make_screen: seen.append(make_screen()))
    for target in (grid_dir, grid_dir / "grid.json", grid_dir / f"{A},seed=1"):
        result = CliRunner().invoke(cli.cli, ["watch", str(target)])
        assert result.exit_code == 0, result.output
    assert [type(s) for s in seen] == [GridScreen, GridScreen, TrainScreen]
    assert seen[0].source.directory == grid_dir == seen[1].source.directory
    assert seen[0].history.grid == GRID

    # the real source, on the screen: it reads what is there and follows the files as they grow
    running = grid_dir / f"{B},seed=2" / "metrics.jsonl"

    async def go():
        app = make_app(GridDirectory(grid_dir))
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            screen = app.screen
            assert screen.history.counts()["finished"] == 3
            assert screen.query_one(GridTable).row_cells()[1][4] == "1/2 · 1 running"
            with open(running, "a") as f:
                f.writelines(json.dumps(e) + "\n" for e in point_events(16, 2, 100)[6:])
            (grid_dir / f"{D},seed=1").mkdir()
            (grid_dir / f"{D},seed=1" / "metrics.jsonl").write_text(json.dumps(point_events(16, 1, 10)[0]) + "\n")
            await settle(pilot)
            assert screen.query_one(GridTable).row_cells()[1][4] == "2/2"
            assert screen.query_one(GridTable).row_cells()[3][4] == "0/2 · 1 running"
            assert screen.history.counts()["finished"] == 4

    asyncio.run(go())


def test_grid_screen_snapshot(snap_compare):
    source = ScriptedGrid(events=scripted_events())

    async def run_before(pilot):
        await settle(pilot)

    assert snap_compare(make_app(source), terminal_size=SIZE, run_before=run_before)
