"""Hostile input to generation: prompts, prompts files, option values, devices and the sampling API.

Each is refused with one CharforgeError (one ``Error:`` line, exit 1 on the command line) before
anything is generated, or, where it is ordinary input of an unusual size, runs in bounded memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import charforge
from charforge.cli import cli
from charforge.device import pick_device
from charforge.errors import CharforgeError
from charforge.sampling import priming
from charforge.sampling.settings import MAX_BEAM, MAX_CHARS, MAX_PROMPT_CHARS, MAX_SAMPLES, MAX_STOP_CHARS, \
    MAX_STOPS, Request, Settings

TEXT = "the quick brown fox jumps over the lazy dog; " * 40 + "\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-sampling")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return charforge.train(corpus, runs_dir=root / "runs", name="tiny", steps=2, hidden_size=8, batch_size=2,
                           seq_len=8, eval_every=2, sample_length=2, device="cpu", threads=1, quiet=True).run_dir


@pytest.fixture(scope="module")
def model(run):
    return charforge.load(run, device="cpu")


def refused(run, *args, input=None, command="generate") -> str:
    """The one line a command prints for a bad input (exit 1, no traceback)."""
    result = CliRunner().invoke(cli, [command, str(run), "--threads", "1", *map(str, args)], input=input)
    assert result.exit_code == 1, (args, result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == "", result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# -- prompts that are not text ------------------------------------------------------------------

@pytest.mark.parametrize("command, option", [("sample", "--prime"), ("generate", "-p")])
def test_a_prompt_argument_that_is_not_utf8_is_one_line(run, command, option):
    # Click passes a byte that is not UTF-8 on as a lone surrogate (surrogateescape)
    line = refused(run, option, "ab\udcff", command=command)
    assert "holds U+DCFF at character 3, which is not text" in line


def test_a_stop_string_that_is_not_utf8_is_one_line(run):
    assert "U+DCFF" in refused(run, "-p", "the", "--stop", "\udcff")


def test_prompts_on_stdin_that_are_not_utf8_are_one_line(run):
    line = refused(run, "--length", "3", input=b"the\nab\xff\n")
    assert line == "Error: <stdin>, line 2: not UTF-8 text."


def test_a_lone_surrogate_in_a_jsonl_prompt_is_one_line(run, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "the"}\n{"prompt": "\\ud800"}\n')
    line = refused(run, "--prompts", prompts, "--length", "3")
    assert line.startswith(f"Error: {prompts}, line 2: ") and "U+D800 at character 1" in line


def test_a_real_undecodable_argument_byte_is_one_line(run):
    """The whole path, from the operating system's argv bytes: no traceback reaches the terminal."""
    done = subprocess.run([sys.executable.encode(), b"-m", b"charforge", b"generate", str(run).encode(), b"-p",
                           b"\xff", b"--length", b"3"], capture_output=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout == b"" and done.stderr.decode().count("\n") == 1 and b"U+DCFF" in done.stderr


# -- prompts files that are too deep or too big -------------------------------------------------

def test_a_prompts_line_nested_too_deep_is_one_line(run, tmp_path):
    prompts = tmp_path / "deep.jsonl"
    prompts.write_text('{"prompt": "the"}\n' + '{"prompt": ' * 100_000 + '"a"' + "}" * 100_000 + "\n")
    assert refused(run, "--prompts", prompts) == f"Error: {prompts}, line 2: not valid JSON (nested too deeply)."


@pytest.mark.parametrize("jsonl", [False, True])
def test_a_prompts_line_too_long_is_refused_without_reading_it_whole(run, tmp_path, jsonl):
    prompts = tmp_path / "long.txt"
    body = "t" * (20 * MAX_PROMPT_CHARS)
    prompts.write_text(('{"prompt": "the"}\n{"prompt": "' + body + '"}\n') if jsonl else "the\n" + body + "\n")
    line = refused(run, "--prompts", prompts)
    assert line.startswith(f"Error: {prompts}, line 2: longer than") and f"{MAX_PROMPT_CHARS:,}" in line


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_prompts_line_is_refused_without_reading_it_whole(run):
    assert refused(run, "--prompts", "/dev/zero").startswith("Error: /dev/zero, line 1: longer than")


def test_a_prompts_file_that_is_a_folder_is_one_line(run, tmp_path):
    assert refused(run, "--prompts", tmp_path).startswith(f"Error: cannot read prompts file {tmp_path}: ")


def test_a_prompt_too_long_is_one_line(run):
    line = refused(run, "-p", "t" * (MAX_PROMPT_CHARS + 1))
    assert f"at most {MAX_PROMPT_CHARS:,} characters" in line


def test_a_long_prompt_primes_in_windows_to_the_state_of_one_pass(model, monkeypatch):
    """Priming holds one window of a prompt's activations at a time, and gives the state one pass gives."""
    ids = model.vocab.encode(TEXT[:100])
    whole, _, _ = priming.prime(model.model, [ids], model.device)
    monkeypatch.setattr(priming, "WINDOW", 7)
    windowed, _, _ = priming.prime(model.model, [ids], model.device)
    for a, b in zip(whole, windowed):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


# -- requests too big to run ---------------------------------------------------------------------

@pytest.mark.parametrize("command, args, message", [
    ("generate", ["-p", "the", "--beam", "1000000000"], f"--beam must be at most {MAX_BEAM:,}"),
    ("sample", ["-n", "1000000000"], f"more than {MAX_SAMPLES:,} samples"),
    ("generate", ["-p", "the", "-n", "1000000000"], f"more than {MAX_SAMPLES:,} samples"),
    ("generate", ["-p", "the", "--length", "1000000000000"], f"more than {MAX_CHARS:,} characters"),
    ("generate", ["-p", "the", "--length", "1000000", "--beam", "1000"], f"more than {MAX_CHARS:,} characters"),
    ("sample", ["-n", "2", "--length", "1000000000000"], f"more than {MAX_CHARS:,} characters"),
    ("generate", ["-p", "the", *[a for i in range(MAX_STOPS + 1) for a in ("--stop", f"s{i}")]],
     f"at most {MAX_STOPS} stop strings"),
    ("generate", ["-p", "the", "--stop", "s" * (MAX_STOP_CHARS + 1)], f"at most {MAX_STOP_CHARS} characters"),
])
def test_requests_beyond_the_bounds_are_one_line(run, command, args, message):
    assert message in refused(run, *args, command=command)


def test_the_bounds_count_a_whole_prompts_file(run, tmp_path):
    """Every line alone is within bounds; together they are not, and the line that crosses is named."""
    prompts = tmp_path / "many.jsonl"
    half = MAX_SAMPLES // 2 + 1
    prompts.write_text(f'{{"prompt": "the", "num_samples": {half}}}\n' * 3)
    line = refused(run, "--prompts", prompts, "--length", "1")
    assert line.startswith(f"Error: {prompts}, line 2: ") and f"more than {MAX_SAMPLES:,} samples" in line


def test_a_temperature_sweep_counts_against_the_bounds(run):
    sweep = ",".join(["1"] * (MAX_SAMPLES + 1))
    assert f"more than {MAX_SAMPLES:,} samples" in refused(run, "-p", "the", "-t", sweep, "--length", "1")


def test_streaming_one_sample_has_no_length_bound(model):
    """One streamed sample holds nothing but its state, so any length is fine: the bound is on what is kept."""
    stream = model.stream("the", length=10**12, seed=1)
    assert len("".join(next(stream) for _ in range(200))) == 200


# -- devices ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["foo", "", "meta", "cuda:abc", "cuda:-1", "cpu:0", " cpu", 5, None])
def test_an_unknown_device_is_one_line(name):
    with pytest.raises(CharforgeError, match=r"^--device must be auto, cpu, cuda\[:N\] or mps, not "):
        pick_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_mps_where_there_is_none_is_one_line(run):
    assert refused(run, "--device", "mps", command="sample") == \
        "Error: --device mps was asked for, but PyTorch sees no MPS device."


def test_a_gpu_that_is_not_there_is_one_line():
    count = torch.cuda.device_count()
    with pytest.raises(CharforgeError, match="was asked for, but PyTorch sees"):
        pick_device(f"cuda:{count}")


@pytest.mark.parametrize("name", ["foo", "meta"])
def test_the_command_line_refuses_unknown_devices_before_loading(run, name):
    assert refused(run, "--device", name, command="sample").startswith("Error: --device must be auto, cpu")


# -- the sampling API checks every argument -------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"greedy": "yes"}, "greedy must be true or false"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"length": True}, "length must be an integer"),
    ({"length": 2.0}, "length must be an integer"),
    ({"num_samples": True}, "num-samples must be"),
    ({"num_samples": 2.0}, "num-samples must be"),
    ({"top_k": "3"}, "top-k must be an integer"),
    ({"top_p": float("nan")}, "--top-p must be in"),
    ({"temperature": float("nan")}, "--temperature must be 0 or more"),
    ({"temperature": "hot"}, "--temperature takes a number"),
    ({"temperature": None}, "temperature must be a number or a list of numbers"),
    ({"temperature": [0.5, 10**400]}, "temperature is too large"),
    ({"temperature": 10**400}, "temperature is too large"),
    ({"seed": 10**5000}, "--seed must be in .* not an integer of thousands of digits"),
    ({"stop": 5}, "stop must be a string or a list of strings"),
    ({"stop": [b"x"]}, "stop strings must be"),
    ({"beam": "2"}, "beam must be an integer"),
    ({"batch_size": True}, "--batch-size must be"),
    ({"batch_size": 0}, "--batch-size must be"),
    ({"drop_unknown": "yes"}, "drop_unknown must be true or false"),
])
def test_the_generation_api_checks_every_argument(model, options, message):
    with pytest.raises(CharforgeError, match=message.replace("(", r"\(")):
        model.generate("the", length=options.pop("length", 3), **options)


@pytest.mark.parametrize("prompt", [5, b"the", None, ["the", 5], {"the": 1}])
def test_the_generation_api_checks_its_prompts(model, prompt):
    with pytest.raises(CharforgeError, match="prompt"):
        model.generate(prompt, length=3)


@pytest.mark.parametrize("options, message", [
    ({"greedy": "yes"}, "greedy must be true or false"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"sample": "x"}, "sample must be a non-negative integer"),
    ({"sample": -1}, "sample must be a non-negative integer"),
    ({"drop_unknown": 1}, "drop_unknown must be true or false"),
])
def test_the_streaming_api_checks_every_argument_before_it_yields(model, options, message):
    with pytest.raises(CharforgeError, match=message):
        model.stream("the", length=3, **options)


def test_a_request_checks_itself(model):
    for request, message in [(Request(5), "prompt must be a string"),
                             (Request("the", Settings(length=3), num_samples=0), "num-samples"),
                             (Request("the", "fast"), "settings must be a Settings"),
                             (Request("the", seed="x"), "seed must be an integer"),
                             (Request("the", index=True), "index must be"),
                             (Request("the", Settings(length=3, temperature=10**400)), "temperature is too large"),
                             (Request("the", Settings(length=3, beam=2), num_samples=3), "at most 2 samples")]:
        with pytest.raises(CharforgeError, match=message):
            model.engine.run([request])
    with pytest.raises(CharforgeError, match="seed must be an integer"):
        model.engine.run([Request("the", Settings(length=3))], seed="x")
    records = model.generate_records([Request("the", Settings(length=3))], seed=2)
    assert json.loads(json.dumps(records[0].to_dict()))["seed"] == 2


@pytest.mark.parametrize("text, prompt, message", [("ab\ud800", None, "the text to score holds U\\+D800"),
                                                   (5, None, "the text to score must be a string"),
                                                   ("the", "\udcff", "the prompt holds U\\+DCFF"),
                                                   ("the", 5, "the prompt must be a string")])
def test_scoring_checks_its_text_and_prompt(model, text, prompt, message):
    with pytest.raises(CharforgeError, match=message):
        model.score(text, prompt)


def test_a_prompt_full_of_unknown_characters_is_named_in_one_readable_line():
    from charforge.vocab import Vocab

    with pytest.raises(CharforgeError) as caught:
        Vocab.from_text("abc").encode("".join(chr(0x4E00 + i) for i in range(5000)))
    message = str(caught.value)
    assert message.startswith("5000 character(s) not in the model's vocabulary") and len(message) < 200


def test_a_plain_prompts_file_of_blank_looking_lines_keeps_each_as_a_prompt():
    from charforge.cli.prompts import read_prompts
    from charforge.sampling.settings import Settings

    requests = read_prompts(iter(["  ", " ", ""]), "f", Settings(length=5), [1.0], 1)
    assert [r.prompt for r in requests] == ["  ", " "]
