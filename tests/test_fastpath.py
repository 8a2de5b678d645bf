"""The fast step path (one compiled loop over the raw fused-cell weights) against the generic one.

For every built-in cell, with one-hot or embedded input and one or two layers, the fast path in
float32 must give the very text the generic path (``model.step`` + ``choose_rows``, one step at a
time) gives for the same seed: greedy, plain, top-k and top-p sampling, batch 1 and batch 3. In
float16 and int8 it must stay close to float32, and int8 give these small models' texts at every
batch size (its input range is pinned, so its integer sums do not depend on the batch). Also: the
multi-layer sequence call equals the layer-by-layer one, and the trainer's defaults are sane.
"""

from __future__ import annotations

import math

import pytest
import torch

from charforge.sampling import fastpath
from charforge.sampling import engine as generate_module
from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.sampling.fastpath import BIG_BATCH, BLAS, FP16, INT8, PACKED, FastWeights
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.settings import Request, Settings
from charforge.model import CharModel
from charforge.plugins import Registry, make_plugin_manager
from charforge.vocab import Vocab

TEXT = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs!\n"
OPTIONS = [Settings(120, greedy=True), Settings(120, temperature=0.0), Settings(120),
           Settings(120, temperature=0.7, top_k=5), Settings(120, temperature=1.3, top_p=0.8)]


@pytest.fixture(scope="module")
def cells():
    registry = Registry(make_plugin_manager())
    return {name: registry.get("cell", name).obj for name in ("rnn", "lstm", "gru")}


def model_of(cell, vocab, layers, embedding, hidden=24, **options):
    torch.manual_seed(3)
    model = CharModel(len(vocab), cell, hidden, layers, 0.0, embedding, cell_options=options)
    with torch.no_grad():  # a sharper distribution than at initialisation, so that text has structure
        model.head.weight.mul_(4.0)
    return model.eval()


def sample(model, vocab, settings, n, seed, precision="float32", batch_size=256, prompt="The q"):
    engine = BatchGenerator(model, vocab, batch_size=batch_size, precision=precision)
    return [s.text for s in engine.run([Request(prompt, settings, n)], seed)]


@pytest.fixture
def generic(monkeypatch):
    """Switches the engine to the generic path: ``model.step`` one step at a time."""
    def switch():
        monkeypatch.setattr(generate_module, "FastWeights", type("NoPlan", (), {"of": staticmethod(lambda m, p: None)}))
    return switch


CASES = [("lstm", {}), ("gru", {}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"bias": False})]


@pytest.mark.parametrize("jit", ["1", "0"])
@pytest.mark.parametrize("name,options", CASES)
@pytest.mark.parametrize("layers,embedding", [(1, 0), (2, 0), (2, 8)])
def test_fast_path_gives_the_generic_text(cells, monkeypatch, generic, jit, name, options, layers, embedding):
    monkeypatch.setenv("CHARFORGE_SAMPLER_JIT", jit)
    monkeypatch.setattr(fastpath, "_compiled", {})
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, layers, embedding, **options)
    assert FastWeights.of(model) is not None
    fast = {(i, batch): sample(model, vocab, opts, batch, 11) for i, opts in enumerate(OPTIONS) for batch in (1, 3)}
    generic()
    for (i, batch), texts in fast.items():
        assert texts == sample(model, vocab, OPTIONS[i], batch, 11), (OPTIONS[i], batch)


@pytest.mark.parametrize("name,options", CASES)
def test_big_batches_go_through_packed_weights_and_sample_the_same(cells, monkeypatch, generic, name, options):
    """From BIG_BATCH rows up the float32 products go through oneDNN: rounding differs from the BLAS
    the step path uses (~1e-6), so texts agree except after a near-tie."""
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, 2, 8, **options)
    modes, real = [], FastWeights.weights
    monkeypatch.setattr(FastWeights, "weights", lambda self, rows: modes.append(real(self, rows)[0]) or real(self, rows))
    batch = BIG_BATCH + 8
    fast = [sample(model, vocab, opts, batch, 2) for opts in OPTIONS[::2]]
    # where PyTorch has oneDNN, its packed products must pass the check against BLAS and be used
    assert set(modes) == {PACKED if torch.backends.mkldnn.is_available() else BLAS}
    generic()
    for opts, texts in zip(OPTIONS[::2], fast):
        same = sum(a == b for a, b in zip(texts, sample(model, vocab, opts, batch, 2)))
        assert same >= batch - 2, (opts, same)  # a row diverges for good after one flipped character


def leaky_cell(cells):
    """An LSTM whose step differs from ``torch.lstm_cell``: the fast path must not serve it."""

    class Leaky(cells["lstm"]):
        name = "leaky-lstm"

        def step(self, x, state, t=None):
            h, (h2, c) = super().step(x, state, t)
            return 0.5 * h, (0.5 * h2, c)

    return Leaky


def usable(mode) -> bool:
    return fastpath.packed_usable(mode, (96, 24), False, 1)


def stack_states(plan, mode_rows=2):
    token = torch.tensor([3, 5])
    with torch.inference_mode():
        mode, _, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, _ = plan.weights(mode_rows)
        hs = [torch.full((2, 64), 0.3), torch.full((2, 64), -0.2)]
        cs = [torch.full((2, 64), 0.1), torch.zeros(2, 64)] if plan.kind == fastpath.KINDS["lstm"] else []
        return fastpath.stack_step(plan.kind, mode, token, hs, cs, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, [])


@pytest.mark.parametrize("precision,mode,tolerance,logits", [("int8", INT8, 0.05, 0.15), ("float16", FP16, 0.002, 0.002)])
@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_lossy_precisions_stay_close_to_float32(cells, name, precision, mode, tolerance, logits):
    """8 bits keep about two digits of a product (input in 7-bit steps over (-1, 1)); 16-bit
    weights about three; both sum in 32 bits. Over 300 greedy steps the logits stay within
    ``logits`` times their spread of float32's, so greedy decoding takes float32's character
    wherever float32's two best are twice that apart: its text is float32's up to the first closer call."""
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, 2, 8, hidden=64)
    if not usable(mode):  # a build without fbgemm: asking for it is a clear error
        with pytest.raises(CharforgeError, match=f"precision {precision} needs PyTorch's quantized engine"):
            FastWeights.of(model, precision)
        return
    plan, exact = FastWeights.of(model, precision), FastWeights.of(model, "float32")
    assert plan.weights(1)[0] == mode and exact.weights(1)[0] == BLAS
    difference = float((stack_states(plan) - stack_states(exact)).abs().max())
    assert 0 < difference < tolerance
    text = sample(model, vocab, Settings(300, greedy=True), 1, 4)[0]
    ids = vocab.encode("The q" + text)
    want, got = (forced_logits(p, ids) for p in (exact, plan))
    bound = logits * float(want.std())
    assert float((got - want).abs().max()) < bound
    top = want.topk(2).values
    close = (top[4:-1, 0] - top[4:-1, 1]) < 2 * bound  # the logits after "The q" and each character but the last
    first = int(close.nonzero()[0]) if close.any() else len(text)
    assert sample(model, vocab, Settings(300, greedy=True), 1, 4, precision)[0][:first] == text[:first]


def forced_logits(plan, ids):
    """The read-out's logits after each of ``ids``, fed one at a time through ``plan``."""
    mode, head_mode, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, head_w = plan.weights(1)
    hs = [torch.zeros(1, w.shape[1]) for w in plan.w_hh]
    cs = [torch.zeros(1, w.shape[1]) for w in plan.w_hh] if plan.kind == fastpath.KINDS["lstm"] else []
    out = []
    with torch.inference_mode():
        for token in ids:
            x = fastpath.stack_step(plan.kind, mode, token.view(1), hs, cs, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh,
                                    [])
            out.append(fastpath.product(x, head_w, plan.head_b, None, head_mode, []))
    return torch.cat(out)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_int8_is_the_same_at_every_batch_size(cells, name):
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells[name], vocab, 2, 8, hidden=64)
    if not usable(INT8):
        pytest.skip("no quantized engine in this build")
    plan = FastWeights.of(model, "int8")
    with torch.inference_mode():  # exact integer sums on a pinned range: a row's state is the same alone
        tokens, h, c = torch.randint(len(vocab), (40,)), torch.rand(2, 40, 64) * 2 - 1, torch.randn(2, 40, 64)
        together = step_rows(plan, tokens, h, c, name)
        for row in (0, 17, 39):
            alone = step_rows(plan, tokens[row:row + 1], h[:, row:row + 1], c[:, row:row + 1], name)
            assert all(torch.equal(a, b[row:row + 1]) for a, b in zip(alone, together))
    for opts in OPTIONS[::2]:  # the read-out's last bit moves no choice here
        alone = sample(model, vocab, opts, 6, 4, "int8", batch_size=1)
        assert sample(model, vocab, opts, 6, 4, "int8", batch_size=6) == alone
        assert sample(model, vocab, opts, 6, 4, "int8", batch_size=BIG_BATCH) == alone


def step_rows(plan, tokens, h, c, name):
    """Every layer's state after one step of ``plan`` from states ``h``, ``c`` (layers, rows, hidden)."""
    mode, _, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, _ = plan.weights(len(tokens))
    hs, cs = list(h.clone()), list(c.clone()) if name == "lstm" else []
    fastpath.stack_step(plan.kind, mode, tokens, hs, cs, table, w_ih, w_hh, b_ih, b_hh, p_ih, p_hh, [])
    return hs + cs


def test_precision_choices_and_errors(cells):
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells["lstm"], vocab, 1, 0)
    with pytest.raises(CharforgeError, match=r"^--precision must be one of auto, float32, float16, int8, not 'half'\.$"):
        BatchGenerator(model, vocab, precision="half")
    relu = model_of(cells["rnn"], vocab, 1, 0, nonlinearity="relu")
    if usable(INT8):  # the range is measured per call, so an unbounded state is served, if coarsely
        assert FastWeights.of(relu, "int8").weights(1)[0] == INT8
    leaky = model_of(leaky_cell(cells), vocab, 1, 0)
    assert FastWeights.of(leaky, "auto") is None
    for precision in ("int8", "float16"):
        with pytest.raises(CharforgeError, match=f"precision {precision} needs a model of built-in"):
            FastWeights.of(leaky, precision)


def test_streaming_gives_the_text_of_a_run_at_every_length(cells):
    vocab = Vocab.from_text(TEXT)
    model = model_of(cells["lstm"], vocab, 1, 0)
    engine = BatchGenerator(model, vocab, precision="float32")
    for length in (0, 1, 7, 8, 9, 300):
        streamed = "".join(engine.stream(Request("", Settings(length)), seed=1))
        assert len(streamed) == length
        assert streamed == next(engine.run([Request("", Settings(length))], seed=1)).text


def test_cells_that_change_the_step_take_the_generic_path(cells, generic):
    vocab = Vocab.from_text(TEXT)
    model = model_of(leaky_cell(cells), vocab, 1, 0)
    assert FastWeights.of(model) is None
    text = sample(model, vocab, Settings(50, greedy=True), 1, 0, precision="auto")
    generic()
    assert text == sample(model, vocab, Settings(50, greedy=True), 1, 0)


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


def test_defaults_are_sane():
    config = TrainConfig()
    assert config.check() is config
    assert config.threads == 0  # measured as the run goes (charforge.threads, tests/test_threads.py)
    assert config.schedule == "cosine" and 0 < config.lr <= 0.01 and 0 < config.min_lr_ratio < 1
    assert config.cell == "lstm" and config.hidden_size >= 128 and config.batch_size * config.seq_len >= 1000
    assert config.embedding_dim >= 0 and config.clip == "norm"
    assert config.eval_every is None and config.log_every >= 1  # validation by the time rule (charforge.cadence)
    assert math.isfinite(TrainConfig.DEFAULT_MINUTES) and TrainConfig.DEFAULT_MINUTES > 0
