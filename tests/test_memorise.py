"""Memorisation, as in the seed report: a vanilla RNN trained with RMSprop learns one sentence by
heart and greedy sampling primed with its first character gives it back exactly.

The sentence is the built-in corpus ``faith``. Each step is the whole sentence (batch 1,
``--seq-len`` = its length - 1, no validation split), so every step starts from a zero state,
as sampling does. The hard part is counting: after "had had had " the model must know whether
one more "had" follows. Settings, measured on 50 seeds: hidden size 32, one-hot input,
RMSprop at lr 0.01 with the default cosine decay, 400 steps: every seed reproduced the sentence
(the worst final loss was 0.03 nats/char), in about 1.5 s of training on one core.

Why not faster: RMSprop at lr 0.02 converges in ~150 steps on most seeds but not all. PyTorch's
RMSprop starts its squared-gradient average at zero and has no bias correction, so its first
steps are ~10x the learning rate, and once the loss is tiny its normalised steps stay the size
of the learning rate; both give loss spikes, and a spike late in training can knock out the
count of "had"s (the model then loops "had had had ..."), which the decaying rate cannot repair.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from charforge.cli import cli
from charforge.runs import read_metrics

FAITH = "All the faith he had had had had no effect on the outcome of his life."


def run(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("bias_args", [
    pytest.param([], id="with-biases"),
    pytest.param(["-c", "bias", "false", "--no-output-bias"], id="without-biases"),
])
def test_vanilla_rnn_memorises_the_seed_sentence(runs_root, bias_args):
    run("train", "faith", "--cell", "rnn", *bias_args, "--hidden-size", 32, "--optimizer", "rmsprop",
        "--lr", 0.01, "--steps", 400, "--batch-size", 1, "--seq-len", len(FAITH) - 1, "--val-fraction", 0,
        "--log-every", 50, "--eval-every", 400, "--seed", 0, "--runs-dir", runs_root, "--name", "faith", "-q")
    steps = [e for e in read_metrics(runs_root / "faith") if e["event"] == "step"]
    assert steps[-1]["step"] == 400 and steps[-1]["loss"] < 0.1, steps[-1]
    sample = run("sample", runs_root / "faith", "--prime", "A", "--greedy", "--length", len(FAITH) - 1)
    assert sample == FAITH + "\n"


def test_primed_with_acknowl_it_continues_edgement(runs_root):
    """The seed report's other example: prime with "Acknowl", expect "edgement"."""
    word = "Acknowledgement"
    run("train", "acknowledgement", "--cell", "rnn", "--hidden-size", 16, "--optimizer", "rmsprop", "--lr", 0.01,
        "--steps", 150, "--batch-size", 1, "--seq-len", len(word) - 1, "--val-fraction", 0, "--seed", 0,
        "--eval-every", 150, "--runs-dir", runs_root, "--name", "ack", "-q")
    assert run("sample", runs_root / "ack", "--prime", "Acknowl", "--greedy", "--length", 8) == word + "\n"
