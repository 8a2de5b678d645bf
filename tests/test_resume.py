"""Resuming continues exactly: N steps in one go equal N/2 steps, a resume, and N/2 more.

Every step is logged (``--log-every 1``) and the per-step "step" events of metrics.jsonl are
compared, along with the final weights. Dropout is on, so the random-generator state must be
restored too; the corpus is short, so the runs cross an epoch boundary (where the carried
hidden state is reset) after the resume.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from charforge.runs.checkpoint import load_checkpoint
from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.hookspecs import hookimpl
from charforge.runs.directory import Run
from charforge.trainer import Trainer

N = 12
DETERMINISTIC = ("step", "epoch", "loss", "bpc", "accuracy", "lr", "grad_norm")


@pytest.fixture
def short_corpus(tmp_path, corpus_text):
    """~600 characters: 8 windows of 4 x 16 per epoch, so 12 steps cross an epoch boundary."""
    path = tmp_path / "short.txt"
    path.write_text(corpus_text[:600], encoding="utf-8")
    return path


def steps_of(run_dir) -> list[dict]:
    return [{k: e[k] for k in DETERMINISTIC} for e in Run(run_dir).events() if e["event"] == "step"]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir, which="latest").group("model")


def assert_same_training(one_go, resumed):
    a, b = steps_of(one_go), steps_of(resumed)
    assert [s["step"] for s in a] == list(range(1, N + 1))
    assert a == b  # exact equality: same floats, step by step
    wa, wb = weights(one_go), weights(resumed)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def cli_train(*args) -> str:
    result = CliRunner().invoke(cli, ["train", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


CASES = [
    pytest.param(["--cell", "lstm", "--optimizer", "adam"], id="lstm-adam"),
    pytest.param(["--cell", "gru", "--optimizer", "rmsprop", "-o", "momentum", "0.9", "-o", "centered", "true"],
                 id="gru-rmsprop"),
    pytest.param(["--cell", "rnn", "-c", "nonlinearity", "relu", "--optimizer", "nesterov", "--embedding-dim", "8",
                  "--clip", "value", "--clip-value", "0.5"], id="rnn-nesterov"),
]


@pytest.mark.parametrize("model_args", CASES)
def test_cli_resume_continues_exactly(short_corpus, runs_root, model_args):
    common = [short_corpus, *model_args, "--hidden-size", 24, "--layers", 2, "--dropout", 0.3,
              "--batch-size", 4, "--seq-len", 16, "--lr", 0.01, "--schedule", "step", "--lr-decay", 0.5,
              "--lr-decay-every", 4, "--warmup", 3, "--log-every", 1, "--eval-every", 1000,
              "--sample-length", 10, "--seed", 7, "--runs-dir", runs_root, "-q"]
    cli_train(*common, "--steps", N, "--name", "one-go")
    cli_train(*common, "--steps", N // 2, "--name", "halves")
    assert [s["step"] for s in steps_of(runs_root / "halves")] == list(range(1, N // 2 + 1))
    cli_train("--resume", runs_root / "halves", "--steps", N, "-q")
    assert_same_training(runs_root / "one-go", runs_root / "halves")
    assert steps_of(runs_root / "halves")[-1]["epoch"] > 1  # the boundary was crossed after the resume
    starts = [e for e in Run(runs_root / "halves").events() if e["event"] == "start"]
    assert [e["step"] for e in starts] == [0, N // 2]


class StopAt:
    """A plugin that stops training at a given step, as Ctrl-C or a TUI would."""

    __name__ = "stop-at"

    def __init__(self, step):
        self.step = step

    @hookimpl
    def on_step_end(self, run, step):
        if step == self.step:
            run.request_stop("paused")


def test_an_interrupted_run_resumes_exactly_with_a_budget_dependent_schedule(tiny_config, quiet_pm, runs_root,
                                                                               short_corpus):
    """Cosine decay over the whole budget, warmup, validation: stopped halfway and resumed, nothing changes."""
    config = dict(corpus=str(short_corpus), cell="lstm", num_layers=2, dropout=0.25, hidden_size=24,
                  schedule="cosine", warmup=4, steps=N, eval_every=5, optimizer="adamw", seed=3)
    Trainer(tiny_config(**config), pm=quiet_pm(), runs_root=runs_root, name="one-go").run()
    first = Trainer(tiny_config(**config), pm=quiet_pm([StopAt(N // 2)]), runs_root=runs_root, name="halves")
    first.run()
    assert first.step == N // 2
    resumed = Trainer.resume(runs_root / "halves" / "checkpoints" / "latest.safetensors", {}, pm=quiet_pm())
    assert resumed.step == N // 2 and resumed.run_dir == runs_root / "halves"
    resumed.run()
    assert_same_training(runs_root / "one-go", runs_root / "halves")

    def validations(run):
        return [(e["step"], e["val_loss"], e["sample"]) for e in Run(runs_root / run).events()
                if e["event"] == "validation"]

    assert validations("one-go") == [v for v in validations("halves") if v[0] != N // 2]


def test_resuming_a_finished_run_without_more_budget_does_nothing(train, quiet_pm):
    trainer = train(steps=3)
    before = weights(trainer.run_dir)
    again = Trainer.resume(trainer.run_dir, {}, pm=quiet_pm())
    again.run()
    assert again.step == 3
    after = weights(trainer.run_dir)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("flag, value, field", [
    ("--hidden-size", "64", "hidden_size"),
    ("--layers", "3", "num_layers"),
    ("--cell", "gru", "cell"),
    ("--embedding-dim", "8", "embedding_dim"),
    ("--batch-size", "2", "batch_size"),
    ("--optimizer", "sgd", "optimizer"),
])
def test_resume_with_a_changed_architecture_is_a_clear_error(train, flag, value, field):
    trainer = train(steps=2, hidden_size=16)
    result = CliRunner().invoke(cli, ["train", "--resume", str(trainer.run_dir), "--steps", "4", flag, value])
    assert result.exit_code == 1
    assert f"cannot change {field} when resuming" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert load_checkpoint(trainer.run_dir, which="latest").meta["step"] == 2  # the run is untouched


def test_resume_accepts_the_same_command_line_options_again(text_corpus, runs_root):
    """Re-running the training command with --resume: option strings are parsed before comparing, and
    one option given again must not reset the others (relu must stay relu)."""
    cli_train(text_corpus, "--cell", "rnn", "-c", "nonlinearity", "relu", "-c", "init", "orthogonal", "-c", "bias",
              "false", "--optimizer", "rmsprop", "-o", "alpha", "0.9", "--hidden-size", 16, "--batch-size", 2,
              "--seq-len", 16, "--steps", 2, "--runs-dir", runs_root, "--name", "opts", "-q")
    stored = load_checkpoint(runs_root / "opts", which="latest").meta["config"]
    cli_train("--resume", runs_root / "opts", "--steps", 3, "-c", "bias", "no", "-c", "init", "orthogonal",
              "-o", "alpha", "0.90", "-q")
    meta = load_checkpoint(runs_root / "opts", which="latest").meta
    assert meta["step"] == 3
    assert meta["config"]["cell_options"] == stored["cell_options"] == {
        "nonlinearity": "relu", "bias": False, "init": "orthogonal"}
    assert meta["config"]["optimizer_options"] == stored["optimizer_options"]
    for option, field in ((["-c", "init", "he"], "cell_options"), (["-o", "alpha", "0.5"], "optimizer_options")):
        result = CliRunner().invoke(cli, ["train", "--resume", str(runs_root / "opts"), "--steps", "4", *option])
        assert result.exit_code == 1 and f"cannot change {field}" in result.stderr


def test_resume_with_the_same_architecture_spelled_out_is_fine(train, quiet_pm):
    trainer = train(steps=2, hidden_size=16, cell="rnn", cell_options={"nonlinearity": "relu"})
    again = Trainer.resume(trainer.run_dir, {"steps": 3, "hidden_size": 16, "cell": "rnn", "lr": 1e-3,
                                             "cell_options": {"nonlinearity": "relu"}}, pm=quiet_pm())
    again.run()
    assert again.step == 3 and again.config.lr == 1e-3
    with pytest.raises(CharforgeError, match="cannot change cell_options"):
        Trainer.resume(trainer.run_dir, {"cell_options": {"nonlinearity": "tanh"}}, pm=quiet_pm())
