"""The plugin system: a third-party cell, broken plugins, name clashes, blocking, the listings.

A third-party package would publish a module under the ``charforge`` entry-point group; here
the same module object is built in the test and handed to ``make_plugin_manager(extra=[...])``
(or, for the command line, to a patched plugin-manager factory). Entry points are simulated by
patching the list :mod:`charforge.plugins` reads, with real modules written to a temporary folder.
"""

from __future__ import annotations

import json
import types

import pytest
import torch
from click.testing import CliRunner

from _cells import TinyCell
import charforge
import charforge.plugins as plugins_module
from charforge.runs.checkpoint import load_checkpoint
from charforge.sampling.loading import load_engine
from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.hookspecs import hookimpl
from charforge.plugins import Registry, make_plugin_manager
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.settings import Request, Settings
from charforge.trainer import Trainer

BUILTIN_CELLS = {"rnn", "lstm", "gru"}
BUILTIN_OPTIMIZERS = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
FAKE = "charforge_fake_cells"


class ClockCell(TinyCell):
    """A cell that takes timestamps, and records the ones the trainer gives it."""

    name = "clock"
    uses_time = True
    seen: list = []

    def forward(self, x, state, t=None):
        if self.training:
            ClockCell.seen.append(t.clone())
        return super().forward(x, state, t)


def cell_plugin(name: str = FAKE, cells=(TinyCell,), fail: Exception | None = None) -> types.ModuleType:
    """A plugin module, as a package would ship it: a ``register_cells`` hook implementation."""
    module = types.ModuleType(name)

    @hookimpl
    def register_cells(register):
        if fail is not None:
            raise fail
        for cell in cells:
            register(cell)

    module.register_cells = register_cells
    return module


@pytest.fixture
def cli_with(monkeypatch):
    """Run the real CLI with extra plugin objects added to every plugin manager it builds."""
    real = plugins_module.make_plugin_manager

    def invoke(args, extra=()):
        added = list(extra)

        def with_extra(extra=(), **kw):
            return real(extra=[*added, *extra], **kw)

        monkeypatch.setattr(plugins_module, "make_plugin_manager", with_extra)
        return CliRunner().invoke(cli, args, catch_exceptions=False)

    return invoke


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- a third-party cell ---------------------------------------------------------------------------

def test_extra_plugin_cell_is_in_the_registry():
    registry = Registry(make_plugin_manager(extra=[cell_plugin()]))
    provided = registry.get("cell", "tiny")
    assert provided.obj is TinyCell
    assert provided.provenance() == {"name": "tiny", "plugin": FAKE, "dist": None, "version": None}
    assert BUILTIN_CELLS <= set(registry.names("cell"))
    assert registry.get("cell", "lstm").provenance() == {
        "name": "lstm", "plugin": "lstm", "dist": "charforge", "version": charforge.__version__}


def test_plugins_command_lists_builtins_and_the_third_party_plugin(cli_with):
    result = cli_with(["plugins"], extra=[cell_plugin()])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert listed[FAKE] == {"name": FAKE, "distribution": None, "version": None,
                            "hooks": ["register_cells"], "provides": {"cell": ["tiny"]}, "blocked": False}
    for name in BUILTIN_CELLS:
        assert listed[name]["distribution"] == "charforge"
        assert listed[name]["version"] == charforge.__version__
        assert listed[name]["provides"] == {"cell": [name]}
        assert listed[name]["hooks"] == ["register_cells"]
    assert set(listed["optimizers"]["provides"]["optimizer"]) >= BUILTIN_OPTIMIZERS
    assert "faith" in listed["corpora"]["provides"]["corpus"]
    assert "on_step_end" in listed["console"]["hooks"]


def test_cells_command_shows_the_plugin_cell_with_its_options(cli_with):
    result = cli_with(["cells", "--json"], extra=[cell_plugin()])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["tiny"] == {"name": "tiny", "plugin": FAKE, "help": TinyCell.help, "uses_time": False,
                            "options": {"gain": {"default": 1.0, "type": "float",
                                                 "help": "scale of the recurrent input"}}}


def test_plugin_cell_trains_and_samples(train, quiet_pm):
    plugin = cell_plugin()
    trainer = train(extra=[plugin], cell="tiny", cell_options={"gain": "0.5"}, steps=6, hidden_size=16)
    assert trainer.step == 6 and trainer.config.cell_options == {"gain": 0.5}
    assert trainer.model.layers[0].gain == 0.5
    ckpt = load_checkpoint(trainer.run_dir, which="latest")
    assert ckpt.meta["cell"] == {"name": "tiny", "plugin": FAKE, "dist": None, "version": None}

    engine = load_engine(trainer.run_dir, device="cpu", extra=[plugin])
    model, vocab = engine.model, engine.vocab
    assert isinstance(model.layers[0], TinyCell)
    text = next(BatchGenerator(model, vocab).run([Request("The ", Settings(length=40))], seed=3)).text
    assert len(text) == 40 and set(text) <= set(vocab.chars)


def test_plugin_cell_through_the_command_line(cli_with, text_corpus, tmp_path):
    plugin = cell_plugin()
    runs = tmp_path / "runs"
    result = cli_with(["train", str(text_corpus), "--cell", "tiny", "-c", "gain", "0.8", "--hidden-size", "16",
                       "--steps", "4", "--batch-size", "2", "--seq-len", "16", "--sample-length", "10",
                       "--runs-dir", str(runs), "--name", "tiny-run", "-q"], extra=[plugin])
    assert result.exit_code == 0, result.output
    result = cli_with(["sample", str(runs / "tiny-run"), "--prime", "The", "--length", "25", "--seed", "1"],
                      extra=[plugin])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("The") and len(result.stdout) == len("The") + 25 + 1


def test_checkpoint_of_an_uninstalled_plugin_names_it(train, quiet_pm, runs_root):
    trainer = train(extra=[cell_plugin()], cell="tiny", steps=2, hidden_size=8)
    for attempt in (lambda: load_engine(trainer.run_dir, device="cpu"),
                    lambda: Trainer.resume(trainer.run_dir, {"steps": 4}, pm=quiet_pm())):
        with pytest.raises(CharforgeError) as info:
            attempt()
        assert FAKE in str(info.value) and "'tiny'" in str(info.value)
    result = CliRunner().invoke(cli, ["sample", str(trainer.run_dir), "--length", "5"])
    assert result.exit_code == 1 and FAKE in result.stderr and "Traceback" not in result.output


# -- time-aware cells -----------------------------------------------------------------------------

def test_time_cells_get_each_streams_character_positions(train):
    ClockCell.seen = []
    trainer = train(extra=[cell_plugin(cells=(ClockCell,))], cell="clock", steps=3, batch_size=2, seq_len=8,
                    hidden_size=8)
    assert trainer.model.uses_time
    assert len(ClockCell.seen) == 3
    for i, t in enumerate(ClockCell.seen):
        assert t.dtype == torch.float64 and t.shape == (2, 8)
        assert torch.equal(t, torch.arange(8 * i, 8 * (i + 1), dtype=torch.float64).expand(2, 8))


# -- training events ------------------------------------------------------------------------------

class Recorder:
    """An event plugin that takes only the arguments it needs, stops training and keeps state."""

    __name__ = "recorder"

    def __init__(self, stop_at=None):
        self.events, self.stop_at, self.loaded = [], stop_at, None

    @hookimpl
    def on_train_start(self, run):
        self.events.append(("start", run.step))

    @hookimpl
    def on_step_end(self, run, step):
        self.events.append(("step", step))
        if step == self.stop_at:
            run.request_stop("enough")

    @hookimpl
    def on_validation_end(self, step, sample):
        assert isinstance(sample, str)
        self.events.append(("validation", step))

    @hookimpl
    def on_checkpoint_save(self, kind, plugin_state):
        plugin_state["recorder"] = {"saved": len(self.events)}
        self.events.append(("save", kind))

    @hookimpl
    def on_checkpoint_load(self, plugin_state):
        self.loaded = plugin_state["recorder"]

    @hookimpl
    def on_train_end(self, reason):
        self.events.append(("end", reason))


def test_event_hooks_fire_in_order_and_a_plugin_can_stop_training(train, quiet_pm):
    recorder = Recorder(stop_at=3)
    trainer = train(extra=[recorder], steps=10, eval_every=2)
    assert trainer.step == 3
    assert recorder.events == [
        ("start", 0), ("step", 1), ("step", 2), ("validation", 2), ("save", "latest"), ("save", "best"),
        ("step", 3), ("validation", 3), ("save", "latest"), ("save", "best"), ("end", "enough")]
    again = Recorder()
    resumed = Trainer.resume(trainer.run_dir, {}, pm=quiet_pm([again]))
    assert again.loaded == {"saved": 8}  # what on_checkpoint_save stored in the latest checkpoint
    resumed.run()
    assert resumed.step == 10 and again.events[0] == ("start", 3) and again.events[-1] == ("end", "budget spent")


# -- broken plugins -------------------------------------------------------------------------------

BROKEN = {
    "import-raises": "raise RuntimeError('boom at import time')\n",
    "bad-hook-signature": ("from charforge.hookspecs import hookimpl\n\n@hookimpl\n"
                           "def register_cells(reg, extra_argument):\n    pass\n"),
    "register-raises": ("from charforge.hookspecs import hookimpl\n\n@hookimpl\n"
                        "def register_cells(register):\n    raise ValueError('boom in register_cells')\n"),
}


@pytest.mark.parametrize("source", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_entry_point_is_one_warning_and_the_rest_works(charforge_entry_points, capsys, source):
    charforge_entry_points("broken", source)
    registry = Registry(make_plugin_manager())
    lines = stderr_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("charforge: warning:") and "'broken'" in lines[0]
    assert BUILTIN_CELLS <= set(registry.names("cell"))
    assert BUILTIN_OPTIMIZERS <= set(registry.names("optimizer"))


def test_a_broken_plugin_does_not_stop_the_command_line(charforge_entry_points, text_corpus, tmp_path):
    charforge_entry_points("broken", BROKEN["import-raises"])
    result = CliRunner().invoke(cli, ["cells", "--json"])
    assert result.exit_code == 0
    assert BUILTIN_CELLS <= {row["name"] for row in json.loads(result.stdout)}
    assert len(stderr_lines(result.stderr)) == 1 and "'broken'" in result.stderr
    result = CliRunner().invoke(cli, ["train", str(text_corpus), "--cell", "rnn", "--hidden-size", "8",
                                      "--steps", "2", "--batch-size", "2", "--seq-len", "8", "-q",
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output


def test_a_broken_extra_plugin_is_skipped_with_a_warning(capsys):
    registry = Registry(make_plugin_manager(extra=[cell_plugin("charforge_flaky", fail=KeyError("x"))]))
    lines = stderr_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "'charforge_flaky'" in lines[0] and "KeyError" in lines[0]
    assert "tiny" not in registry.names("cell") and BUILTIN_CELLS <= set(registry.names("cell"))


# -- name clashes, blocking and replacing ------------------------------------------------------------

def test_two_plugins_registering_the_same_cell_is_an_error_naming_both(cli_with):
    first, second = cell_plugin("charforge_first"), cell_plugin("charforge_second")
    with pytest.raises(CharforgeError) as info:
        Registry(make_plugin_manager(extra=[first, second]))
    message = str(info.value)
    assert "'tiny'" in message and "charforge_first" in message and "charforge_second" in message
    result = cli_with(["cells"], extra=[first, second])
    assert result.exit_code == 1 and "charforge_first" in result.stderr and "charforge_second" in result.stderr


class LSTMLookalike(TinyCell):
    name = "lstm"


def test_a_plugin_replaces_a_blocked_builtin(monkeypatch):
    replacement = cell_plugin("charforge_my_lstm", cells=(LSTMLookalike,))
    with pytest.raises(CharforgeError, match=r"'lstm'.*charforge_my_lstm|charforge_my_lstm.*'lstm'"):
        Registry(make_plugin_manager(extra=[replacement]))
    monkeypatch.setenv("CHARFORGE_BLOCK_PLUGINS", "lstm")
    registry = Registry(make_plugin_manager(extra=[replacement]))
    assert registry.get("cell", "lstm").obj is LSTMLookalike
    assert registry.get("cell", "lstm").plugin == "charforge_my_lstm"


def test_charforge_block_plugins_blocks_a_builtin(monkeypatch):
    monkeypatch.setenv("CHARFORGE_BLOCK_PLUGINS", "gru, console")
    registry = Registry(make_plugin_manager())
    assert "gru" not in registry.names("cell") and {"rnn", "lstm"} <= set(registry.names("cell"))
    with pytest.raises(CharforgeError, match="unknown cell 'gru'"):
        registry.get("cell", "gru")
    runner = CliRunner()
    listed = {p["name"]: p for p in json.loads(runner.invoke(cli, ["plugins"]).stdout)}
    for name in ("gru", "console"):  # still listed, so that a user sees why gru is missing
        assert listed[name] == {"name": name, "distribution": "charforge", "version": charforge.__version__,
                                "hooks": [], "provides": {}, "blocked": True}
    assert listed["lstm"]["provides"] == {"cell": ["lstm"]} and listed["lstm"]["blocked"] is False
    cells = {row["name"] for row in json.loads(runner.invoke(cli, ["cells", "--json"]).stdout)}
    assert "gru" not in cells and "lstm" in cells


def test_charforge_plugins_is_an_allow_list(monkeypatch):
    monkeypatch.setenv("CHARFORGE_PLUGINS", "rnn,optimizers")
    registry = Registry(make_plugin_manager(extra=[cell_plugin()]))
    assert registry.names("cell") == ["rnn", "tiny"]  # extra plugins are added in code, not filtered
    assert registry.names("corpus") == []


# -- the listings -----------------------------------------------------------------------------------

def test_cells_json_lists_options_with_defaults_and_help():
    result = CliRunner().invoke(cli, ["cells", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILTIN_CELLS <= set(rows)
    for row in rows.values():
        assert row["help"] and row["plugin"]
        for name, option in row["options"].items():
            assert set(option) >= {"default", "type", "help"} and option["help"], (row["name"], name)
    rnn = rows["rnn"]["options"]
    assert rnn["nonlinearity"]["default"] == "tanh" and rnn["nonlinearity"]["choices"] == ["tanh", "relu"]
    assert rnn["bias"] == {**rnn["bias"], "default": True, "type": "bool"}
    assert rnn["init"]["choices"] == ["default", "orthogonal", "identity", "he"]
    assert rows["lstm"]["options"]["forget_bias"]["default"] == 1.0
    assert rows["gru"]["options"] == {}

    text = CliRunner().invoke(cli, ["cells"]).stdout
    assert "nonlinearity = 'tanh' {tanh, relu}" in text and "forget_bias = 1.0" in text


def test_optimizers_json_lists_every_hyperparameter():
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["optimizers", "--json"]).stdout)}
    assert BUILTIN_OPTIMIZERS <= set(rows)
    assert rows["adam"]["options"]["beta2"]["default"] == 0.999
    assert rows["adamw"]["options"]["weight_decay"]["default"] == 0.01
    assert rows["rmsprop"]["options"]["alpha"]["default"] == 0.99
    assert rows["momentum"]["options"]["momentum"]["default"] == 0.9
    for row in rows.values():
        assert all(option["help"] for option in row["options"].values()), row["name"]
