"""The plugin contract as charforge enforces it: hooks checked at load, a contract version, a plugin's
failure named and the run saved, and the RunView lifecycle hooks are handed instead of the trainer."""

from __future__ import annotations

import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

import charforge.plugins as plugins_module
from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.plugin import CONTRACT, RunView, hookimpl
from charforge.plugins import Registry, make_plugin_manager
from charforge.runs.checkpoint import load_checkpoint
from charforge.trainer import PluginFailed


def module(name: str, **attributes) -> types.ModuleType:
    plugin = types.ModuleType(name)
    vars(plugin).update(attributes)
    return plugin


@pytest.fixture
def installed(monkeypatch, tmp_path):
    """Install a plugin module, written from source, as an entry point of the ``charforge`` group."""
    real = plugins_module.entry_points
    added: list[EntryPoint] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins_module, "entry_points", lambda group: [*real(group=group), *added])

    def add(name: str, source: str) -> None:
        (tmp_path / f"contract_ep_{name}.py").write_text(source)
        added.append(EntryPoint(name=name, value=f"contract_ep_{name}", group="charforge"))

    return add


# -- checked at load -----------------------------------------------------------------------------

def test_a_misspelled_hook_is_refused_naming_the_plugin_and_the_nearest_hook():
    @hookimpl
    def on_step_ended(run):
        pass

    with pytest.raises(CharforgeError) as caught:
        make_plugin_manager(extra=[module("my_cells", on_step_ended=on_step_ended)], load_entry_points=False)
    assert str(caught.value) == ("plugin 'my_cells' implements 'on_step_ended', which is not a charforge hook. "
                                 "Did you mean 'on_step_end'?")


def test_an_installed_plugin_with_a_misspelled_hook_is_skipped_in_one_warning(installed, capsys):
    installed("typo", "from charforge.plugin import hookimpl\n\n@hookimpl\ndef on_train_stat(run):\n    pass\n")
    pm = make_plugin_manager()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["charforge: warning: plugin 'typo' implements 'on_train_stat', which is not a charforge hook. "
                     "Did you mean 'on_train_start'? It is skipped."]
    assert pm.get_plugin("typo") is None and "lstm" in Registry(pm).names("cell")


def test_an_optional_hook_of_another_name_is_allowed():
    @hookimpl(optionalhook=True)
    def on_something_later(run):
        pass

    pm = make_plugin_manager(extra=[module("future", on_something_later=on_something_later)], load_entry_points=False)
    assert pm.get_plugin("future") is not None


def test_an_argument_the_hook_lacks_is_refused_in_one_line():
    class Logger:
        @hookimpl
        def on_step_end(self, run, step, loss):
            pass

    with pytest.raises(CharforgeError) as caught:
        make_plugin_manager(extra=[Logger()], load_entry_points=False)
    assert str(caught.value) == ("plugin 'Logger' implements on_step_end(run, step, loss), but on_step_end has no "
                                 "argument 'loss': it is called with run, step, metrics.")


def test_the_old_trainer_argument_is_refused():
    @hookimpl
    def on_train_start(trainer):
        pass

    with pytest.raises(CharforgeError, match="has no argument 'trainer': it is called with run"):
        make_plugin_manager(extra=[module("old", on_train_start=on_train_start)], load_entry_points=False)


@pytest.mark.parametrize("declared,refused", [(CONTRACT, None), (CONTRACT - 1, None),
                                              (CONTRACT + 1, f"needs plugin contract {CONTRACT + 1}; this charforge "
                                                             f"has {CONTRACT}: upgrade charforge."),
                                              ("1", "it must be a whole number")])
def test_a_plugin_for_a_newer_contract_is_refused(declared, refused):
    plugin = module("versioned", charforge_contract=declared)
    if refused is None:
        assert make_plugin_manager(extra=[plugin], load_entry_points=False).get_plugin("versioned") is plugin
    else:
        with pytest.raises(CharforgeError, match="plugin 'versioned' ") as caught:
            make_plugin_manager(extra=[plugin], load_entry_points=False)
        assert refused in str(caught.value) and "\n" not in str(caught.value)


# -- a plugin that fails while training ----------------------------------------------------------

class Exploder:
    """Raises in one hook at one step."""

    def __init__(self, hook: str, at: int = 3):
        self.hook, self.at = hook, at

    def _maybe(self, hook, step):
        if hook == self.hook and step == self.at:
            raise ValueError(f"boom at {step}")

    @hookimpl
    def on_step_end(self, step):
        self._maybe("on_step_end", step)

    @hookimpl
    def on_validation_end(self, step):
        self._maybe("on_validation_end", step)


class Witness:
    """Sees the errors on_train_error reports."""

    def __init__(self):
        self.errors = []

    @hookimpl
    def on_train_error(self, run, error):
        self.errors.append((run.step, error))


@pytest.mark.parametrize("hook", ["on_step_end", "on_validation_end"])
def test_a_hook_that_raises_is_named_and_the_run_is_saved_at_that_step(train, runs_root, hook):
    witness = Witness()
    with pytest.raises(PluginFailed) as caught:
        train(extra=[Exploder(hook), witness], steps=10, eval_every=3, name="boom")
    assert str(caught.value) == f"plugin 'Exploder' failed in {hook}: ValueError: boom at 3"
    assert isinstance(caught.value.__cause__, ValueError)
    assert load_checkpoint(runs_root / "boom", "latest").step == 3
    assert [(step, type(error)) for step, error in witness.errors] == [(3, PluginFailed)]


def test_of_two_instances_of_one_plugin_class_the_one_that_raised_is_named(train):
    quiet, loud = Exploder("on_step_end", at=99), Exploder("on_step_end", at=2)
    quiet.__name__, loud.__name__ = "quiet", "loud"
    for order in ([quiet, loud], [loud, quiet]):
        with pytest.raises(PluginFailed, match="^plugin 'loud' failed in on_step_end"):
            train(extra=order, steps=4)


def test_an_error_in_on_train_error_does_not_hide_the_first(train, runs_root, capsys):
    class Grumpy:
        @hookimpl
        def on_train_error(self, error):
            raise RuntimeError("me too")

    with pytest.raises(PluginFailed, match="'Exploder' failed in on_step_end"):
        train(extra=[Exploder("on_step_end", at=2), Grumpy()], steps=5, name="two")
    assert "plugin 'Grumpy' failed in on_train_error: RuntimeError: me too" in capsys.readouterr().err


def test_the_command_line_says_which_plugin_failed_and_exits_1(installed, text_corpus, tmp_path):
    installed("exploder", "from charforge.plugin import hookimpl\n\n@hookimpl\ndef on_step_end(step):\n"
                          "    if step == 2:\n        raise KeyError('missing')\n")
    result = CliRunner().invoke(cli, ["train", str(text_corpus), "--cell", "rnn", "--hidden-size", "8", "--steps",
                                      "5", "--batch-size", "2", "--seq-len", "8", "--log-every", "1", "-q",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "cli"])
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "Error: plugin 'exploder' failed in on_step_end: KeyError: 'missing'"
    assert load_checkpoint(tmp_path / "runs" / "cli", "latest").step == 2


# -- the run view ---------------------------------------------------------------------------------

class Observer:
    """Reads the view at every step and stops the run at step 2."""

    def __init__(self):
        self.seen: list[dict] = []
        self.ended = None

    @hookimpl
    def on_step_end(self, run, step, metrics):
        assert isinstance(run, RunView)
        config = run.config
        config.lr = 99.0  # a copy: the run's own settings stay
        self.seen.append(dict(step=run.step, hook_step=step, metrics=run.metrics == metrics, lr=run.config.lr,
                              run_dir=run.run_dir, progress=run.progress(), phase=run.phase, epoch=run.epoch,
                              elapsed=run.elapsed, threads=run.threads, task=run.task, vocab=len(run.vocab),
                              parameters=run.parameters, chars=run.training_chars, best=run.best_val_loss,
                              fraction=run.validation_fraction, stop=run.stop_reason))
        if step == 2:
            run.request_stop("seen enough")
            assert run.stop_reason == "seen enough"

    @hookimpl
    def on_train_end(self, run, reason, metrics):
        self.ended = (reason, run.step, run.best_val_loss, run.eta())


def test_the_view_shows_what_it_documents_and_request_stop_ends_the_run(train, runs_root):
    observer = Observer()
    trainer = train(extra=[observer], steps=8, lr=3e-3, threads=1, name="seen")
    assert trainer.step == 2
    first, second = observer.seen
    assert first["step"] == first["hook_step"] == 1 and second["step"] == 2
    assert first["metrics"] and first["lr"] == 3e-3
    assert first["run_dir"] == Path(runs_root / "seen") and first["phase"] == "training"
    assert first["progress"] == pytest.approx(1 / 8) and 0 < first["epoch"] < second["epoch"]
    assert 0 < first["elapsed"] <= second["elapsed"] and first["threads"] == 1 and first["task"] is None
    assert first["vocab"] == len(trainer.vocab)
    assert first["parameters"] == sum(p.numel() for p in trainer.model.parameters())
    assert first["chars"] == trainer.train_data.windows * trainer.train_data.chars_per_window
    assert first["best"] is None and first["fraction"] == 0.0 and first["stop"] is None
    reason, step, best, eta = observer.ended
    assert (reason, step) == ("seen enough", 2) and best is not None and best > 0 and eta is not None


def test_every_public_name_of_the_authors_namespace_is_documented():
    import charforge.plugin as namespace

    constants = {"CONTRACT", "GATE_BIAS_LIMIT", "IGNORE", "State"}  # described in the module's docstring
    undocumented = [name for name in namespace.__all__
                    if name not in constants and not (getattr(namespace, name).__doc__ or "").strip()]
    assert undocumented == []
    assert all(name in namespace.__doc__ for name in constants)
