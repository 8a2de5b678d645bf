"""Simple features of a text, computed from the text alone, and the hidden units that track them.

Each feature is a float tensor (n,): the functions below give, at position i, what a reader knows
having read character i; :func:`text_features` aligns them with an
:class:`~charforge.inspection.extract.Inspection`'s traces.
:func:`find_units` ranks every unit of every layer by how well its trace follows each feature, so
the cells Karpathy et al. (2015) found (inside a quotation, bracket depth, position in the line)
can be looked for in any model.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch
from torch import Tensor

from charforge.errors import CharforgeError
from charforge.inspection.extract import Inspection

# Quoted spans, tried in this order at each position; the group ``end`` is the closing mark, if any.
_QUOTED = re.compile(
    r'(?P<open>""")(?:\\.|(?!""")[^\\])*(?P<end>""")?'  # triple quotes: across lines, to the closing triple
    r"|(?P<open3>''')(?:\\.|(?!''')[^\\])*(?P<end3>''')?"
    r'|(?P<open2>")(?:\\.|[^"\\\n]|\n(?![ \t]*\n))*(?P<end2>")?'  # to the closing " or the paragraph's end
    r"|(?<!\w)[rRbBuUfF]{0,2}(?P<open1>')"  # not an apostrophe: no letter before it, unless a string prefix
    r"(?:\\.|[^'\\\n]|(?<=[^\W\d_])'(?=[^\W\d_]))*(?P<end1>')?",  # to the closing ' or the line's end
    re.DOTALL)
_OPENERS, _CLOSERS = "([{", ")]}"


def quotes(text: str) -> Tensor:
    """1 inside a quotation, from its opening mark up to (not including) its closing one.

    The rule serves prose and Python alike: ``\"\"\"`` and ``'''`` open a span that runs, across
    lines, to the same triple; ``"`` opens one that ends at the next ``"`` or at a blank line (so
    dialogue wrapped over several lines stays inside, and a paragraph's unclosed quote stops at its
    end); ``'`` opens one only where it cannot be an apostrophe (no letter or digit right before it,
    but for a string prefix such as ``r`` or ``f``), and it ends at the next ``'`` that is not
    between two letters (``'don't'`` is one span) or at the line's end. Inside a span a backslash
    escapes the next character.
    """
    starts, ends = [], []
    for match in _QUOTED.finditer(text):
        opened = next(g for g in ("open", "open3", "open2", "open1") if match.group(g))
        closing = "end" + opened[4:]
        starts.append(match.start(opened))
        ends.append(match.start(closing) if match.group(closing) else match.end())
    return _spans(len(text), starts, ends)


def brackets(text: str) -> Tensor:
    """The nesting depth of ( [ and { after each character, counting every bracket (quoted ones
    too); a closing bracket with none open leaves the depth at 0, so a text cut from the middle of
    a file reads sensibly."""
    steps = torch.tensor([(c in _OPENERS) - (c in _CLOSERS) for c in text], dtype=torch.float64)
    depth = steps.cumsum(0)
    if not len(text):
        return depth.float()
    return (depth - depth.cummin(0).values.clamp(max=0)).float()  # the walk held at 0 from below


def line_position(text: str) -> Tensor:
    """Characters read since the last line break: 0 on a line break, 1 on a line's first character
    (the text starts after a line break, as inspection conditions it)."""
    index = torch.arange(len(text))
    breaks = torch.tensor([c == "\n" for c in text], dtype=torch.bool)
    last = torch.where(breaks, index, torch.full_like(index, -1)).cummax(0).values if len(text) else index
    return (index - last).float()


def word_start(text: str) -> Tensor:
    """1 on the first character of a word (a run of letters, digits and underscores)."""
    return regex(text, r"(?<!\w)\w")


def upper(text: str) -> Tensor:
    """1 on an upper-case letter."""
    return torch.tensor([c.isupper() for c in text], dtype=torch.float32)


def digit(text: str) -> Tensor:
    """1 on a digit."""
    return torch.tensor([c.isdigit() for c in text], dtype=torch.float32)


def regex(text: str, pattern: str) -> Tensor:
    """1 on every character inside a match of ``pattern`` (matches found left to right, not
    overlapping; an empty match marks nothing); a pattern that does not compile is one line."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise CharforgeError(f"the regular expression {pattern!r} does not compile: {exc}.") from None
    found = [(m.start(), m.end()) for m in compiled.finditer(text) if m.end() > m.start()]
    return _spans(len(text), [s for s, _ in found], [e for _, e in found])


def _spans(n: int, starts: list[int], ends: list[int]) -> Tensor:
    """(n,) with 1 in every [start, end), 0 elsewhere (the spans do not overlap)."""
    marks = torch.zeros(n + 1)
    marks.index_add_(0, torch.tensor(starts, dtype=torch.long), torch.ones(len(starts)))
    marks.index_add_(0, torch.tensor(ends, dtype=torch.long), -torch.ones(len(ends)))
    return marks.cumsum(0)[:n].clamp_(0, 1)


_FEATURES = {"quotes": quotes, "brackets": brackets, "line_position": line_position,
             "word_start": word_start, "upper": upper, "digit": digit}
BUILT_IN = tuple(_FEATURES)  # the features every --find ranks, in its table's order


def parse_features(specs: Sequence[str]) -> dict[str, str]:
    """``NAME=REGEX`` strings (``--feature``) as {name: pattern}; a malformed or repeated one is one line."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, pattern = spec.partition("=")
        name = name.strip()
        if not sep or not name or not pattern:
            raise CharforgeError(f"a feature is NAME=REGEX (such as vowel=[aeiou]), not {spec!r}.")
        if name in out:
            raise CharforgeError(f"the feature {name!r} is given twice.")
        out[name] = pattern
    return out


def text_features(text: str, patterns: Mapping[str, str] | None = None) -> dict[str, Tensor]:
    """Every built-in feature of ``text``, then one per ``patterns`` entry (name -> regular
    expression, 1 inside each match), aligned with an Inspection's traces (position i: the
    character i, which the trace there has just read); a name that is a built-in's is one line."""
    patterns = dict(patterns or {})
    clash = sorted(set(patterns) & set(_FEATURES))
    if clash:
        raise CharforgeError(f"{clash[0]!r} is a built-in feature; name the regular expression otherwise "
                             f"(the built-ins: {', '.join(BUILT_IN)}).")
    out = {name: make(text) for name, make in _FEATURES.items()}
    out.update({name: regex(text, pattern) for name, pattern in patterns.items()})
    return out


def find_units(inspection: Inspection, features: Mapping[str, Tensor], top: int = 3,
               names: Sequence[str] = ("h", "c")) -> dict[str, list[tuple[int, str, int, float]]]:
    """For each feature, the ``top`` units whose traces follow it best: (layer, name, unit,
    Pearson correlation), by the correlation's size, its sign kept. Every layer's traces called one
    of ``names`` take part (``c`` only where a layer has it). A constant unit correlates 0; a feature
    constant over the text (no digits in it, say) has no units: an empty list."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise CharforgeError(f"top must be a whole number of at least 1, not {top!r}.")
    n = len(inspection)
    for name, values in features.items():
        if tuple(values.shape) != (n,):
            raise CharforgeError(f"the feature {name!r} has shape {tuple(values.shape)}; the text has {n} "
                                 f"characters.")
    keys = [key for key in inspection.traces if key.split(".", 1)[1] in names]
    if not keys:
        raise CharforgeError(f"the model has no trace called {' or '.join(names)}; it has "
                             f"{', '.join(inspection.traces) or 'none'}.")
    if not features:
        return {}
    wanted = _unit(torch.stack([v.float() for v in features.values()], 1))  # (n, features)
    labels, rows = [], []
    for key in keys:
        layer, name = key.split(".", 1)
        trace = _unit(inspection.traces[key])  # (n, hidden), float32: one trace's copies at a time
        rows.append(trace.T @ wanted)  # (hidden, features): every unit's correlation with every feature
        labels += [(int(layer), name, unit) for unit in range(trace.shape[1])]
    table = torch.cat(rows)
    best = table.abs().topk(min(top, len(labels)), dim=0).indices  # (top, features)
    varies = wanted.abs().amax(0) > 0
    return {feature: [(*labels[i], float(table[i, j])) for i in best[:, j].tolist()] if varies[j] else []
            for j, feature in enumerate(features)}


def _unit(columns: Tensor) -> Tensor:
    """Each column centred and scaled to length 1 (a constant column: all 0), so that the dot
    product of two columns is their Pearson correlation."""
    if len(columns) < 2:
        return torch.zeros_like(columns)
    centred = columns - columns.mean(0, keepdim=True)
    varies = columns.amax(0) > columns.amin(0)  # exactly: a constant's centred values are rounding noise
    return torch.where(varies, centred / centred.norm(dim=0).where(varies, torch.ones(())), 0.0)
