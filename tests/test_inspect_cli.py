"""``charforge inspect`` end to end, in process (click's CliRunner) on one tiny run trained for the module:
its figures against the API's, each view, each way of giving the text, and bad input as one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from charforge.api import load
from charforge.cli import cli
from charforge.config import TrainConfig
from charforge.inspection.features import BUILT_IN
from charforge.plugins import make_plugin_manager
from charforge.trainer import Trainer

TEXT = 'The king said "come in" (to the queen).\nShe walked into the garden.\n'


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus_text):
    root = tmp_path_factory.mktemp("inspect")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text + TEXT + " [/q] [i] ", encoding="utf-8")  # brackets: rich markup in a text
    config = TrainConfig(corpus=str(corpus), cell="lstm", hidden_size=16, batch_size=4, seq_len=16, steps=6,
                         lr=3e-3, seed=0, device="cpu", threads=1, log_every=1, eval_every=1000, sample_length=10)
    trainer = Trainer(config, pm=make_plugin_manager(block=["console"]), runs_root=root / "runs", name="tiny")
    trainer.run()
    return trainer.run_dir


def inspect(*args, ok=True, **kwargs):
    result = CliRunner().invoke(cli, ["inspect", *map(str, args)], **kwargs)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_default_view_prints_scores_bits_per_char_and_spans(run):
    out = inspect(run, TEXT, "--device", "cpu").stdout
    expected = load(run, device="cpu").score(TEXT, prompt="").bits_per_char
    assert f"{expected:.4f} bits per character over {len(TEXT)} characters" in out
    assert "Most surprising spans" in out and "come in" in out
    assert "\x1b[" not in out  # not a terminal: no colour


def test_text_from_a_file_and_from_standard_input_match_the_argument(run, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    direct = inspect(run, TEXT).stdout
    assert inspect(run, path).stdout == direct
    assert inspect(run, input=TEXT).stdout == direct
    assert inspect(run, "-", input=TEXT).stdout == direct


def test_find_lists_every_feature_and_the_regular_expressions(run):
    out = inspect(run, TEXT, "--find", "--feature", "vowel=[aeiou]", "--top", 2).stdout
    for feature in (*BUILT_IN, "vowel"):
        assert feature in out
    assert "(constant over this text)" in out  # no digits in it
    assert "0:" in out and "bits per character" in out


def test_units_gates_and_predictions(run):
    out = inspect(run, TEXT, "--unit", "0:3", "--unit", "0:4:c", "--unit", "0:1:gate.f").stdout
    assert "layer 0, unit 3 (h)" in out and "layer 0, unit 4 (c)" in out and "layer 0, unit 1 (gate.f)" in out
    assert "Most surprising spans" not in out  # the views asked for replace the default
    out = inspect(run, TEXT, "--gates").stdout
    assert "0.gate.i" in out and "0.gate.f" in out and "0.gate.o" in out
    out = inspect(run, TEXT, "--predictions", "--at", "4:7").stdout
    rows = [line for line in out.splitlines() if line.startswith("│") and "%" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["4", "5", "6"]  # k, i, n


def test_colour_is_forced_by_color_and_refused_by_no_color(run):
    assert "\x1b[" in inspect(run, TEXT, "--color", env={"NO_COLOR": "", "TERM": "xterm-256color"}).stdout
    assert "48;" not in inspect(run, TEXT, "--color", env={"NO_COLOR": "1"}).stdout  # no background colours


def test_unknown_characters_are_dropped_with_one_warning(run):
    result = inspect(run, "The king€€ said ☃.")
    assert "warning: dropped 3 character(s) the model does not know (2 distinct" in result.stderr
    assert "bits per character over 15 characters" in result.stdout
    one_line_error(inspect(run, "€☃", ok=False), "nothing to inspect")


@pytest.mark.parametrize("args,words", [
    (["--unit", "x"], ["LAYER:UNIT"]), (["--unit", "0"], ["LAYER:UNIT"]), (["--unit", "-1:2"], ["from 0"]),
    (["--unit", "0:9999"], ["units 0 to 15"]), (["--unit", "3:0"], ["no trace"]),
    (["--unit", "0:1:gate.z"], ["gate.z"]),
    (["--at", "5:2", "--predictions"], ["START:END"]), (["--at", "900:", "--predictions"], ["past the text"]),
    (["--feature", "novalue"], ["NAME=REGEX"]), (["--feature", "bad=("], ["does not compile"]),
    (["--feature", "quotes=a"], ["built-in"]), (["--time"], ["no clock"]), (["--top", "0"], ["--top"]),
    (["--threads", "-1"], ["--threads"]), (["--at", "0:3"], ["add --predictions"]),
    (["--tui", "--find"], ["--tui", "leave out --find"]), (["--html", "/nonexistent/r.html"], ["does not exist"]),
])
def test_bad_input_is_one_line(run, args, words):
    one_line_error(inspect(run, TEXT, *args, ok=False), *words)


def test_empty_text_and_bad_utf8_are_one_line(run, tmp_path):
    one_line_error(inspect(run, "", ok=False), "nothing to inspect")
    path = tmp_path / "bad.txt"
    path.write_bytes(b"The king\xff said")
    one_line_error(inspect(run, path, ok=False), "not UTF-8", "byte 8", "0xff")
    one_line_error(inspect(run, input=b"ok \xc3(", ok=False), "standard input", "byte 3")


def test_a_folder_closed_stdin_and_markup_in_the_text(run, tmp_path):
    one_line_error(inspect(run, tmp_path, ok=False), "is a folder")
    one_line_error(inspect(run, TEXT, "--png", run / "config.json", ok=False), "is not a folder")
    shown = inspect(run, "The [/q] king [i]said").stdout  # rich markup in the text is shown as written
    assert "[/q]" in shown and "[i]" in shown


def test_html_and_png_are_written(run, tmp_path):
    result = inspect(run, TEXT, "--find", "--unit", "0:2", "--html", tmp_path / "r.html", "--png", tmp_path / "png")
    assert (tmp_path / "r.html").stat().st_size > 0 and list((tmp_path / "png").glob("*.png"))
    assert f"wrote {tmp_path / 'r.html'}" in result.stderr


def test_inspect_help_does_not_import_torch():
    code = ("import sys\nfrom charforge.cli import cli\n"
            "try:\n    cli(['inspect', '--help'], prog_name='charforge')\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "heavy = sorted(m for m in ('torch', 'rich', 'numpy') if m in sys.modules)\nassert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--find" in proc.stdout
