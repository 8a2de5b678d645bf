"""Property-based tests (hypothesis) of what generation reads from its user: prompts files and the values
of ``charforge generate``'s and ``sample``'s options.

Each case runs the real command line in process (click's CliRunner) on a tiny trained checkpoint and
must end in one of two ways: exit 0, or exit 1 with one ``Error:`` line on stderr; never a traceback, a
signal or a hang (an alarm ends a case that runs too long). Values where they are valid stay small (a
valid ``--length`` of 10**9 is a long job, not a defect) and reach far past the bounds where they are not.
CHARFORGE_FUZZ_SCALE=20 runs twenty times the examples.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _hangs import no_hang
import charforge
from charforge.cli import cli
from charforge.cli.prompts import PROMPT_KEYS
from charforge.sampling.settings import MAX_BEAM, MAX_CHARS, MAX_SAMPLES

SCALE = int(os.environ.get("CHARFORGE_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=100 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CASE_SECONDS = 60  # far beyond what any case here takes, even on a loaded machine

TEXT = "the quick brown fox jumps over the lazy dog; " * 40 + "\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-inputs")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return charforge.train(corpus, runs_dir=root / "runs", name="tiny", steps=2, hidden_size=8, batch_size=2,
                           seq_len=8, eval_every=2, sample_length=2, device="cpu", threads=1, quiet=True).run_dir


def invoke(args: list[str], input: bytes | None = None):
    """Run ``charforge ARGS``; it must succeed or give one ``Error:`` line and exit 1."""
    with no_hang(CASE_SECONDS):
        result = CliRunner().invoke(cli, args, input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exc_info)
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        return result
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), (args, result.stderr)
    return result


# -- values --------------------------------------------------------------------------------------

KNOWN = "the quick brown fox jumps over lazy dog;\n"  # characters the model knows
# any character, lone surrogates (how Python passes on bytes that are not UTF-8) among them
ANY_CHAR = st.characters() | st.characters(categories=["Cs"])
KNOWN_TEXTS = st.text(st.sampled_from(KNOWN), max_size=12)
TEXTS = KNOWN_TEXTS | st.text(ANY_CHAR, max_size=12)
HUGE = st.integers(10**9, 10**30) | st.integers(-10**30, -1)  # beyond every bound (MAX_CHARS < 10**9)
NUMBERS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 12) | HUGE
SCALARS = st.none() | st.booleans() | NUMBERS | TEXTS
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
                    max_leaves=6)
assert max(MAX_CHARS, MAX_SAMPLES, MAX_BEAM) < 10**9  # so HUGE is past every bound

# per key: small valid values, values past the bounds, and anything at all
SMALL = {"length": st.integers(0, 12), "num_samples": st.integers(1, 3), "beam": st.integers(0, 3),
         "top_k": st.integers(-2, 40) | HUGE, "seed": st.integers(-3, 2**64), "prompt": KNOWN_TEXTS | TEXTS,
         "temperature": NUMBERS | st.lists(NUMBERS, max_size=3), "top_p": NUMBERS, "greedy": st.booleans(),
         "stop": TEXTS | st.lists(TEXTS, max_size=3)}
# a valid value twice as often as a wild one, so that many cases get as far as generating
ENTRY_VALUES = {key: st.one_of(SMALL[key], SMALL[key], HUGE if key in ("length", "num_samples", "beam") else JSON,
                               JSON) for key in PROMPT_KEYS}


@st.composite
def entries(draw) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(PROMPT_KEYS)), max_size=6, unique=True))
    entry = {key: draw(ENTRY_VALUES[key]) for key in keys}
    if draw(st.booleans()):
        entry["prompt"] = draw(KNOWN_TEXTS)
    if draw(st.integers(0, 9)) == 0:
        entry[draw(TEXTS)] = draw(JSON)  # an unknown key, now and then
    return entry


def encoded(entry) -> bytes:
    """A JSONL line as a careless or hostile writer makes it: escaped or raw, surrogates and all."""
    return json.dumps(entry, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


LINES = st.one_of(
    entries().map(encoded),
    st.builds(lambda entry: json.dumps(entry).encode(), entries()),  # \u escapes: lone surrogates decode
    KNOWN_TEXTS.map(str.encode),  # a plain prompt
    st.binary(max_size=40),
    JSON.map(lambda value: json.dumps(value, allow_nan=True).encode()),  # JSON, but not an object
    st.builds(lambda depth, opener: (opener * depth).encode(), st.sampled_from([10, 1_000, 100_000]),
              st.sampled_from(["[", '{"prompt": ', '{"stop": ['])),
)


@FUZZ
@given(lines=st.lists(LINES, max_size=5), jsonl=st.booleans(), separator=st.sampled_from([b"\n", b"\r\n"]),
       stdin=st.booleans(), drop=st.booleans())
def test_any_prompts_file_generates_or_fails_clearly(run, lines, jsonl, separator, stdin, drop):
    body = separator.join([b'{"prompt": "the"}'] * jsonl + lines)  # a first object line makes the file JSONL
    common = ["generate", str(run), "--length", "4", "--seed", "0", "--threads", "1", "--device", "cpu",
              *["--drop-unknown"] * drop]
    if stdin:
        invoke([*common, "--prompts", "-"], input=body)
        return
    with tempfile.NamedTemporaryFile(dir=run, suffix=".jsonl", delete=False) as f:
        f.write(body)
    try:
        invoke([*common, "--prompts", f.name])
    finally:
        os.unlink(f.name)


# -- command-line values ----------------------------------------------------------------------------

def as_text(values) -> st.SearchStrategy[str]:
    return values.map(str)


WORDS = st.sampled_from(["", "nan", "inf", "-inf", "1e3", "0x10", " 3", "1_000", "3.0", "True", "-0"])
ANY_VALUE = WORDS | st.text(ANY_CHAR, max_size=8)
INTEGER_VALUES = {  # valid small values, values past the bounds, anything
    "--length": as_text(st.integers(-3, 12)) | ANY_VALUE,  # a valid huge length streams for ever in sample
    "-n": as_text(st.integers(-1, 3)) | as_text(HUGE) | ANY_VALUE,
    "--top-k": as_text(st.integers(-3, 40)) | as_text(HUGE) | ANY_VALUE,
    "--seed": as_text(st.integers(-3, 2**64)) | as_text(HUGE) | ANY_VALUE,
}
FLOAT_VALUES = st.floats(0, 1.5).map(repr) | st.floats(allow_nan=True, allow_infinity=True).map(repr) | \
    as_text(st.integers(-2, 3) | HUGE) | ANY_VALUE
DEVICES = st.just("cpu") | st.sampled_from(["auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:abc", "cuda:", "mps", "meta", "foo", "",
                           " cpu", "CPU", "cpu:0", "xla"]) | st.text(ANY_CHAR, max_size=6)


@st.composite
def option_values(draw, command: str) -> list[str]:
    options = {**INTEGER_VALUES, "--top-p": FLOAT_VALUES, "--device": DEVICES,
               "-t": FLOAT_VALUES if command == "sample" else st.lists(FLOAT_VALUES, min_size=1, max_size=3).map(
                   ",".join)}
    if command == "generate":
        options.update({"--beam": as_text(st.integers(-1, 3) | st.integers(MAX_BEAM + 1, 10**30)) | ANY_VALUE,
                        "--stop": TEXTS, "-p": KNOWN_TEXTS | TEXTS,
                        "--batch-size": as_text(st.integers(-1, 4) | HUGE) | ANY_VALUE})
    else:
        options["--prime"] = KNOWN_TEXTS | TEXTS
    args = ["--length", "4", "--threads", "1"]  # defaults a drawn value replaces (the last one counts)
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=5, unique=True)):
        args += [name, draw(options[name])]
    if command == "generate" and "-p" not in args:
        args += ["-p", "the"]
    return args


@FUZZ
@given(args=option_values("generate"))
def test_any_generate_option_values_generate_or_fail_clearly(run, args):
    invoke(["generate", str(run), *args])


@FUZZ
@given(args=option_values("sample"))
def test_any_sample_option_values_sample_or_fail_clearly(run, args):
    invoke(["sample", str(run), *args])
