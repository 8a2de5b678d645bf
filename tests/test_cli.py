"""The command line end to end: train on a small text, sample from it, read what it wrote.

One run is trained once for the module (click's CliRunner, in process); the tests sample from
it, inspect its files, and break copies of its checkpoint. A few tests start real processes:
the help must not import torch, and the installed console script must stream a sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from charforge.sampling.loading import load_engine
from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.runs.directory import Run
from charforge.trainer import Trainer
from charforge.vocab import Vocab

PRIME = "The river "
STEPS = 30


def invoke(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus_text):
    """A small LSTM trained for a few steps through `charforge train` (with the console output on)."""
    root = tmp_path_factory.mktemp("cli")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text, encoding="utf-8")
    result = invoke("train", corpus, "--cell", "lstm", "--hidden-size", 32, "--batch-size", 4, "--seq-len", 32,
                    "--steps", STEPS, "--eval-every", 15, "--log-every", 5, "--sample-length", 40, "--lr", 0.01,
                    "--runs-dir", root / "runs", "--name", "cli-run")
    return {"run": root / "runs" / "cli-run", "output": result.output, "corpus": corpus, "text": corpus_text}


def sample(run, *args, ok=True):
    return invoke("sample", run, *args, ok=ok)


# -- training -------------------------------------------------------------------------------------------

def test_train_writes_a_complete_run_directory(trained):
    run = trained["run"]
    assert (run / "config.json").is_file() and (run / "tokenizer.json").is_file()
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"latest.safetensors", "best.safetensors"}
    config = json.loads((run / "config.json").read_text())
    assert config["cell"] == "lstm" and config["hidden_size"] == 32 and config["steps"] == STEPS
    events = Run(run).events()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(5, STEPS + 1, 5))
    validations = [e for e in events if e["event"] == "validation"]
    assert [e["step"] for e in validations] == [15, 30]
    for e in validations:
        assert e["val_loss"] > 0 and abs(e["val_bpc"] - e["val_loss"] / 0.6931471805599453) < 1e-9
        assert 0 <= e["val_accuracy"] <= 1 and isinstance(e["sample"], str)
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["loss"] < steps[0]["loss"]  # it learns something, even in 30 steps


def test_train_prints_progress_validation_and_what_to_do_next(trained):
    out = trained["output"]
    assert "1x32 lstm" in out and f"run directory: {trained['run']}" in out
    assert "validation loss" in out and "bpc" in out
    assert f"done (budget spent) at step {STEPS}" in out and f"charforge sample {trained['run']}" in out


def test_training_without_validation_text(tmp_path, text_corpus):
    """--val-fraction 0: no validation numbers are invented; best is the newest checkpoint."""
    out = invoke("train", text_corpus, "--cell", "rnn", "--hidden-size", 16, "--batch-size", 2, "--seq-len", 16,
                 "--steps", 4, "--eval-every", 2, "--val-fraction", 0, "--runs-dir", tmp_path, "--name", "noval"
                 ).output
    assert "validation loss" not in out and "done (budget spent) at step 4." in out
    validations = [e for e in Run(tmp_path / "noval").events() if e["event"] == "validation"]
    assert [set(e) - {"event", "time", "sample"} for e in validations] == [{"step"}, {"step"}]
    for which in ("best", "latest"):
        with safe_open(tmp_path / "noval" / "checkpoints" / f"{which}.safetensors", "pt") as f:
            meta = json.loads(f.metadata()["charforge"])
        assert meta["step"] == 4 and meta["best_val"] is None


def test_epochs_budget(tmp_path, text_corpus):
    invoke("train", text_corpus, "--cell", "gru", "--hidden-size", 16, "--batch-size", 8, "--seq-len", 32,
           "--epochs", 1, "--runs-dir", tmp_path, "--name", "epoch", "-q")
    events = Run(tmp_path / "epoch").events()
    windows = events[0]["windows_per_epoch"]
    n = len(text_corpus.read_text())
    train_chars = n - int(n * 0.1)
    assert events[-1]["event"] == "end" and events[-1]["step"] == windows == (train_chars - 1) // 8 // 32


# -- sampling -------------------------------------------------------------------------------------------

def test_sample_prints_the_prime_then_a_continuation_of_the_right_length(trained):
    vocab = Vocab.from_json((trained["run"] / "tokenizer.json").read_text())
    out = sample(trained["run"], "--prime", PRIME, "--length", 60, "--seed", 1).stdout
    assert out.startswith(PRIME) and out.endswith("\n")
    continuation = out[len(PRIME):-1]
    assert len(continuation) == 60 and set(continuation) <= set(vocab.chars)


def test_same_seed_same_text_other_seed_other_text(trained):
    run = trained["run"]
    a = sample(run, "--prime", PRIME, "--length", 80, "--seed", 5).stdout
    assert sample(run, "--prime", PRIME, "--length", 80, "--seed", 5).stdout == a
    assert sample(run, "--prime", PRIME, "--length", 80, "--seed", 6).stdout != a


@pytest.mark.parametrize("options", [
    ["--temperature", "0.5"], ["--temperature", "1.5"], ["--top-k", "5"], ["--top-p", "0.9"],
    ["-t", "0.8", "--top-k", "10", "--top-p", "0.95"], ["--greedy"], ["--which", "latest"],
])
def test_sampling_options(trained, options):
    out = sample(trained["run"], "--prime", PRIME, "--length", 30, "--seed", 2, *options).stdout
    assert out.startswith(PRIME) and len(out) == len(PRIME) + 30 + 1


def test_greedy_equivalents_agree(trained):
    """Greedy, temperature 0, top-k 1 and a tiny top-p all take the most likely character."""
    run = trained["run"]
    greedy = sample(run, "--prime", PRIME, "--length", 40, "--greedy", "--seed", 1).stdout
    assert sample(run, "--prime", PRIME, "--length", 40, "--greedy", "--seed", 99).stdout == greedy
    for options in (["-t", "0"], ["--top-k", "1"], ["--top-p", "1e-9"]):
        assert sample(run, "--prime", PRIME, "--length", 40, "--seed", 3, *options).stdout == greedy, options


def test_greedy_cli_matches_the_model_run_by_hand(trained):
    """The streamed characters are the argmax of the model's logits, primed on the whole prompt."""
    engine = load_engine(trained["run"], device="cpu")
    model, vocab = engine.model, engine.vocab
    ids = vocab.encode(PRIME).tolist()
    with torch.no_grad():
        for _ in range(20):
            logits, _ = model(torch.tensor([ids]), model.initial_state(1))
            ids.append(int(logits[0, -1].argmax()))
    expected = vocab.decode(ids)
    assert sample(trained["run"], "--prime", PRIME, "--length", 20, "--greedy").stdout == expected + "\n"


def test_several_samples(trained):
    out = sample(trained["run"], "--prime", PRIME, "--length", 25, "--seed", 4, "-n", 3).stdout
    parts = out[:-1].split("\n----\n")
    assert len(parts) == 3 and all(p.startswith(PRIME) and len(p) == len(PRIME) + 25 for p in parts)


def test_sample_without_a_prime(trained):
    out = sample(trained["run"], "--length", 30, "--seed", 1).stdout
    assert len(out) == 31


def test_unknown_prompt_characters_are_listed(trained):
    result = sample(trained["run"], "--prime", "The €uro ✓ river#", "--length", 10, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr
    assert "not in the model's vocabulary" in message and "--drop-unknown" in message
    for char in "€✓#":
        assert char in message
    assert len(message.strip().splitlines()) == 1


def test_drop_unknown(trained):
    out = sample(trained["run"], "--prime", "The €river✓ ", "--length", 10, "--seed", 1, "--drop-unknown").stdout
    assert out.startswith("The river ") and len(out) == len("The river ") + 10 + 1
    assert out == sample(trained["run"], "--prime", "The river ", "--length", 10, "--seed", 1).stdout
    only_unknown = sample(trained["run"], "--prime", "€✓", "--length", 10, "--seed", 1, "--drop-unknown").stdout
    assert len(only_unknown) == 10 + 1  # nothing of the prompt is left to print


def test_the_console_script_streams_a_sample(trained):
    """The installed entry point, in a real process, prints what the in-process CLI prints."""
    args = ["sample", str(trained["run"]), "--prime", PRIME, "--length", 30, "--seed", 8]
    proc = subprocess.run([sys.executable, "-m", "charforge", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == sample(*args[1:]).stdout


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["sample", "--help"], ["--version"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys\nfrom charforge.cli import cli\n"
            f"try:\n    cli({argv!r}, prog_name='charforge')\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in ('torch', 'safetensors', 'tokenizers', 'numpy') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "charforge" in proc.stdout


# -- checkpoints and their files --------------------------------------------------------------------------

def edited_checkpoint(src: Path, dst: Path, edit) -> Path:
    with safe_open(src, "pt") as f:
        meta = json.loads(f.metadata()["charforge"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(meta)
    save_file(tensors, dst, metadata={"charforge": json.dumps(meta)})
    return dst


def test_checkpoint_of_a_missing_cell_plugin_names_the_plugin(trained, tmp_path):
    def to_missing_cell(meta):
        meta["cell"] = {"name": "quantum-lstm", "plugin": "quantum", "dist": "charforge-quantum",
                        "version": "2.1.0"}
        meta["config"]["cell"] = "quantum-lstm"

    ckpt = edited_checkpoint(trained["run"] / "checkpoints" / "best.safetensors", tmp_path / "moved.safetensors",
                             to_missing_cell)
    result = sample(ckpt, "--length", 5, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "quantum-lstm" in result.stderr and "charforge-quantum 2.1.0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = invoke("train", "--resume", ckpt, "--steps", STEPS + 5, ok=False)
    assert result.exit_code == 1 and "charforge-quantum" in result.stderr


def test_tokenizer_json_loads_with_the_tokenizers_library(trained):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(trained["run"] / "tokenizer.json"))
    vocab = Vocab.from_json((trained["run"] / "tokenizer.json").read_text())
    text = trained["text"][:500]
    encoding = tokenizer.encode(text)
    assert encoding.ids == vocab.encode(text).tolist()
    assert len(encoding.ids) == len(text)
    assert tokenizer.decode(encoding.ids) == text
    assert tokenizer.get_vocab_size() == len(vocab)


def test_checkpoint_loads_with_plain_safetensors_and_torch(trained):
    """The README's recipe: no charforge needed to read the weights and run the model."""
    path = trained["run"] / "checkpoints" / "best.safetensors"
    # --- as in the README ---
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["charforge"])
        weights = {name: f.get_tensor(name) for name in f.keys()}
    vocab = json.loads(meta["tokenizer"])["model"]["vocab"]  # character -> id
    chars = sorted(vocab, key=vocab.get)
    hidden = meta["config"]["hidden_size"]
    embed = weights.get("model.embed.weight")  # (vocab, embedding_dim); absent with one-hot input
    lstm = torch.nn.LSTM(len(chars) if embed is None else embed.shape[1], hidden, batch_first=True)
    lstm.load_state_dict({k.removeprefix("model.layers.0.rnn."): v for k, v in weights.items()
                          if k.startswith("model.layers.0.rnn.")})
    head = torch.nn.Linear(hidden, len(chars))
    head.load_state_dict({"weight": weights["model.head.weight"], "bias": weights["model.head.bias"]})
    ids = torch.tensor([[vocab[c] for c in PRIME]])
    x = F.one_hot(ids, len(chars)).float() if embed is None else embed[ids]
    logits = head(lstm(x)[0])
    # --- end ---
    assert meta["cell"]["name"] == "lstm" and meta["step"] == STEPS
    assert not any(k.startswith("model.") and "layers.0.rnn" not in k and "head" not in k and "embed" not in k
                   for k in weights)
    model = load_engine(path, device="cpu").model
    with torch.no_grad():
        expected, _ = model(ids, model.initial_state(1))
    torch.testing.assert_close(logits.detach(), expected)


def test_checkpoint_holds_no_pickle_and_records_provenance(trained):
    path = trained["run"] / "checkpoints" / "latest.safetensors"
    data = path.read_bytes()
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])  # the whole header is JSON: safetensors' format
    meta = json.loads(header["__metadata__"]["charforge"])
    assert meta["step"] == STEPS and meta["format"] == 2
    assert meta["cell"]["plugin"] == "lstm" and meta["cell"]["dist"] == "charforge"
    assert meta["optimizer"]["name"] == "adam"
    assert {"rng.cpu", "model.head.weight"} <= set(header) and any(k.startswith("optimizer.") for k in header)
    assert b"\x80\x04" not in data[:8 + header_size]


def test_trainer_refuses_a_pickle_checkpoint(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(2)}, bad)
    with pytest.raises(CharforgeError, match="never unpickles"):
        Trainer.resume(bad, {})
