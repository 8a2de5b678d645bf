"""model.inspect against direct computation: the losses are score's, the traces the cells' own steps."""

from __future__ import annotations

import math

import pytest
import torch

from charforge.api import Model
from charforge.errors import CharforgeError
from charforge.inspection import extract
from charforge.model import CharModel
from charforge.vocab import Vocab
from _cells import TinyCell

TEXT = 'print("a (b [c]) d")\nIt said "Hello, 42 times".\n' * 3
CELLS = [("rnn", {}), ("lstm", {}), ("gru", {}), ("phased-lstm", {"tau_log_min": 0.5, "tau_log_max": 2.0})]


def build(registry, cell, options, layers=2, hidden=12, embedding=0, seed=0):
    torch.manual_seed(seed)
    vocab = Vocab.from_text(TEXT)
    model = CharModel(len(vocab), registry.get("cell", cell).obj, hidden, layers, embedding_dim=embedding,
                      cell_options=options).double().float()
    return model, vocab


def stepped(model, vocab, text):
    """The reference: the model's own one-step path, character by character, from a line break:
    the loss of each character, and every layer's state once it has read it."""
    ids = vocab.encode(text)
    state = model.initial_state(1)
    token = torch.tensor([vocab.index["\n"]])
    losses, states = [], []
    with torch.no_grad():
        for i in range(len(ids)):
            t = torch.tensor([float(i)], dtype=torch.float64) if model.uses_time else None
            logits, state = model.step(token, state, t)
            losses.append(-logits.log_softmax(-1)[0, ids[i]])
            token = ids[i:i + 1]
            t = torch.tensor([float(i + 1)], dtype=torch.float64) if model.uses_time else None
            state_after = model.step(token, state, t)[1]
            states.append([tuple(s[0].clone() for s in layer) for layer in state_after])
    return torch.stack(losses), states


@pytest.mark.parametrize("cell,options", CELLS, ids=[c for c, _ in CELLS])
def test_losses_are_score_and_traces_are_the_steps(registry, cell, options, monkeypatch):
    monkeypatch.setattr(extract, "WINDOW", 16)  # several windows, the state carried across them
    model, vocab = build(registry, cell, options, embedding=5 if cell == "gru" else 0)
    api = Model(model, vocab)
    seen = api.inspect(TEXT)
    assert len(seen) == len(TEXT) and seen.losses.shape == (len(TEXT),)
    score = api.score(TEXT, prompt="")
    assert float(seen.losses.double().sum()) == pytest.approx(-score.log_likelihood, rel=1e-5)
    assert seen.bits_per_char == pytest.approx(score.bits_per_char, rel=1e-5)
    losses, states = stepped(model, vocab, TEXT)
    torch.testing.assert_close(seen.losses, losses, atol=2e-5, rtol=1e-4)
    names = ["h", "c"] if cell in ("lstm", "phased-lstm") else ["h"]
    for layer in range(2):
        for j, name in enumerate(names):
            expected = torch.stack([s[layer][j] for s in states])
            torch.testing.assert_close(seen.trace(layer, name), expected, atol=2e-5, rtol=1e-4)
        assert seen.names(layer)[:len(names)] == names


def test_lstm_gates_are_the_gates_of_its_step(registry):
    model, vocab = build(registry, "lstm", {}, layers=1)
    seen = Model(model, vocab).inspect(TEXT)
    w_ih, w_hh, b_ih, b_hh = model.layers[0]._weights()
    start = torch.tensor([vocab.index["\n"]])
    with torch.no_grad():
        h0 = model.step(start, model.initial_state(1))[1][0][0]  # the state once the line break is read
    h = torch.cat([h0, seen.trace(0, "h")[:-1]])
    x = torch.nn.functional.one_hot(vocab.encode(TEXT), len(vocab)).float()
    with torch.no_grad():
        i, f, _, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    for name, pre in (("i", i), ("f", f), ("o", o)):
        torch.testing.assert_close(seen.trace(0, f"gate.{name}"), pre.sigmoid(), atol=1e-5, rtol=1e-4)
    left, right = seen.saturation()["0.gate.f"]
    assert left.shape == right.shape == (12,)
    assert bool(((left + right) <= 1).all()) and bool((left >= 0).all())
    assert float(right.mean()) == pytest.approx(float((seen.trace(0, "gate.f") > 0.9).float().mean()))


def test_gru_gates_and_the_phased_lstm_clock(registry):
    model, vocab = build(registry, "gru", {}, layers=1)
    seen = Model(model, vocab).inspect(TEXT)
    assert seen.names(0) == ["h", "gate.r", "gate.z"]
    assert 0 <= float(seen.trace(0, "gate.z").min()) and float(seen.trace(0, "gate.z").max()) <= 1
    model, vocab = build(registry, "phased-lstm", CELLS[3][1], layers=1)
    seen = Model(model, vocab).inspect(TEXT)
    cell = model.layers[0]
    t = torch.arange(1, len(TEXT) + 1, dtype=torch.float64)  # step 0 reads the line break before the text
    torch.testing.assert_close(seen.trace(0, "time.k"), cell.time_gate(t).detach())
    clock = seen.clocks[0]
    torch.testing.assert_close(clock["period"], cell.tau.detach().abs())
    assert set(clock) == {"period", "open_ratio", "shift"}


def test_a_cell_with_step_alone_is_inspected_through_the_default(registry):
    vocab = Vocab.from_text(TEXT)
    torch.manual_seed(1)
    model = CharModel(len(vocab), TinyCell, 6, 1)
    seen = Model(model, vocab).inspect(TEXT)
    assert seen.names(0) == ["h"] and seen.clocks == {}
    _, states = stepped(model, vocab, TEXT)
    torch.testing.assert_close(seen.trace(0, "h"), torch.stack([s[0][0] for s in states]), atol=1e-6, rtol=1e-5)


def test_predictions_spans_and_units(registry):
    model, vocab = build(registry, "lstm", {}, layers=1)
    seen = Model(model, vocab).inspect(TEXT, top=3)
    predictions = seen.predictions(5)
    assert len(predictions) == 3 and [p for _, p in predictions] == sorted((p for _, p in predictions), reverse=True)
    direct = sorted(_all_probs(model, vocab, 5), key=lambda cp: -cp[1])
    assert [c for c, _ in predictions] == [c for c, _ in direct[:3]]
    assert [p for _, p in predictions] == pytest.approx([p for _, p in direct[:3]], rel=1e-5)
    assert seen.bits[5] == pytest.approx(-math.log2(dict(direct)[TEXT[5]]), rel=1e-4)
    spans = seen.surprising_spans(3, width=4)
    assert len(spans) == 3 and spans[0][2] >= spans[1][2] >= spans[2][2]
    assert all(b - a == 4 for a, b, _ in spans)
    assert all(b1 <= a2 or b2 <= a1 for i, (a1, b1, _) in enumerate(spans) for a2, b2, _ in spans[i + 1:])
    assert float(seen.bits[spans[0][0]:spans[0][1]].mean()) == pytest.approx(spans[0][2], rel=1e-5)
    torch.testing.assert_close(seen.unit(0, 3, "c"), seen.trace(0, "c")[:, 3])
    with pytest.raises(CharforgeError, match="units 0 to 11"):
        seen.unit(0, 12)
    with pytest.raises(CharforgeError, match="no trace 'gate.z'"):
        seen.trace(0, "gate.z")


def _all_probs(model, vocab, position):
    ids = vocab.encode(TEXT[:position])
    inputs = torch.cat([torch.tensor([vocab.index["\n"]]), ids])
    with torch.no_grad():
        logits, _ = model(inputs.unsqueeze(0), model.initial_state(1))
    probs = logits[0, -1].softmax(-1)
    return [(vocab.chars[i], float(p)) for i, p in enumerate(probs)]


def test_refusals_and_the_empty_text(registry):
    model, vocab = build(registry, "rnn", {}, layers=1)
    api = Model(model, vocab)
    with pytest.raises(CharforgeError, match="Z"):
        api.inspect("Zebra")  # a character the model does not know
    with pytest.raises(CharforgeError, match="top must be"):
        api.inspect("abc", top=0)
    with pytest.raises(CharforgeError, match="must be a string"):
        api.inspect(b"abc")
    empty = api.inspect("")
    assert len(empty) == 0 and empty.bits_per_char == 0.0 and empty.surprising_spans() == []
    model.train()
    api.inspect("ab")
    assert model.training  # the mode is the caller's again afterwards


def test_a_text_whose_traces_cannot_fit_is_refused(registry, monkeypatch):
    model, vocab = build(registry, "lstm", {}, layers=1)
    monkeypatch.setattr(extract, "available_memory", lambda: 1000)
    with pytest.raises(CharforgeError, match="GB for the traces"):
        Model(model, vocab).inspect(TEXT)
