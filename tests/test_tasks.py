"""Tasks, the plugin kind for problems that are not text: the palindrome data, memorisation until
exact reproduction, a third party's task through the same contract, and scoring only what a task
scores."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from charforge.cli import cli
from charforge.data import run_config, target_defaults
from charforge.errors import CharforgeError
from charforge.evaluation import evaluate
from charforge.hookspecs import hookimpl
from charforge.options import Option
from charforge.plugins import Registry, make_plugin_manager
from charforge.runs.directory import Run
from charforge.tasks.task import IGNORE, Sequences, Task, TaskData
from charforge.trainer import Trainer
from charforge.vocab import Vocab


def registry(*extra) -> Registry:
    return Registry(make_plugin_manager(extra=extra, block=["console"]))


def palindrome(**options):
    cls = registry().get("task", "palindrome").obj
    return cls(**{**{k: o.default for k, o in cls.options.items()}, **options})


@pytest.mark.parametrize("length", [2, 5, 10, 25])
def test_every_palindrome_reads_the_same_backwards_and_only_its_last_digit_is_scored(length):
    data = palindrome(length=length, samples=256, test_samples=64).data(32, 0, seed=3, device="cpu")
    assert data.vocab.chars == list("0123456789")
    for stream in (data.train, data.val):
        x, y, _ = stream.window(1)
        assert x.shape == y.shape == (32, length - 1)
        whole = torch.cat([x, y[:, -1:]], dim=1)
        assert torch.equal(whole, whole.flip(1))  # every sequence is a palindrome
        assert torch.equal(y[:, -1], x[:, 0])  # the target, the last digit, is the first
        assert (y[:, :-1] == IGNORE).all()  # nothing else is scored
    assert data.train.windows == 256 // 32 and data.val.windows == 64 // 32
    x1, _, _ = data.train.window(1)
    assert torch.equal(x1, data.train.window(1)[0])  # the same batch for the same index: resumable
    assert not torch.equal(x1, data.train.window(2)[0])
    assert not torch.equal(x1, data.val.window(1)[0])  # held out: another stream of the seed


def test_evaluation_scores_only_the_targets_a_task_scores():
    torch.manual_seed(0)
    data = palindrome(length=6, samples=64, test_samples=64).data(16, 0, seed=1, device="cpu")
    config = run_config({"corpus": "palindrome", "task_options": {"length": 6}, "hidden_size": 8,
                         "cell": "rnn"}, registry())
    from charforge.model import build_model

    model = build_model(config, 10, registry())
    metrics, _, read = evaluate(model, data.val, 10, torch.device("cpu"))
    losses, right = [], []
    with torch.no_grad():
        for i in range(data.val.windows):
            x, y, _ = data.val.window(i)
            logits, _ = model(x, model.initial_state(16))  # each batch from a fresh state
            losses.append(F.cross_entropy(logits[:, -1], y[:, -1], reduction="sum"))
            right.append((logits[:, -1].argmax(-1) == y[:, -1]).sum())
    count = 16 * data.val.windows
    assert read == data.val.windows
    assert metrics["val_loss"] == pytest.approx(float(sum(losses)) / count, rel=1e-5)
    assert metrics["val_accuracy"] == pytest.approx(float(sum(right)) / count)


def test_a_task_brings_its_own_settings_and_the_users_override_them():
    suits = target_defaults("memorise", {"sentence": "amazon"}, registry())
    assert suits["batch_size"] == 1 and suits["seq_len"] == len("Amazon is river.") - 1
    config = run_config({"corpus": "memorise", "task_options": {"sentence": "amazon"}, "hidden_size": 12},
                        registry())
    assert (config.hidden_size, config.seq_len, config.eval_every) == (12, 15, 10)
    assert target_defaults("faith", None, registry())["val_fraction"] == 0.0  # a seed sentence as a corpus
    assert target_defaults("no-such-corpus.txt", None, registry()) == {}


def test_memorise_stops_at_the_first_exact_reproduction(tmp_path):
    config = run_config({"corpus": "memorise", "cell": "rnn", "optimizer": "rmsprop", "lr": 0.01,
                         "optimizer_options": {"alpha": 0.9}, "steps": 3000, "device": "cpu"}, registry())
    trainer = Trainer(config, pm=make_plugin_manager(block=["console"]), runs_root=tmp_path, name="m")
    trainer.run()
    assert trainer.outcome == "solved" and trainer.step < 3000
    checks = [e for e in Run(tmp_path / "m").events() if e["event"] == "validation"]
    assert [e["reproduced"] for e in checks][-1] == 1.0 and all(e["reproduced"] == 0.0 for e in checks[:-1])
    assert checks[-1]["step"] == trainer.step and checks[-1]["matched"] == 1.0
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "m"), "--prime", "A", "--greedy", "--length", "69"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "All the faith he had had had had no effect on the outcome of his life."


class Parity(Task):
    """A third party's task: the parity of a bit string, scored on its last position."""

    name = "parity"
    help = "Is the number of ones odd?"
    options = {"bits": Option(4, "String length.")}

    def data(self, batch_size, seq_len, seed, device):
        bits = self.settings["bits"]

        def make(i, with_time):
            x = torch.randint(2, (batch_size, bits), generator=torch.Generator().manual_seed(seed + i))
            y = torch.full_like(x, IGNORE)
            y[:, -1] = x.sum(1) % 2
            return x, y, None
        return TaskData(Vocab(["0", "1"]), Sequences(make, 20, batch_size, bits, device),
                        Sequences(lambda i, with_time: make(1000 + i, with_time), 2, batch_size, bits, device))


class ParityPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Parity)


def test_a_third_party_task_trains_through_the_same_contract(tmp_path):
    reg = registry(ParityPlugin())
    assert "parity" in reg.names("task") and reg.get("task", "parity").plugin != "tasks"
    config = run_config({"corpus": "parity", "task_options": {"bits": "3"}, "cell": "lstm", "hidden_size": 16,
                         "batch_size": 8, "steps": 40, "device": "cpu"}, reg)
    trainer = Trainer(config, pm=make_plugin_manager(extra=[ParityPlugin()], block=["console"]),
                      runs_root=tmp_path, name="parity")
    assert trainer.config.task_options == {"bits": 3}  # parsed by the task's declared options
    metrics = trainer.run()
    assert trainer.outcome == "budget spent" and 0 <= metrics["val_accuracy"] <= 1
    assert math.isfinite(metrics["val_loss"])
    with pytest.raises(CharforgeError, match="Did you mean 'bits'"):
        run_config({"corpus": "parity", "task_options": {"bit": 3}}, reg)


def test_train_a_task_from_the_command_line_and_its_options_are_checked(tmp_path):
    runner = CliRunner()
    args = ["train", "palindrome", "-T", "length", "20", "--cell", "lstm", "--hidden-size", "16", "--steps", "20",
            "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "p", "-q"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert Run(tmp_path / "p").config_path.exists()
    listed = runner.invoke(cli, ["tasks"])
    assert "palindrome" in listed.output and "memorise" in listed.output and "length = 10" in listed.output
    bad = runner.invoke(cli, [*args[:3], "lenght", "20", *args[5:-3], "--name", "q"])
    assert bad.exit_code == 1 and "has no option 'lenght'. Did you mean 'length'?" in bad.output
    short = runner.invoke(cli, ["train", "palindrome", "-T", "length", "1", "--steps", "1", "--runs-dir", str(tmp_path)])
    assert short.exit_code == 1 and "'length' must be from 2 to 10,000" in short.output
    corpus = runner.invoke(cli, ["train", "faith", "-T", "length", "3", "--runs-dir", str(tmp_path)])
    assert corpus.exit_code == 1 and "is a corpus, not a task" in corpus.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "p"]  # nothing made by the refused ones


def test_capacity_counts_the_bits_of_random_labels_a_model_stores(tmp_path):
    config = run_config({"corpus": "capacity", "task_options": {"samples": 200, "length": 4, "classes": 4},
                         "cell": "gru", "hidden_size": 16, "batch_size": 50, "lr": 0.02, "steps": 300,
                         "eval_every": 100, "device": "cpu"}, registry())
    trainer = Trainer(config, pm=make_plugin_manager(block=["console"]), runs_root=tmp_path, name="c")
    trainer.run()
    checks = [e for e in Run(tmp_path / "c").events() if e["event"] == "validation"]
    inputs, targets = trainer.task._set
    assert inputs.shape == (200, 4) and set(targets[:, -1].tolist()) <= {0, 1, 2, 3}
    assert (targets[:, :-1] == IGNORE).all()
    with torch.no_grad():
        logits, _ = trainer.model(inputs, trainer.model.initial_state(200))
        bits = 200 * (2 - float(F.cross_entropy(logits[:, -1], targets[:, -1])) / math.log(2))
    parameters = sum(p.numel() for p in trainer.model.parameters())
    assert checks[-1]["bits_stored"] == pytest.approx(max(bits, 0), rel=1e-4)
    assert checks[-1]["bits_per_parameter"] == pytest.approx(checks[-1]["bits_stored"] / parameters)
    assert 0 < checks[0]["bits_stored"] < checks[-1]["bits_stored"] <= 200 * 2  # it learns, up to 2 bits a label


def test_the_console_speaks_of_a_tasks_targets_and_figures(tmp_path):
    runner = CliRunner()
    common = ["--steps", "20", "--device", "cpu", "--runs-dir", str(tmp_path)]
    palindrome = runner.invoke(cli, ["train", "palindrome", "-T", "length", "4", "--hidden-size", "8", *common])
    assert palindrome.exit_code == 0 and "nats per scored target" in palindrome.stdout
    assert "Sample with: charforge sample" in palindrome.stdout
    memorise = runner.invoke(cli, ["train", "memorise", "-T", "sentence", "amazon", *common])
    assert memorise.exit_code == 0 and "step 10: memorise: reproduced " in memorise.stdout
    frequency = runner.invoke(cli, ["train", "frequency", "-T", "samples", "64", "-T", "test_samples", "64",
                                    "--hidden-size", "8", *common])
    assert frequency.exit_code == 0 and "Sample with" not in frequency.stdout and "The run: " in frequency.stdout


@pytest.mark.parametrize("task, option, value", [
    ("palindrome", "length", 10**20), ("palindrome", "samples", 10**20), ("palindrome", "test_samples", 10**11),
    ("capacity", "samples", 10**11), ("capacity", "length", 10**20)])
def test_a_task_size_past_its_bound_is_one_line_before_anything_is_drawn(tmp_path, task, option, value):
    result = CliRunner().invoke(cli, ["train", task, "-T", option, str(value), "--steps", "1", "--device", "cpu",
                                      "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: task ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_summary_reads_past_a_number_no_float_holds(tmp_path):
    from charforge.experiments.summary import timeline

    events = [{"event": "start", "step": 0, "time": 1.0}, {"event": "step", "step": 10**400, "loss": 1.0, "time": 2.0},
              {"event": "step", "step": 1, "loss": 10**400, "time": 3.0}]
    assert [e["event"] for e in timeline(events)] == ["start"]
