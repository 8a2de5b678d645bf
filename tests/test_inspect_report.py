"""The inspection report and plots: one HTML file that needs no network, whose data block no text can
break out of, whose numbers are the Inspection's; PNG plots, each only where there is something to
show; and the report opened in real headless chromium, its screenshot checked for the colours."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest
import torch

from charforge.errors import CharforgeError
from charforge.inspection.extract import Inspection
from charforge.inspection.plots import figures, write_plots
from charforge.inspection.report import (PANEL_COLOUR, SURPRISAL_COLOURS, page_data, render, script_json,
                                         write_report)

HOSTILE = ('</script><script>alert(1)</script> <!-- --> <![CDATA[ ]]> & &amp; "\'`\x00\x01\x1b[31m\x7f'
           '\x85\u2028\u2029\u202e é ß 中文 😀👍🏽\ufeff\n\t</SCRIPT >')
PNG = b"\x89PNG\r\n\x1a\n"


def inspection(text: str, traces=("h", "c", "gate.i", "gate.f", "gate.o"), hidden: int = 6, clock: bool = False,
               losses: torch.Tensor | None = None, seed: int = 0) -> Inspection:
    """An Inspection built by hand: random predictions and traces of the right shapes."""
    g = torch.Generator().manual_seed(seed)
    chars = sorted(set(text)) or ["\n"]
    n, k = len(text), min(5, len(chars))
    probs = torch.rand(n, len(chars), generator=g).softmax(1)
    top = probs.topk(k, dim=1)
    made = {}
    for name in traces:
        values = torch.rand(n, hidden, generator=g)
        made[f"0.{name}"] = values if name.startswith(("gate.", "time.")) else values * 4 - 2
    clocks = {0: {"period": torch.rand(hidden, generator=g) * 50 + 2,
                  "open_ratio": torch.rand(hidden, generator=g) * 0.1,
                  "shift": torch.rand(hidden, generator=g)}} if clock else {}
    return Inspection(text, chars, torch.tensor([chars.index(c) for c in text], dtype=torch.long),
                      losses if losses is not None else torch.rand(n, generator=g) * 6, top.indices, top.values,
                      made, clocks)


class _Scripts(HTMLParser):
    """The script elements of a document, as an HTML parser (a browser's rules) splits them."""

    def __init__(self):
        super().__init__()
        self.scripts: list[tuple[dict, str]] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data):
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._open = None


def _scripts(document: str) -> list[tuple[dict, str]]:
    parser = _Scripts()
    parser.feed(document)
    parser.close()
    return parser.scripts


def _data(document: str) -> dict:
    blocks = [text for attrs, text in _scripts(document) if attrs.get("type") == "application/json"]
    assert len(blocks) == 1
    return json.loads(blocks[0])


# -- the file --------------------------------------------------------------------------------------

def test_report_is_one_file_that_needs_no_network(tmp_path):
    ins = inspection("def f(x):\n    return 'a' + x  # done\n", clock=True, traces=("h", "c", "gate.f", "time.k"))
    path = write_report(ins, tmp_path / "report.html", units=[(0, "c", 2)], title="a title")
    document = path.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert "http://" not in document and "https://" not in document
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", document)
    assert sources and all(s.startswith(("data:image/png;base64,", "#")) for s in sources), sources  # "#": in-page
    assert "Content-Security-Policy" in document and "default-src 'none'" in document
    assert "<link" not in document and "@import" not in document and "url(" not in document
    assert document.count("<figure>") == 5  # surprisal, the unit, the gates, the time gate, the clock
    assert "<title>a title</title>" in document


def test_hostile_text_and_title_cannot_break_out_of_the_page(tmp_path):
    text = HOSTILE * 3
    ins = inspection(text)
    document = write_report(ins, tmp_path / "r.html", title="<script>alert(2)</script>").read_text(encoding="utf-8")
    scripts = _scripts(document)
    assert [attrs.get("type") for attrs, _ in scripts] == ["application/json", None]
    assert document.count("</script") == 2 and document.lower().count("<script") == 2
    assert "<!--" not in document and "alert(1)" not in document.split("<body>")[0]
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in document
    data = _data(document)
    assert data["text"] == text and len(data["bits"]) == len(text)
    assert data["chars"] == ins.chars


def test_the_data_block_is_ascii_and_round_trips():
    block = script_json({"text": HOSTILE, "x": [1.5, -2]})
    assert block.isascii()
    assert not {"<", ">", "&"} & set(block)
    assert json.loads(block) == {"text": HOSTILE, "x": [1.5, -2]}


def test_the_page_data_are_the_inspections_numbers():
    ins = inspection("Some text (with [brackets]) and \"quotes\".\n" * 4)
    found = {"quotes": [(0, "h", 4, 0.875), (0, "c", 1, -0.5)], "digit": []}
    data = page_data(ins, found=found, units=[(0, "gate.f", 3), (0, "h", 4)])
    assert data["bits"] == pytest.approx(ins.bits.tolist(), abs=6e-4)
    assert data["bits_per_char"] == pytest.approx(ins.bits_per_char, abs=1e-4)
    assert data["top"] == ins.top_ids.tolist()
    assert torch.allclose(torch.tensor(data["probs"]), ins.top_probs, atol=6e-5, rtol=0)
    labels = [u["label"] for u in data["units"]]
    assert labels == ["0:3:gate.f", "0:4:h, quotes #1 r=+0.88", "0:1:c quotes #2 r=-0.50"]
    assert data["units"][0]["values"] == pytest.approx(ins.unit(0, 3, "gate.f").tolist(), abs=6e-4)
    assert (data["units"][0]["low"], data["units"][0]["high"]) == (0.0, 1.0)
    c = data["units"][2]
    assert c["high"] == -c["low"] == pytest.approx(max(1.0, float(ins.unit(0, 1, "c").abs().max())), abs=1e-6)
    assert [tuple(s[:2]) for s in data["spans"]] == [s[:2] for s in ins.surprising_spans(8)]


def test_a_long_text_embeds_only_what_the_views_need():
    ins = inspection(("All work and no play. " * 300)[:6000], hidden=64)
    data = page_data(ins, units=[(0, "h", 1)])
    assert set(data) == {"text", "chars", "bits", "top", "probs", "units", "spans", "edges", "bits_per_char"}
    assert len(data["units"]) == 1 and len(data["top"][0]) == 5
    assert len(script_json(data)) < 120 * len(ins)  # every trace of 64 units would be far more


def test_an_empty_text_makes_a_report_without_plots(tmp_path):
    document = render(inspection("", traces=("h",)))
    assert _data(document)["text"] == "" and "<figure>" not in document


@pytest.mark.parametrize("units, found, message", [
    ([(0, "h", 99)], None, "units 0 to 5"),
    ([(3, "h", 0)], None, "no trace 'h' in layer 3"),
    ([(0, "gate.z", 0)], None, "no trace 'gate.z'"),
    ([(0, 1)], None, "(layer, name, unit)"),
    ([("0", "h", 1)], None, "whole numbers"),
    ((), {"quotes": [(0, "h", 1)]}, "(layer, name, unit, correlation)"),
])
def test_bad_units_are_one_line_errors(tmp_path, units, found, message):
    with pytest.raises(CharforgeError) as error:
        write_report(inspection("abc abc\n"), tmp_path / "r.html", found=found, units=units)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_path_is_a_one_line_error(tmp_path):
    with pytest.raises(CharforgeError, match="cannot write the report"):
        write_report(inspection("abc\n"), tmp_path / "missing" / "r.html")
    with pytest.raises(CharforgeError, match="from an Inspection"):
        write_report("abc", tmp_path / "r.html")


# -- the plots -------------------------------------------------------------------------------------

def _pngs(paths) -> dict[str, bytes]:
    out = {p.stem: p.read_bytes() for p in paths}
    assert all(data.startswith(PNG) and len(data) > 2000 for data in out.values())
    return out


def test_plots_of_an_lstm_show_its_gates(tmp_path):
    ins = inspection("the cat sat on the mat.\n" * 5)
    written = _pngs(write_plots(ins, tmp_path / "plots", units=[(0, "h", 1)],
                                found={"upper": [(0, "c", 2, 0.4)]}))
    assert sorted(written) == ["gates", "surprisal", "units"]


def test_a_feature_name_is_drawn_as_written_not_as_mathematics(tmp_path):
    ins = inspection("the cat sat on the mat.\n" * 5)
    written = write_plots(ins, tmp_path, found={"$\\foo$": [(0, "c", 2, 0.4)], "a$b$": [(0, "h", 1, 0.3)]})
    assert "units" in _pngs(written)  # matplotlib's mathtext would fail on \foo


def test_plots_show_no_gates_for_a_cell_without_them(tmp_path):
    ins = inspection("the cat sat on the mat.\n" * 5, traces=("h",))
    assert sorted(_pngs(write_plots(ins, tmp_path))) == ["surprisal"]


def test_plots_of_a_time_cell_show_its_openness_and_clock(tmp_path):
    ins = inspection("tick tock " * 20, traces=("h", "c", "gate.i", "time.k"), clock=True)
    assert sorted(_pngs(write_plots(ins, tmp_path))) == ["clocks", "gates", "surprisal", "time"]
    assert figures(inspection("", traces=("h",))) == {}


# -- through a trained model -----------------------------------------------------------------------

def test_a_report_of_a_trained_lstm(train, tmp_path, corpus_text):
    import charforge
    from charforge.inspection.features import find_units, text_features

    model = charforge.load(train(steps=4).run_dir, device="cpu")
    text = corpus_text[:400]
    ins = model.inspect(text)
    found = find_units(ins, text_features(text), top=2)
    document = write_report(ins, tmp_path / "r.html", found=found, units=[(0, "c", 0)]).read_text(encoding="utf-8")
    data = _data(document)
    score = model.score(text, prompt="")
    assert sum(data["bits"]) == pytest.approx(-score.log_likelihood / math.log(2), abs=1e-3 * len(text))
    assert data["units"][0]["values"] == pytest.approx(ins.unit(0, 0, "c").tolist(), abs=6e-4)
    ranked = {(layer, name, unit) for entries in found.values() for layer, name, unit, _ in entries}
    assert len(data["units"]) == len(ranked | {(0, "c", 0)})  # the asked-for unit, then each ranked unit once
    assert sorted(_pngs(write_plots(ins, tmp_path / "png", found=found))) == ["gates", "surprisal", "units"]


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def _chromium(tmp_path, url: str, *how: str) -> str:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,700", *how, url],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _pixels(path, colour: str, tolerance: int = 3) -> int:
    """How many pixels of the PNG at ``path`` have (within ``tolerance``) the colour ``#rrggbb``."""
    from PIL import Image

    want = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    with Image.open(path) as image:
        counts = image.convert("RGB").getcolors(maxcolors=1 << 24)
    return sum(n for n, rgb in counts if all(abs(a - b) <= tolerance for a, b in zip(rgb, want)))


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium for the browser test (Debian: apt-get install "
                                              "chromium; .ci/run installs it)")
def test_the_report_in_headless_chromium_shows_coloured_text_and_the_pinned_prediction(tmp_path):
    calm, hot = "The quiet part of the text. " * 14, "A loud " + HOSTILE + " part! " * 40
    text = calm + hot
    losses = torch.tensor([0.05] * len(calm) + [9.0] * len(hot))  # nats: under 0.5 bits, then past 8
    ins = inspection(text, losses=losses)
    report = write_report(ins, tmp_path / "report.html", units=[(0, "h", 0)])
    pinned = len(calm) + 3
    started = time.monotonic()

    shot = tmp_path / "pinned.png"
    _chromium(tmp_path, f"{report.as_uri()}#pos={pinned}", f"--screenshot={shot}")
    assert _pixels(shot, SURPRISAL_COLOURS[0]) > 20_000  # the calm characters' background
    assert _pixels(shot, SURPRISAL_COLOURS[-1]) > 20_000  # the hot ones'; the legend's swatches are far smaller
    assert _pixels(shot, PANEL_COLOUR) > 20_000  # the prediction panel, shown for the pinned position

    plain = tmp_path / "plain.png"
    _chromium(tmp_path, report.as_uri(), f"--screenshot={plain}")
    assert _pixels(plain, SURPRISAL_COLOURS[0]) > 20_000
    assert _pixels(plain, PANEL_COLOUR) == 0  # nothing pinned, nothing hovered: no panel

    dom = _chromium(tmp_path, f"{report.as_uri()}#pos={pinned}", "--dump-dom")
    assert dom.count("<span data-pos=") == len(text)  # one per character, emoji and controls included
    assert dom.lower().count("<script") == 2  # the hostile text stayed text
    assert f"position {pinned}: " in dom and "the model expected" in dom
    assert f"{ins.predictions(pinned)[0][1] * 100:.1f}%" in dom  # the likeliest prediction's probability
    assert time.monotonic() - started < 60
