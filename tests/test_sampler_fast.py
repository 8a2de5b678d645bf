"""The fast sampling path (compiled loop over the raw fused-cell weights) against the generic one.

For every built-in cell, with one-hot or embedded input and one or two layers, the fast path must
give the very text the generic path (``model.step`` + ``pick``, one step at a time) gives for
the same seed: greedy, plain, top-k and top-p sampling, batch 1 and batch 3. ``pick`` itself
must sample from softmax(logits / temperature). Also: the multi-layer sequence call equals the
layer-by-layer one, and the trainer's default threads and TrainConfig defaults are sane.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from charforge import sampler as sampler_module
from charforge.config import TrainConfig
from charforge.model import CharModel
from charforge.plugins import Registry, make_plugin_manager
from charforge.sampler import FastPlan, SampleOptions, Sampler, pick
from charforge.vocab import Vocab

TEXT = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs!\n"
OPTIONS = [SampleOptions(120, greedy=True), SampleOptions(120, temperature=0.0), SampleOptions(120),
           SampleOptions(120, temperature=0.7, top_k=5), SampleOptions(120, temperature=1.3, top_p=0.8)]


@pytest.fixture(scope="module")
def cells():
    registry = Registry(make_plugin_manager())
    return {name: registry.get("cell", name).obj for name in ("rnn", "lstm", "gru")}


def model_of(cell, vocab, layers, embedding, **options):
    torch.manual_seed(3)
    model = CharModel(len(vocab), cell, 24, layers, 0.0, embedding, cell_options=options)
    with torch.no_grad():  # a sharper distribution than at initialisation, so that text has structure
        model.head.weight.mul_(4.0)
    return model.eval()


CASES = [("lstm", {}), ("gru", {}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"bias": False})]


@pytest.mark.parametrize("jit", ["1", "0"])
@pytest.mark.parametrize("name,options", CASES)
@pytest.mark.parametrize("layers,embedding", [(1, 0), (2, 0), (2, 8)])
def test_fast_path_gives_the_generic_text(cells, monkeypatch, jit, name, options, layers, embedding):
    monkeypatch.setenv("CHARFORGE_SAMPLER_JIT", jit)
    monkeypatch.setattr(sampler_module, "_compiled", {})
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, layers, embedding, **options)
    assert FastPlan.of(model) is not None
    for opts in OPTIONS:
        for batch in (1, 3):
            generic = Sampler(model, vocab, fast=False).sample("The q", opts, batch, seed=11)
            fast = Sampler(model, vocab).sample("The q", opts, batch, seed=11)
            assert fast == generic, (opts, batch)


@pytest.mark.parametrize("name,options", CASES)
def test_big_batches_sample_what_the_generic_path_samples(cells, name, options):
    """From BIG_BATCH samples up the products go through oneDNN: rounding differs from the BLAS the
    step path uses (~1e-6), so texts agree except after a near-tie; greedy and sampled text match."""
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, 2, 8, **options)
    plan = FastPlan.of(model)
    if plan.packed(sampler_module.BIG_BATCH) is None:
        pytest.skip("this torch build has no usable oneDNN linear")
    batch = sampler_module.BIG_BATCH + 8
    for opts in OPTIONS[::2]:
        generic = Sampler(model, vocab, fast=False).sample("The q", opts, batch, seed=2)
        fast = Sampler(model, vocab).sample("The q", opts, batch, seed=2)
        same = sum(a == b for a, b in zip(generic, fast))
        assert same >= batch - 2, (opts, same)  # a row diverges for good after one flipped character


def test_fast_path_streams_every_step_and_honours_length(cells):
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells["lstm"], vocab, 1, 0)
    for length in (0, 1, 7, 8, 9, 300):
        steps = list(Sampler(model, vocab).tokens("", SampleOptions(length), 2, seed=1))
        assert len(steps) == length and all(s.shape == (2,) and s.dtype == torch.int64 for s in steps)
        generic = list(Sampler(model, vocab, fast=False).tokens("", SampleOptions(length), 2, seed=1))
        assert all(torch.equal(a, b) for a, b in zip(steps, generic))


def test_cells_that_change_the_step_take_the_generic_path(cells):
    class Leaky(cells["lstm"]):
        name = "leaky-lstm"

        def step(self, x, state, t=None):
            h, (h2, c) = super().step(x, state, t)
            return 0.5 * h, (0.5 * h2, c)

    vocab = Vocab.from_text(TEXT)
    model = model_of(Leaky, vocab, 1, 0)
    assert FastPlan.of(model) is None
    text = Sampler(model, vocab).sample("", SampleOptions(50, greedy=True), 1, seed=0)
    assert text == Sampler(model, vocab, fast=False).sample("", SampleOptions(50, greedy=True), 1, seed=0)


def test_pick_samples_from_the_softmax():
    """Inverse-CDF sampling: frequencies match softmax(logits / T), top-k keeps the k most likely."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0, 0.5]])
    g = torch.Generator().manual_seed(0)
    n = 40_000
    for temperature in (1.0, 0.5):
        draws = torch.cat([pick(logits.expand(400, -1), SampleOptions(temperature=temperature), g)
                           for _ in range(n // 400)])
        freq = torch.bincount(draws, minlength=6).double() / n
        p = (logits[0].double() / temperature).softmax(-1)
        # within 5 standard errors of every probability, and the near-zero entry never drawn
        assert bool(((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-9).all()), (freq, p)
        assert freq[4] == 0
    top2 = pick(logits.expand(1000, -1), SampleOptions(top_k=2), g)
    assert set(top2.tolist()) == {0, 1}


def test_uniforms_drawn_in_chunks_equal_uniforms_drawn_step_by_step():
    """What lets a compiled loop and the step path share one random stream on the CPU."""
    g = torch.Generator().manual_seed(5)
    whole = torch.rand(64 * 256, generator=g)
    g.manual_seed(5)
    parts = torch.cat([torch.rand([256, 1], generator=g).flatten() for _ in range(64)])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_a_stack_of_fused_layers_runs_as_one_call_with_the_same_result(cells, monkeypatch, name):
    from charforge_builtins import fused

    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, 3, 8)
    x = torch.randint(len(vocab), (4, 9))
    state = [tuple(torch.randn_like(s) for s in layer) for layer in model.initial_state(4)]
    calls = []
    original = fused.FusedCell.forward_stack
    monkeypatch.setattr(fused.FusedCell, "forward_stack",
                        staticmethod(lambda *a: calls.append(1) or original(*a)))
    joint, joint_state = model(x, state)
    assert calls, "three identical fused layers should run as one call"
    monkeypatch.setattr(fused.FusedCell, "stack_key", lambda self, x: None)
    alone, alone_state = model(x, state)
    torch.testing.assert_close(joint, alone, rtol=0, atol=1e-6)
    for a, b in zip(joint_state, alone_state):
        for s, t in zip(a, b):
            torch.testing.assert_close(s, t, rtol=0, atol=1e-6)


def test_default_threads_and_defaults_are_sane():
    from charforge.trainer import default_threads

    cores = os.cpu_count() or 1
    config = TrainConfig()
    assert config.check() is config
    assert 1 <= default_threads(config) <= cores
    assert default_threads(TrainConfig(hidden_size=32, batch_size=4)) == 1  # tiny steps: one thread
    assert default_threads(config) == cores  # the default model gains 1.6x from a second core
    assert default_threads(TrainConfig(hidden_size=1024, num_layers=2)) == cores
    assert config.schedule == "cosine" and 0 < config.lr <= 0.01 and 0 < config.min_lr_ratio < 1
    assert config.cell == "lstm" and config.hidden_size >= 128 and config.batch_size * config.seq_len >= 1000
    assert config.embedding_dim >= 0 and config.clip == "norm"
    assert config.eval_every >= 100 and config.log_every >= 1
    assert math.isfinite(TrainConfig.DEFAULT_MINUTES) and TrainConfig.DEFAULT_MINUTES > 0
