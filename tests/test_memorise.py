"""Memorisation, as in the seed report: a vanilla RNN trained with RMSprop learns one sentence by
heart and greedy sampling primed with its first character gives it back exactly.

The sentence is the built-in corpus ``faith``. Each step is the whole sentence (batch 1,
``--seq-len`` = its length - 1, no validation split), so every step starts from a zero state,
as sampling does. The hard part is counting: after "had had had " the model must know whether
one more "had" follows.

Settings, measured over 30-60 seeds each (hidden size 32, one-hot input, default cosine decay):

* RMSprop lr 0.02, 20 warmup steps, ``-o alpha 0.9``: every seed reproduced the sentence after
  150 steps (worst final loss 0.012 nats/char) and after 200 (worst 0.004), with and without
  the biases b_h and b_y. The test uses 200 steps: about a second of training on one core.
* The same with PyTorch's default alpha 0.99 failed on 2 seeds in 20 at 250 steps, and lr 0.02
  without warmup on most seeds at 200 steps. The cause is RMSprop's squared-gradient average,
  not a charforge bug: it starts at zero without bias correction (the first steps are ~10x the
  learning rate, hence the warmup), and with alpha 0.99 it lags ~100 steps behind the gradient.
  Near convergence the gradients shrink, the normalised steps stay as large as the learning
  rate, and when a gradient grows again the stale average lets through a loss spike. A late spike
  can erase the count of "had"s (greedy sampling then loops "had had had ..."), which the decaying
  rate no longer repairs. alpha 0.9 tracks the gradient within ~10 steps (char-rnn used 0.95).
  lr 0.01 without warmup and alpha 0.99 is reliable too, but needs 400 steps.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from charforge.cli import cli
from charforge.runs.directory import Run

RMSPROP = ["--optimizer", "rmsprop", "--lr", 0.02, "--warmup", 20, "-o", "alpha", 0.9]
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
    run("train", "faith", "--cell", "rnn", *bias_args, "--hidden-size", 32, "--embedding-dim", 0, *RMSPROP,
        "--steps", 200,
        "--batch-size", 1, "--seq-len", len(FAITH) - 1, "--val-fraction", 0, "--log-every", 50,
        "--eval-every", 200, "--seed", 0, "--runs-dir", runs_root, "--name", "faith", "-q")
    steps = [e for e in Run(runs_root / "faith").events() if e["event"] == "step"]
    assert steps[-1]["step"] == 200 and steps[-1]["loss"] < 0.05, steps[-1]
    sample = run("sample", runs_root / "faith", "--prime", "A", "--greedy", "--length", len(FAITH) - 1)
    assert sample == FAITH + "\n"


def test_primed_with_acknowl_it_continues_edgement(runs_root):
    """The seed report's other example: prime with "Acknowl", expect "edgement"."""
    word = "Acknowledgement"
    run("train", "acknowledgement", "--cell", "rnn", "--hidden-size", 16, "--embedding-dim", 0, *RMSPROP,
        "--steps", 100,
        "--batch-size", 1, "--seq-len", len(word) - 1, "--val-fraction", 0, "--seed", 0, "--eval-every", 100,
        "--runs-dir", runs_root, "--name", "ack", "-q")
    assert run("sample", runs_root / "ack", "--prime", "Acknowl", "--greedy", "--length", 8) == word + "\n"
