"""Every bad input gets a clear answer: one line on stderr, no traceback, a non-zero exit.

One table of cases runs the real command line (click's CliRunner, in process); a few of them
run again as real subprocesses, to prove that nothing but the one line reaches the terminal.
"""

from __future__ import annotations

import json
import os
import random
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from charforge.cli import cli
from charforge.runs.validation import checksum

TEXT = "the quick brown fox jumps over the lazy dog; " * 40 + "\n"
TINY = ["--cell", "rnn", "--hidden-size", "8", "--batch-size", "2", "--seq-len", "8", "--device", "cpu",
        "--sample-length", "4", "-q"]


class Marker:
    """Unpickling this creates a file: the proof that a pickle was (or was not) executed."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def edited(src: Path, dst: Path, meta_fn=None, tensors_fn=None) -> Path:
    """A copy of checkpoint ``src`` with its metadata and/or tensors changed by hand."""
    with safe_open(src, "pt") as f:
        meta = json.loads(f.metadata()["charforge"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta_fn:
        meta = meta_fn(meta) or meta
    if tensors_fn:
        tensors = tensors_fn(tensors) or tensors
        meta["checksums"] = {k: checksum(v) for k, v in tensors.items()}  # an edit made to look whole
    save_file(tensors, dst, metadata={"charforge": json.dumps(meta)})
    return dst


def _set(path: str, value):
    def apply(meta):
        *parents, last = path.split(".")
        node = meta
        for part in parents:
            node = node[part]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return apply


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARFORGE_CACHE", str(root / "cache"))
        good = root / "good.txt"
        good.write_text(TEXT)
        result = CliRunner().invoke(cli, ["train", str(good), *TINY, "--steps", "4", "--eval-every", "2",
                                          "--runs-dir", str(root / "runs"), "--name", "run"])
        assert result.exit_code == 0, result.output
    run = root / "runs" / "run"
    latest = run / "checkpoints" / "latest.safetensors"
    data = latest.read_bytes()
    f = {"root": root, "good": good, "run": run, "latest": latest,
         "missing": root / "missing.txt", "empty": root / "empty.txt", "emptydir": root / "emptydir",
         "bindir": root / "bindir", "binary": root / "image.png", "latin1": root / "latin1.txt",
         "short": root / "short.txt", "marker": root / "pwned", "norun": root / "norun"}
    f["empty"].write_text("")
    f["emptydir"].mkdir()
    f["bindir"].mkdir()
    (f["bindir"] / "blob.dat").write_bytes(b"\x89PNG\x00\x00\x01")
    f["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    f["latin1"].write_bytes("first line\ncaf\u00e9 au lait\n".encode("latin-1"))
    f["short"].write_text("abcdefghijklmnopqrst")  # 20 characters: 18 for training
    f["norun"].mkdir()
    for key, name in (("pickle_pt", "pickle.pt"), ("pickle_st", "pickle.safetensors")):
        f[key] = root / name
        f[key].write_bytes(pickle.dumps(Marker(str(f["marker"]))))
    f["torchsave"] = root / "model.pth"
    torch.save({"w": torch.zeros(2)}, f["torchsave"])
    f["truncated"] = root / "truncated.safetensors"
    f["truncated"].write_bytes(data[:2000])  # inside the JSON header
    f["tail"] = root / "tail.safetensors"
    f["tail"].write_bytes(data[:-7])
    f["random"] = root / "random.safetensors"
    noise = b"\x13" + random.Random(0).randbytes(2999)  # not 0x80 first: that would look like a pickle
    assert noise[8:9] != b"{"  # nor a header's opening brace after its length: that reads as a truncated file
    f["random"].write_bytes(noise)
    flipped = bytearray(data)
    flipped[8] ^= 0xFF  # the opening brace of the JSON header
    f["flipped"] = root / "flipped.safetensors"
    f["flipped"].write_bytes(bytes(flipped))
    vocab = json.loads(json.loads(safe_open(latest, "pt").metadata()["charforge"])["tokenizer"])
    vocab["model"]["vocab"] = {c: i for c, i in vocab["model"]["vocab"].items() if i < 5}
    cases = {
        "newer": _set("format", 99),
        "step-type": _set("step", "twelve"),
        "no-tokenizer": _set("tokenizer", KeyError),
        "vocab-size": _set("tokenizer", json.dumps(vocab)),
        "config-unknown": _set("config.turbo", True),
        "config-type": _set("config.hidden_size", "big"),
        "config-layers": _set("config.num_layers", 3),
        "config-negative": _set("config.hidden_size", -8),
        "cell-name": _set("cell.name", "gru"),
        "best-val-type": _set("best_val", [1, 2]),
        "metadata-list": lambda meta: [meta],
    }
    for name, fn in cases.items():
        f[name] = edited(latest, root / f"{name}.safetensors", meta_fn=fn)

    def nan_weights(tensors):
        tensors["model.head.weight"][0, 0] = float("nan")

    f["nan"] = edited(latest, root / "nan.safetensors", tensors_fn=nan_weights)
    f["no-meta"] = root / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, f["no-meta"])
    return {k: str(v) for k, v in f.items()}


R = "{run}"
SMALL = ["--batch-size", "2", "--seq-len", "8", "--hidden-size", "8"]
CASES = [
    # corpus problems
    ("corpus-missing", ["train", "{missing}"], ["missing.txt", "does not exist"]),
    ("corpus-empty", ["train", "{empty}"], ["empty.txt", "is empty"]),
    ("corpus-empty-dir", ["train", "{emptydir}"], ["emptydir", "no text files"]),
    ("corpus-binary-dir", ["train", "{bindir}"], ["bindir", "no text files"]),
    ("corpus-binary", ["train", "{binary}"], ["image.png", "binary"]),
    ("corpus-not-utf8", ["train", "{latin1}"], ["latin1.txt", "not valid utf-8", "line 2", "--encoding",
                                                 "--errors replace"]),
    ("corpus-bad-encoding", ["train", "{good}", "--encoding", "klingon"], ["unknown text encoding", "klingon"]),
    ("corpus-too-short", ["train", "{short}", "--batch-size", "4", "--seq-len", "8"],
     ["18 characters", "too short", "--batch-size 4", "--seq-len 8", "needs at least 33",
      "--batch-size 2 or less"]),
    ("corpus-too-short-seq", ["train", "{short}", "--batch-size", "1", "--seq-len", "50"],
     ["18 characters", "--seq-len 17 or less"]),
    ("corpus-glob-nothing", ["train", "{root}/*.nothing"], ["no files match"]),
    ("corpus-unknown-name", ["train", "tiny-shakespear"], ["unknown corpus", "tiny-shakespeare"]),
    # numbers
    ("hidden-size-zero", ["train", "{good}", "--hidden-size", "0"], ["--hidden-size", "positive", "0"]),
    ("hidden-size-negative", ["train", "{good}", "--hidden-size", "-3"], ["--hidden-size", "positive", "-3"]),
    ("layers-zero", ["train", "{good}", "--layers", "0"], ["--num-layers", "positive"]),
    ("batch-size-zero", ["train", "{good}", "--batch-size", "0"], ["--batch-size", "positive"]),
    ("seq-len-negative", ["train", "{good}", "--seq-len", "-1"], ["--seq-len", "positive"]),
    ("lr-zero", ["train", "{good}", "--lr", "0"], ["--lr", "positive"]),
    ("lr-negative", ["train", "{good}", "--lr", "-0.1"], ["--lr", "positive", "-0.1"]),
    ("lr-nan", ["train", "{good}", "--lr", "nan"], ["--lr", "positive", "nan"]),
    ("lr-inf", ["train", "{good}", "--lr", "inf"], ["--lr", "finite"]),
    ("steps-zero", ["train", "{good}", "--steps", "0"], ["--steps", "positive"]),
    ("epochs-negative", ["train", "{good}", "--epochs", "-1"], ["--epochs", "positive"]),
    ("minutes-nan", ["train", "{good}", "--minutes", "nan"], ["--minutes", "positive"]),
    ("dropout-one", ["train", "{good}", "--dropout", "1"], ["--dropout", "[0, 1)"]),
    ("val-fraction", ["train", "{good}", "--val-fraction", "1.5"], ["--val-fraction", "[0, 1)"]),
    ("clip-value-zero", ["train", "{good}", "--clip-value", "0"], ["--clip-value", "positive"]),
    ("keep-negative", ["train", "{good}", "--keep", "-1"], ["--keep", "negative"]),
    ("warmup-negative", ["train", "{good}", "--warmup", "-5"], ["--warmup", "negative"]),
    ("sample-length-negative", ["train", "{good}", "--sample-length", "-1"], ["--sample-length", "negative"]),
    ("seed-negative", ["train", "{good}", "--seed", "-1"], ["--seed"]),
    ("temperature-negative", ["sample", R, "-t", "-1"], ["--temperature", "0 or more"]),
    ("temperature-nan", ["sample", R, "-t", "nan"], ["--temperature"]),
    ("top-p-zero", ["sample", R, "--top-p", "0"], ["--top-p", "(0, 1]"]),
    ("top-p-above-one", ["sample", R, "--top-p", "1.5"], ["--top-p", "(0, 1]"]),
    ("top-k-negative", ["sample", R, "--top-k", "-2"], ["--top-k", "negative"]),
    ("length-negative", ["sample", R, "--length", "-1"], ["--length", "negative"]),
    ("num-samples-zero", ["sample", R, "-n", "0"], ["--num-samples", "at least 1"]),
    ("sample-seed-huge", ["sample", R, "--seed", str(2**70)], ["--seed"]),
    # names
    ("unknown-cell", ["train", "{good}", *SMALL, "--cell", "lstn"], ["unknown cell 'lstn'", "Did you mean 'lstm'",
                                                              "Known:", "gru", "rnn"]),
    ("unknown-optimizer", ["train", "{good}", *SMALL, "--optimizer", "adamm"],
     ["unknown optimizer 'adamm'", "Did you mean 'adam'", "Known:", "sgd"]),
    ("cell-option-unknown", ["train", "{good}", *SMALL, "--cell", "gru", "-c", "forget_bias", "2"],
     ["cell 'gru' has no option 'forget_bias'"]),
    ("cell-option-type", ["train", "{good}", *SMALL, "--cell", "lstm", "-c", "forget_bias", "lots"],
     ["'forget_bias'", "takes a float", "lots"]),
    ("cell-option-choice", ["train", "{good}", *SMALL, "--cell", "rnn", "-c", "nonlinearity", "sigmoid"],
     ["'nonlinearity'", "must be one of", "tanh"]),
    ("optimizer-option-unknown", ["train", "{good}", *SMALL, "--optimizer", "sgd", "-o", "beta2", "0.9"],
     ["optimizer 'sgd' has no option 'beta2'", "weight_decay"]),
    ("optimizer-option-range", ["train", "{good}", *SMALL, "-o", "eps", "-1"],
     ["optimizer 'adam' rejects its options", "epsilon", "-1"]),
    ("optimizer-option-beta", ["train", "{good}", *SMALL, "-o", "beta1", "1.5"],
     ["optimizer 'adam' rejects its options", "beta", "1.5"]),
    # sampling and checkpoints
    ("prompt-outside-vocab", ["sample", R, "--prime", "fox \u20ac\u00e9"],
     ["not in the model's vocabulary", "\u20ac", "--drop-unknown"]),
    ("checkpoint-missing", ["sample", "{root}/nothing.safetensors"], ["nothing.safetensors", "does not exist"]),
    ("run-without-checkpoint", ["sample", "{norun}"], ["norun", "holds no checkpoint"]),
    ("pickle-pt", ["sample", "{pickle_pt}"], ["pickle.pt", "pickle", "never unpickles"]),
    ("pickle-renamed", ["sample", "{pickle_st}"], ["pickle.safetensors", "pickle", "never unpickles"]),
    ("torch-save", ["sample", "{torchsave}"], ["model.pth", "never unpickles"]),
    ("checkpoint-newer-format", ["sample", "{newer}"], ["format 99", "Upgrade charforge"]),
    ("checkpoint-truncated", ["sample", "{truncated}"], ["truncated.safetensors", "is truncated", "header says"]),
    ("checkpoint-truncated-tail", ["sample", "{tail}"], ["tail.safetensors", "damaged or truncated"]),
    ("checkpoint-random-bytes", ["sample", "{random}"], ["random.safetensors", "not a safetensors checkpoint"]),
    ("checkpoint-flipped-header", ["sample", "{flipped}"], ["flipped.safetensors", "not a safetensors"]),
    ("checkpoint-no-metadata", ["sample", "{no-meta}"], ["not a charforge checkpoint"]),
    ("checkpoint-metadata-not-object", ["sample", "{metadata-list}"], ["metadata is not a JSON object"]),
    ("checkpoint-field-type", ["sample", "{step-type}"], ["'step'", "a string, not an integer"]),
    ("checkpoint-field-missing", ["sample", "{no-tokenizer}"], ["'tokenizer'", "missing"]),
    ("checkpoint-vocab-mismatch", ["sample", "{vocab-size}"], ["vocabulary has 5 characters",
                                                               "model.head.weight"]),
    ("checkpoint-config-unknown", ["sample", "{config-unknown}"], ["unknown configuration field", "turbo"]),
    ("checkpoint-config-type", ["sample", "{config-type}"], ["'hidden_size'", "int", "'big'"]),
    ("checkpoint-config-negative", ["sample", "{config-negative}"], ["hidden-size", "positive", "-8"]),
    ("checkpoint-layer-count", ["sample", "{config-layers}"], ["3 layer(s)", "weights hold 1"]),
    ("checkpoint-cell-mismatch", ["sample", "{cell-name}"], ["cell 'gru'", "differs", "'rnn'"]),
    ("checkpoint-best-val-type", ["sample", "{best-val-type}"], ["'best_val'", "a list"]),
    ("checkpoint-nan-weights", ["sample", "{nan}"], ["model.head.weight", "NaN or infinite"]),
    ("resume-newer-format", ["train", "--resume", "{newer}"], ["format 99", "Upgrade charforge"]),
    ("resume-hidden-size", ["train", "--resume", R, "--hidden-size", "16"],
     ["cannot change hidden_size", "8", "16", "new run"]),
    ("resume-cell", ["train", "--resume", R, "--cell", "gru"], ["cannot change cell", "'rnn'", "'gru'"]),
    ("resume-layers", ["train", "--resume", R, "--layers", "2"], ["cannot change num_layers"]),
    ("resume-changed-corpus", ["train", "--resume", R, "{latin1}"],
     ["cannot change corpus"]),
    ("resume-nothing", ["train", "--resume", "{norun}"], ["holds no checkpoint"]),
    ("runs-dir-is-a-file", ["train", "{good}", *SMALL, "--runs-dir", "{good}/runs"], ["cannot create run directory"]),
]


def _args(args: list[str], files: dict[str, str]) -> list[str]:
    return [a.format_map(files) if "{" in a else a for a in args]


def check_one_line(exit_code: int, stderr: str, keywords: list[str]) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_code not in (0, None), stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, f"expected one line of error output, got:\n{stderr}"
    assert lines[0].startswith("Error: ")
    for word in keywords:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


@pytest.mark.parametrize("name,args,keywords", CASES, ids=[c[0] for c in CASES])
def test_bad_input(files, name, args, keywords, monkeypatch):
    monkeypatch.setenv("CHARFORGE_CACHE", str(Path(files["root"]) / "cache"))
    result = CliRunner().invoke(cli, _args(args, files))
    # CliRunner turns an unexpected exception into exit code 1 too: only SystemExit is a clean exit
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    check_one_line(result.exit_code, result.stderr, keywords)
    assert not Path(files["marker"]).exists(), "a pickle was executed"


SUBPROCESS_CASES = ["corpus-not-utf8", "pickle-pt", "checkpoint-vocab-mismatch"]


def test_bad_input_in_real_processes(files, tmp_path):
    """The same answers from the installed command: one line on stderr, no traceback, exit 1."""
    env = {**os.environ, "CHARFORGE_CACHE": str(tmp_path / "cache")}
    table = {name: (args, keywords) for name, args, keywords in CASES}
    procs = {name: subprocess.Popen([sys.executable, "-m", "charforge", *_args(table[name][0], files)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name in SUBPROCESS_CASES}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, (name, stderr)
        check_one_line(proc.returncode, stderr, table[name][1])
    assert not Path(files["marker"]).exists(), "a pickle was executed"


def test_pickle_marker_works(files, tmp_path):
    """The pickle in the table really would create its file if anything unpickled it."""
    target = tmp_path / "proof"
    pickle.loads(pickle.dumps(Marker(str(target))))
    assert target.exists()


@pytest.mark.parametrize("extra", [["--encoding", "latin-1"], ["--errors", "replace"]])
def test_not_utf8_corpus_trains_with_the_offered_options(files, extra, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARFORGE_CACHE", str(tmp_path / "cache"))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("caf\u00e9 " * 100).encode("latin-1"))
    result = CliRunner().invoke(cli, ["train", str(latin), *TINY, "--steps", "2", "--eval-every", "2",
                                      "--runs-dir", str(tmp_path / "runs"), *extra])
    assert result.exit_code == 0, result.output
