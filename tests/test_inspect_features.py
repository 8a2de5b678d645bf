"""The text features of ``charforge inspect --find`` on small strings, and the ranking of units by them:
a hand-wired LSTM whose one unit holds "inside double quotes" must be found, through the real
extraction, while its untouched units score low."""

from __future__ import annotations

import random

import pytest
import torch

from charforge.errors import CharforgeError
from charforge.inspection.extract import Inspection, inspect_model
from charforge.inspection.features import (BUILT_IN, brackets, digit, find_units, line_position, parse_features,
                                           quotes, regex, text_features, upper, word_start)
from charforge.model import CharModel
from charforge.vocab import Vocab


def marked(text: str, values: torch.Tensor) -> str:
    """The positions where a 0/1 feature is 1, as carets under the text (a readable assertion)."""
    return "".join("^" if v else " " for v in values.tolist())


# -- the features ---------------------------------------------------------------------------------------

def test_quotes_in_prose_skip_apostrophes_and_span_wrapped_lines():
    text = 'He said "it\'s late" and the dogs\' bowls.\n"Go\nnow," she said.'
    assert marked(text, quotes(text)) == "        ^^^^^^^^^^                       ^^^^^^^^           "[:len(text)]
    assert quotes('"open\n\nshut"')[:6].tolist() == [1, 1, 1, 1, 1, 0]  # a blank line ends an unclosed quote


def test_quotes_in_python_code():
    text = "x = f'{a}' + \"b\\\"c\" + '''doc\nmore''' # it's\ny = 'open\nz"
    # f'..' (the prefix outside), "..\".." (escaped), a triple over two lines, it's (no quote), 'open to the line's end
    expected = " " * 5 + "^" * 4 + " " * 4 + "^" * 5 + " " * 4 + "^" * 11 + " " * 15 + "^" * 5 + " " * 2
    assert marked(text, quotes(text)) == expected
    assert quotes("don't 'x'").tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0]  # the closing mark is outside


def test_brackets_count_depth_and_never_go_below_zero():
    assert brackets("a(b[c]{d}))(x").tolist() == [0, 1, 1, 2, 2, 1, 2, 2, 1, 0, 0, 1, 1]
    assert brackets("").tolist() == []


def test_line_position_restarts_after_each_line_break():
    assert line_position("ab\ncd\n\ne").tolist() == [1, 2, 0, 1, 2, 0, 0, 1]


def test_word_start_upper_digit():
    assert word_start("hi there_x 3d.a").tolist() == [1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1]
    assert upper("aBÉ1").tolist() == [0, 1, 1, 0]
    assert digit("a1٣ ").tolist() == [0, 1, 1, 0]


def test_a_regular_expression_marks_every_match_and_bad_ones_are_one_line():
    assert regex("hello world", "o.").tolist() == [0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0]
    assert regex("abc", "x*").tolist() == [0, 0, 0]  # empty matches mark nothing
    with pytest.raises(CharforgeError, match="does not compile") as caught:
        regex("abc", "(")
    assert "\n" not in str(caught.value)


def test_user_features_are_parsed_and_checked():
    assert parse_features(["vowel=[aeiou]", "eq==="]) == {"vowel": "[aeiou]", "eq": "=="}
    for bad, message in ((["novalue"], "NAME=REGEX"), (["=x"], "NAME=REGEX"), (["a=x", "a=y"], "twice")):
        with pytest.raises(CharforgeError, match=message):
            parse_features(bad)
    with pytest.raises(CharforgeError, match="built-in"):
        text_features("abc", {"quotes": "a"})
    features = text_features("ab 1", {"vowel": "[aeiou]"})
    assert list(features) == [*BUILT_IN, "vowel"]
    # aligned with the traces: position i holds the feature of character i
    assert features["vowel"].tolist() == [1, 0, 0, 0] and features["digit"].tolist() == [0, 0, 0, 1]
    assert features["line_position"].tolist() == [1, 2, 3, 4]


# -- ranking units ----------------------------------------------------------------------------------------

def by_hand(traces: dict[str, torch.Tensor], text: str) -> Inspection:
    n = len(text)
    return Inspection(text, [], torch.zeros(n, dtype=torch.long), torch.zeros(n), torch.zeros(n, 1, dtype=torch.long),
                      torch.ones(n, 1), traces)


def test_find_units_ranks_by_correlation_keeps_the_sign_and_zeroes_constants():
    gen = torch.Generator().manual_seed(0)
    feature = (torch.rand(500, generator=gen) > 0.5).float()
    h, c = torch.randn(500, 6, generator=gen), torch.randn(500, 6, generator=gen)
    h[:, 4] = 1.0  # a constant unit: correlation 0, not NaN
    c[:, 2] = -3 * feature + 0.1 * torch.randn(500, generator=gen)
    gate = feature.unsqueeze(1).repeat(1, 6)  # a gate is not a state: never ranked
    inspection = by_hand({"0.h": h, "0.c": c, "0.gate.f": gate, "1.h": torch.randn(500, 3, generator=gen)}, "x" * 500)
    found = find_units(inspection, {"f": feature, "flat": torch.ones(500)}, top=4)
    (layer, name, unit, r), *rest = found["f"]
    assert (layer, name, unit) == (0, "c", 2) and r < -0.99
    assert len(rest) == 3 and all(abs(x[3]) < 0.2 for x in rest)
    every = {x[:3]: x[3] for x in find_units(inspection, {"f": feature}, top=15)["f"]}  # all 15 h and c units
    assert len(every) == 15
    assert every[(0, "h", 0)] == pytest.approx(float(torch.corrcoef(torch.stack([h[:, 0], feature]))[0, 1]), abs=1e-6)
    assert every[(0, "h", 4)] == 0.0
    assert found["flat"] == []  # a feature constant over the text tracks nothing


def test_find_units_refuses_bad_arguments_in_one_line():
    inspection = by_hand({"0.h": torch.randn(10, 2)}, "x" * 10)
    for call, message in ((lambda: find_units(inspection, {"f": torch.zeros(9)}), "shape"),
                          (lambda: find_units(inspection, {"f": torch.zeros(10)}, top=0), "top"),
                          (lambda: find_units(inspection, {"f": torch.zeros(10)}, names=("c",)), "no trace")):
        with pytest.raises(CharforgeError, match=message):
            call()


QUOTE_SAYINGS = ["the river is high", "come in", "not today", "bread and water", "it was the king"]


def quoted_prose(n_words: int = 600, seed: int = 1) -> str:
    """Prose in which some words run inside double quotes, and no apostrophes or single quotes."""
    rng = random.Random(seed)
    words = "the old house stood by a river and the queen walked into her garden at morning".split()
    out = []
    while len(out) < n_words:
        out.append(f'"{rng.choice(QUOTE_SAYINGS)}"' if rng.random() < 0.2 else rng.choice(words))
        if rng.random() < 0.1:
            out.append(".\n")
    return " ".join(out) + "\n"


def planted_lstm(vocab: Vocab, hidden: int = 16, planted: int = 5) -> CharModel:
    """A real one-layer LSTM from the registry whose unit ``planted`` is wired to hold "inside double
    quotes" in its cell state: on a ``"`` it forgets and writes 1 if it was outside (its h near 0),
    and writes nothing if it was inside; on any other character it keeps what it holds."""
    from charforge.plugins import Registry, make_plugin_manager

    cell = Registry(make_plugin_manager()).get("cell", "lstm").obj
    torch.manual_seed(0)
    model = CharModel(len(vocab), cell, hidden)
    rnn = model.layers[0].rnn
    q, big = vocab.index['"'], 20.0
    i, f, g, o = (k * hidden + planted for k in range(4))  # PyTorch's gate order: i, f, g, o
    with torch.no_grad():
        w_ih, w_hh, b_ih, b_hh = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
        for row in (i, f, g, o):
            w_ih[row], w_hh[row], b_ih[row], b_hh[row] = 0.0, 0.0, 0.0, 0.0
        w_hh[:, planted] = 0.0  # the other units do not read it: they stay unrelated to the quotes
        b_ih[i], w_ih[i, q], w_hh[i, planted] = -big, 2 * big, -4 * big  # write on a quote, if outside
        b_ih[f], w_ih[f, q] = big, -2 * big  # keep, but forget on a quote
        b_ih[g] = b_ih[o] = big  # what is written is 1, and h shows c
    return model


def test_find_units_finds_the_planted_quote_unit_through_the_real_extraction():
    text = quoted_prose()
    vocab = Vocab.from_text(text)
    inspection = inspect_model(planted_lstm(vocab), vocab, text)
    wanted = text_features(text)["quotes"]
    assert float(inspection.unit(0, 5, "c")[wanted == 1].min()) > 0.9  # the wiring does what it says
    assert float(inspection.unit(0, 5, "c")[wanted == 0].max()) < 0.1
    found = find_units(inspection, text_features(text), top=3)
    layer, name, unit, r = found["quotes"][0]
    assert (layer, unit) == (0, 5) and r > 0.9
    others = find_units(inspection, {"quotes": wanted}, top=32)["quotes"]
    assert max(abs(r) for layer, name, unit, r in others if unit != 5) < 0.6
