"""The Python API: charforge.load, Model.generate / stream / score, charforge.train with plugins."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import charforge
from charforge import api
from charforge.errors import CharforgeError
from charforge.hookspecs import hookimpl

TEXT = "It was the best of times, it was the worst of times.\nIt was the age of wisdom!\n" * 30


class Recorder:
    """A plugin object passed to charforge.train: records hook calls, and can stop the run."""

    def __init__(self, stop_at: int | None = None):
        self.steps: list[int] = []
        self.validations: list[str] = []
        self.ended: str | None = None
        self.stop_at = stop_at

    @hookimpl
    def on_step_end(self, run, step, metrics):
        self.steps.append(step)
        if step == self.stop_at:
            run.request_stop("enough")

    @hookimpl
    def on_validation_end(self, run, step, metrics, sample):
        self.validations.append(sample)

    @hookimpl
    def on_train_end(self, run, reason, metrics):
        self.ended = reason


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    recorder = Recorder()
    result = charforge.train(corpus, runs_dir=root / "runs", name="tiny", steps=4, log_every=2, eval_every=4,
                             hidden_size=16, layers=2, batch_size=4, seq_len=16, sample_length=5,
                             device="cpu", quiet=True, plugins=[recorder])
    return result, recorder, corpus


def test_train_runs_plugins_and_returns_the_run(run):
    result, recorder, _ = run
    assert recorder.steps == [2, 4] and recorder.ended == "budget spent" and len(recorder.validations) == 1
    assert result.metrics["step"] == 4 and "val_loss" in result.metrics
    assert result.config.num_layers == 2 and result.config.hidden_size == 16
    assert (result.run_dir / "checkpoints" / "best.safetensors").is_file()


def test_a_plugin_can_stop_training_and_options_are_checked(run, tmp_path):
    _, _, corpus = run
    stopper = Recorder(stop_at=2)
    result = charforge.train(corpus, runs_dir=tmp_path, steps=50, log_every=2, hidden_size=8, batch_size=2,
                             seq_len=8, device="cpu", quiet=True, plugins=[stopper])
    assert stopper.ended == "enough" and result.metrics["step"] == 2
    with pytest.raises(CharforgeError, match="unknown training option 'hidden'.*Did you mean 'hidden_size'"):
        charforge.train(corpus, hidden=8)
    with pytest.raises(CharforgeError, match="give a corpus"):
        charforge.train()
    with pytest.raises(CharforgeError, match="--hidden-size must be a positive integer"):
        charforge.train(corpus, runs_dir=tmp_path, hidden_size=0)


def test_load_a_run_directory_or_a_checkpoint_file(run):
    result, _, _ = run
    model = charforge.load(result.run_dir, device="cpu")
    same = charforge.load(result.run_dir / "checkpoints" / "latest.safetensors", device="cpu")
    assert isinstance(model, charforge.Model) and "2x16 lstm" in repr(model)
    assert model.chars == sorted(set(TEXT)) and model.config.hidden_size == 16
    assert model.generate("It", length=30, seed=1) == same.generate("It", length=30, seed=1)
    assert result.load(device="cpu").generate("It", length=30, seed=1) == model.generate("It", length=30, seed=1)
    with pytest.raises(CharforgeError, match="does not exist"):
        charforge.load(result.run_dir / "nope.safetensors")


def test_generate_shapes_and_options(run):
    model = charforge.load(run[0].run_dir, device="cpu")
    one = model.generate("It was", length=25, seed=3)
    assert isinstance(one, str) and len(one) == 25
    several = model.generate("It was", length=25, seed=3, num_samples=3)
    assert isinstance(several, list) and len(several) == 3 and several[0] == one
    many = model.generate(["It was", "the"], length=25, seed=3)
    assert many[0] == one and isinstance(many[1], str)
    nested = model.generate(["It was", "the"], length=25, seed=3, num_samples=2, batch_size=1)
    assert nested[0] == several[:2] and nested[1][0] == many[1]
    assert model.generate([], length=5) == []
    greedy = model.generate(["It was", "the"], length=20, greedy=True)
    assert greedy == model.generate(["It was", "the"], length=20, beam=1)
    stopped = model.generate("It was", length=200, seed=3, stop=["e", "s"])
    assert "e" not in stopped and "s" not in stopped
    records = model.generate_records(["It", "the"], length=10, temperature=[0.5, 1.5], seed=9, top_k=4)
    assert [(r.prompt, r.settings.temperature, r.settings.top_k, r.seed) for r in records] == [
        ("It", 0.5, 4, 9), ("It", 1.5, 4, 9), ("the", 0.5, 4, 9), ("the", 1.5, 4, 9)]
    assert records[0].to_dict()["stop_reason"] == "length"
    with pytest.raises(CharforgeError, match="not in the model's vocabulary"):
        model.generate("It~", length=5)
    assert model.generate("It~", length=5, seed=1, drop_unknown=True) == model.generate("It", length=5, seed=1)


def test_stream_gives_the_text_generate_gives(run):
    model = charforge.load(run[0].run_dir, device="cpu")
    for options in [dict(), dict(temperature=0.7, top_p=0.9), dict(top_k=3, stop="t "), dict(greedy=True)]:
        samples = model.generate("It was", length=150, seed=12, num_samples=2, **options)
        chars = list(model.stream("It was", length=150, seed=12, sample=1, **options))
        assert all(len(c) >= 1 for c in chars) and "".join(chars) == samples[1]
    assert "".join(model.stream("It", length=0)) == ""
    with pytest.raises(CharforgeError, match="--top-p must be in"):
        next(model.stream("It", top_p=0))


def test_score_is_the_model_s_log_likelihood(run, monkeypatch):
    model = charforge.load(run[0].run_dir, device="cpu")
    text = "It was the age of wisdom, it was the best of times."
    ids = torch.tensor([model.chars.index(c) for c in text])
    with torch.no_grad():
        logits, _ = model.model(ids[None, :-1], model.model.initial_state(1))
        expected = -F.cross_entropy(logits[0], ids[1:], reduction="sum").item()
    score = model.score(text)
    assert score.chars == len(text) - 1
    assert score.log_likelihood == pytest.approx(expected, rel=1e-5)
    assert score.bits_per_char == pytest.approx(-expected / (len(text) - 1) / math.log(2), rel=1e-5)
    assert score.nats_per_char == pytest.approx(score.bits_per_char * math.log(2))
    # The chain rule: scoring a text in two parts, the second given the first, adds up.
    head, tail = text[:20], text[20:]
    assert model.score(head).log_likelihood + model.score(tail, prompt=head).log_likelihood == \
        pytest.approx(expected, rel=1e-5)
    monkeypatch.setattr(api, "WINDOW", 7)  # long texts are scored window by window, state carried
    assert model.score(text).log_likelihood == pytest.approx(expected, rel=1e-5)
    assert model.score("I") == charforge.Score(0.0, 0) and model.score("").chars == 0
    assert model.score("t", prompt="").chars == 1
    with pytest.raises(CharforgeError, match="not in the model's vocabulary"):
        model.score("It~")


def test_lazy_public_names():
    assert charforge.load is api.load and charforge.train is api.train
    assert {"load", "train", "Model", "Score", "Settings", "Sample"} <= set(dir(charforge))
    assert set(charforge.__all__) >= {"load", "train", "Model", "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        charforge.nope  # noqa: B018
