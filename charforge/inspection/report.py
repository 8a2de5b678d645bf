"""The self-contained HTML report of an :class:`~charforge.inspection.extract.Inspection`: one file,
viewable with no network (its styles, script, data and plots are inline, and its content security
policy forbids fetching anything), showing the text coloured by surprisal or by a chosen unit, what
the model expected at the character under the pointer (or pinned by a click, or by ``#pos=N`` in the
address), the text's bits per character, its most surprising spans and the plots of :mod:`.plots`.

The text is untrusted: the page draws it from a JSON block with ``textContent`` (never as markup),
and the block has every ``<``, ``>`` and ``&`` escaped, so no text can end the block or open a
comment. Only what the views need is embedded: the text, each character's bits, the top predictions
and the chosen units, never every trace.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch

from charforge.errors import CharforgeError
from charforge.inspection.extract import SURPRISAL_TOP, TOP, Inspection, colour_range
from charforge.inspection.plots import chosen_units, figures

HERE = Path(__file__).parent
BIT_EDGES = (0.5, 1.0, 2.0, 4.0, SURPRISAL_TOP)  # surprisal bins in bits: calm below the first, hot past the last
SURPRISAL_COLOURS = ("#e4f2e7", "#fbefa6", "#f9c75a", "#ef8f3c", "#d6452f", "#870a17")  # calm to hot
UNIT_COLOURS = ("#1f5fa8", "#3f8ac4", "#8cbfdd", "#cfe3ef", "#f5f5f5", "#f8d5c3", "#ef9f7e",
                "#d15a48", "#a3142a")  # a unit's value, low (blue) through the middle (white) to high (red)
LIGHT_TEXT = {"s4", "s5", "u0", "u1", "u7", "u8"}  # colour classes dark enough to need white text
PANEL_COLOUR = "#20304f"  # the prediction panel's background
SPANS = 8  # most surprising spans listed
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _rounded(values: torch.Tensor, places: int) -> list[float]:
    """Values for the page: finite (an infinite loss shows as a large one) and short to write."""
    values = torch.nan_to_num(values.double(), nan=0.0, posinf=1e6, neginf=-1e6)
    return values.mul(10 ** places).round().div(10 ** places).tolist()


def _unit_data(inspection: Inspection, layer: int, name: str, unit: int, label: str) -> dict:
    """One unit's values and the range its colours span: [0, 1] for gates and openness, else
    symmetric about 0, wide enough for the unit (a cell state can pass 1)."""
    values = inspection.unit(layer, unit, name).double()
    low, high = colour_range(name, values)
    return {"label": label, "low": low, "high": high, "values": _rounded(values, 3)}


def page_data(inspection: Inspection, found=None, units=()) -> dict:
    """What the page's script reads: the text, the vocabulary, each character's bits, the top
    predictions (ids into the vocabulary, and probabilities), the chosen units and the spans."""
    k = min(TOP, inspection.top_ids.shape[1])
    return {
        "text": inspection.text,
        "chars": list(inspection.chars),
        "bits": _rounded(inspection.bits, 3),
        "top": inspection.top_ids[:, :k].tolist(),
        "probs": _rounded(inspection.top_probs[:, :k], 4),
        "units": [_unit_data(inspection, *u) for u in chosen_units(inspection, units, found)],
        "spans": [[start, end, round(bits, 3)] for start, end, bits in inspection.surprising_spans(SPANS)],
        "edges": list(BIT_EDGES),
        "bits_per_char": round(inspection.bits_per_char, 4),
    }


def script_json(data) -> str:
    """``data`` as JSON safe inside a ``<script>`` block: ASCII only, with ``<``, ``>`` and ``&``
    written as escapes, so nothing in it can close the block or start a comment."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _palette() -> str:
    """The colour classes the script assigns: ``s0``... for surprisal bins, ``u0``... for units."""
    classes = ([(f"s{i}", c) for i, c in enumerate(SURPRISAL_COLOURS)]
               + [(f"u{i}", c) for i, c in enumerate(UNIT_COLOURS)])
    rules = [f".{name}{{background:{c};{'color:#fff;' if name in LIGHT_TEXT else ''}}}" for name, c in classes]
    return "\n".join(rules + [f"#panel{{background:{PANEL_COLOUR};}}"])


def _plots(inspection: Inspection, found, units) -> str:
    """The plots as inline images, captioned."""
    captions = {"surprisal": "Surprisal along the text", "units": "The chosen units over the text",
                "gates": "Gate saturation (Karpathy et al. 2015)", "time": "The time gate's openness",
                "clocks": "Learned periods and open ratios"}
    return "\n".join(
        f'<figure><img alt="{captions[name]}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{captions[name]}</figcaption></figure>"
        for name, png in figures(inspection, found, units).items())


def render(inspection: Inspection, found=None, units=(), title: str | None = None) -> str:
    """The report as one HTML document (see :func:`write_report`)."""
    if not isinstance(inspection, Inspection):
        raise CharforgeError(f"a report is made from an Inspection (model.inspect(text)), "
                             f"not {type(inspection).__name__}.")
    title = html.escape(title if title is not None else "charforge inspect", quote=True)
    data = script_json(page_data(inspection, found, units))
    summary = (f"{len(inspection):,} characters, {inspection.bits_per_char:.3f} bits per character, "
               f"a vocabulary of {len(inspection.chars)}")
    style = (HERE / "report.css").read_text(encoding="utf-8") + "\n" + _palette()
    script = (HERE / "report.js").read_text(encoding="utf-8")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>\n{style}\n</style>",
        "</head>",
        "<body>",
        f'<header><h1>{title}</h1><p id="summary">{summary}</p></header>',
        '<div id="controls"><label>Colour by <select id="view"></select></label><span id="legend"></span>'
        '<span class="hint">hover a character for what the model expected; click to pin it</span></div>',
        '<main><div id="text"></div><aside id="panel" hidden></aside></main>',
        '<noscript><p>This report draws the text with JavaScript; allow it to see the text.</p></noscript>',
        '<section><h2>Most surprising spans</h2><ol id="spans"></ol></section>',
        f'<section id="plots"><h2>Plots</h2>\n{_plots(inspection, found, units)}\n</section>',
        f'<script type="application/json" id="charforge-data">{data}</script>',
        f"<script>\n{script}\n</script>",
        "</body>",
        "</html>",
        ""])


def write_report(inspection: Inspection, path: str | Path, found=None, units=(), title: str | None = None) -> Path:
    """Write the report of ``inspection`` to ``path``: the text coloured by surprisal, or by any of
    ``units`` ((layer, name, unit) each) and the best unit of each feature in ``found`` (feature ->
    [(layer, name, unit, correlation), ...], from :func:`~charforge.inspection.features.find_units`);
    the predictions and unit values at each character; the summary and the plots. Returns the path."""
    document = render(inspection, found, units, title)
    path = Path(path)
    try:
        path.write_text(document, encoding="utf-8")
    except OSError as e:
        raise CharforgeError(f"cannot write the report to {path}: {e.strerror or e}.") from None
    return path
