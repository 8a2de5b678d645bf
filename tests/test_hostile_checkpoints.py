"""Checkpoints a stranger could hand out, each crafted here from a real tiny run: every one is refused
with one CharforgeError before anything is built from it, and a thread count, stored or given, is
bounded by the cores (issue 14, items 4, 9, 10 and 11).

The crafted files are saved as charforge saves (:func:`save_checkpoint`, so their checksums hold):
what is tested is the check each one meets, not the checksum. The checksum has tests of its own.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save

from charforge.cli import cli
from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.plugins import make_plugin_manager
from charforge.runs.checkpoint import load_checkpoint, save_checkpoint
from charforge.sampling.loading import load_engine
from charforge.threads import ThreadTuner
from charforge.trainer import Trainer

TEXT = "a tiny corpus for crafting hostile checkpoints, one line after another.\n" * 30


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real run's latest checkpoint (an LSTM with an embedding, Adam), read back as metadata and tensors."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARFORGE_CACHE", str(root / "cache"))
        pm = make_plugin_manager(block=["console"])
        config = TrainConfig(corpus=str(corpus), cell="lstm", hidden_size=8, embedding_dim=4, batch_size=2,
                             seq_len=8, steps=3, eval_every=3, sample_length=2, device="cpu", threads=1)
        trainer = Trainer(config, pm=pm, runs_root=root / "runs", name="run")
        trainer.run()
    path = trainer.directory.checkpoint("latest")
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["charforge"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return {"root": root, "corpus": corpus, "path": path, "meta": meta, "tensors": tensors, "pm": pm}


def _scratch(run) -> Path:
    folder = Path(tempfile.mkdtemp(dir=run["root"])) / "checkpoints"  # a run directory of its own
    folder.mkdir()
    return folder / "latest.safetensors"


def crafted(run, meta_fn=None, tensors_fn=None) -> Path:
    """The run's checkpoint edited by hand, then saved as charforge saves it."""
    meta = copy.deepcopy(run["meta"])
    tensors = {k: v.clone() for k, v in run["tensors"].items()}
    if meta_fn:
        meta_fn(meta)
    if tensors_fn:
        tensors_fn(tensors)
    path = _scratch(run)
    save_checkpoint(path, tensors, meta)
    return path


def refused(call, *match: str) -> str:
    """The one-line message ``call`` raises, holding every string of ``match``."""
    with pytest.raises(CharforgeError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message, message
    for part in match:
        assert part in message, message
    return message


def _config(key, value):
    return lambda meta: meta["config"].__setitem__(key, value)


def _resume(path, pm):
    trainer = Trainer.resume(path, {"steps": 5}, pm=pm)
    trainer.run()


# -- item 4: every tensor's checksum ----------------------------------------------------------

def _flip(run, tensor: str) -> Path:
    """The run's checkpoint with the lowest bit of ``tensor``'s first byte flipped (a float stays finite)."""
    blob = bytearray(run["path"].read_bytes())
    size = int.from_bytes(blob[:8], "little")
    blob[8 + size + json.loads(blob[8:8 + size])[tensor]["data_offsets"][0]] ^= 0x01
    path = _scratch(run)
    path.write_bytes(bytes(blob))
    return path


def test_a_flipped_bit_in_the_weights_is_refused_by_its_checksum(run):
    damaged = _flip(run, "model.head.weight")
    refused(lambda: load_checkpoint(damaged), "tensor data is damaged (checksum mismatch", "model.head.weight")
    refused(lambda: load_engine(damaged, device="cpu"), "checksum mismatch", "model.head.weight")


def test_generation_verifies_what_it_reads_and_a_resume_everything(run):
    """A model loaded to generate reads the weights alone and verifies those; damage in the training
    state is met by the resume, which reads it."""
    damaged = _flip(run, "optimizer.0.exp_avg")
    engine = load_engine(damaged, device="cpu")
    assert torch.equal(engine.model.head.weight, run["tensors"]["model.head.weight"])
    refused(lambda: load_checkpoint(damaged), "checksum mismatch", "optimizer.0.exp_avg")
    refused(lambda: _resume(damaged, run["pm"]), "checksum mismatch")


def test_checksums_name_exactly_the_tensors_the_file_holds(run):
    meta = copy.deepcopy(run["meta"])
    tensors = run["tensors"]
    del meta["checksums"]["model.head.bias"]
    path = _scratch(run)
    path.write_bytes(save(tensors, metadata={"charforge": json.dumps(meta)}))
    refused(lambda: load_checkpoint(path), "model.head.bias", "no checksum")
    del meta["checksums"]
    path.write_bytes(save(tensors, metadata={"charforge": json.dumps(meta)}))
    refused(lambda: load_checkpoint(path), "no checksums")


def test_checkpoints_written_before_checksums_still_load(run):
    """Format 1 had no checksums: such a file loads, unverified, as it always did."""
    meta = copy.deepcopy(run["meta"])
    meta.pop("checksums")
    meta["format"] = 1
    path = _scratch(run)
    path.write_bytes(save(run["tensors"], metadata={"charforge": json.dumps(meta)}))
    ckpt = load_checkpoint(path)
    assert all(torch.equal(ckpt.tensors[k], v) for k, v in run["tensors"].items())


# -- item 9: sizes the file does not hold -----------------------------------------------------

@pytest.mark.parametrize("key", ["num_layers", "hidden_size", "embedding_dim"])
def test_a_size_the_weights_do_not_hold_is_refused_at_once(run, key):
    path = crafted(run, _config(key, 10**9))
    started = time.perf_counter()
    refused(lambda: load_engine(path, device="cpu"), "1000000000")
    refused(lambda: _resume(path, run["pm"]), "1000000000")
    assert time.perf_counter() - started < 20


def test_a_model_larger_than_its_weights_is_refused_before_it_is_built(run):
    """A head as wide as the stored hidden size, over layers of the real one: the configuration
    describes an LSTM far larger than memory, which the file does not hold. It is refused before
    anything is allocated, naming the first weight that does not fit."""
    hidden = 100_000

    def wide(tensors):
        vocab = tensors["model.head.weight"].shape[0]
        tensors["model.head.weight"] = torch.zeros(vocab, hidden)

    path = crafted(run, _config("hidden_size", hidden), wide)
    refused(lambda: load_engine(path, device="cpu"), "model.layers.0", str(4 * hidden))
    refused(lambda: _resume(path, run["pm"]), "model.layers.0", str(4 * hidden))


def test_a_cell_that_cannot_be_built_on_the_meta_device_is_checked_after_its_build(run, monkeypatch):
    """A plugin cell may read its values as it builds, which the meta device cannot give: its weights
    are then compared with the file's once it is built, as before."""
    from charforge_builtins.lstm import LSTMCell

    build = LSTMCell.__init__

    def reads_values(self, *args, **kwargs):
        build(self, *args, **kwargs)
        float(self.rnn.weight_hh_l0.detach().sum())

    monkeypatch.setattr(LSTMCell, "__init__", reads_values)
    engine = load_engine(run["path"], device="cpu")
    assert torch.equal(engine.model.layers[0].rnn.weight_hh_l0, run["tensors"]["model.layers.0.rnn.weight_hh_l0"])


# -- item 10: thread counts -------------------------------------------------------------------

@pytest.mark.parametrize("threads", [100_000, 99999999999999999999])
def test_a_thread_count_above_the_cores_is_bounded_with_a_warning(threads, capsys):
    from charforge.threads import usable_cores

    applied = []
    tuner = ThreadTuner(threads, set_threads=applied.append)
    tuner.start()
    assert tuner.threads == applied[-1] == usable_cores()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"--threads {threads}" in lines[0] and f"using {usable_cores()}" in lines[0]


def test_a_checkpoints_thread_count_is_bounded_on_resume(run, capsys):
    from charforge.threads import usable_cores

    path = crafted(run, _config("threads", 10**9))
    trainer = Trainer.resume(path, {"steps": 4}, pm=run["pm"])
    assert trainer.tuner.threads == usable_cores()
    assert "--threads 1000000000" in capsys.readouterr().err


def test_generate_bounds_threads(run):
    before = torch.get_num_threads()
    result = CliRunner().invoke(cli, ["generate", str(run["path"]), "-p", "a", "--length", "3", "--threads",
                                      "100000", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "--threads 100000" in result.stderr and torch.get_num_threads() == before


# -- item 11: crafted values ------------------------------------------------------------------

def _tokenizer(edit):
    def apply(meta):
        tok = json.loads(meta["tokenizer"])
        edit(tok["model"]["vocab"])
        meta["tokenizer"] = json.dumps(tok)
    return apply


def _surrogate(vocab):
    char = next(c for c in vocab if c.isalpha())
    vocab["\ud800"] = vocab.pop(char)


def _as_float8(tensors):
    for name in [k for k in tensors if k.startswith("model.")]:
        tensors[name] = tensors[name].to(torch.float8_e4m3fn)


LOADS = {
    "float8-weights": (None, _as_float8, ["float8_e4m3fn"]),
    "nested-tokenizer": (lambda m: m.__setitem__("tokenizer", "[" * 10_000 + "]" * 10_000), None, ["tokenizer"]),
    "surrogate-in-vocabulary": (_tokenizer(_surrogate), None, ["surrogate", "\\ud800"]),
    "forget-bias": (_config("cell_options", {"forget_bias": 1e308}), None, ["forget_bias", "1e+308"]),
    "sample-length": (_config("sample_length", 10**12), None, ["--sample-length", "1000000000000"]),
}


@pytest.mark.parametrize("case", LOADS)
def test_a_crafted_checkpoint_is_refused_on_load(run, case):
    meta_fn, tensors_fn, match = LOADS[case]
    path = crafted(run, meta_fn, tensors_fn)
    refused(lambda: load_engine(path, device="cpu"), *match)
    refused(lambda: _resume(path, run["pm"]), *match)


def _set_tensor(name, value):
    return lambda tensors: tensors.__setitem__(name, value)


RESUMES = {
    "zero-rng": (_set_tensor("rng.cpu", torch.zeros_like(torch.get_rng_state())), ["random-generator state"]),
    "step-shape": (_set_tensor("optimizer.0.step", torch.zeros(3)), ["'0.step'", "(3,)"]),
    "moment-scalar": (_set_tensor("optimizer.0.exp_avg", torch.tensor(0.0)), ["'0.exp_avg'", "shape ()"]),
}


@pytest.mark.parametrize("case", RESUMES)
def test_a_crafted_training_state_is_refused_on_resume(run, case):
    tensors_fn, match = RESUMES[case]
    path = crafted(run, None, tensors_fn)
    load_engine(path, device="cpu")  # the weights are sound: generation never reads the training state
    refused(lambda: _resume(path, run["pm"]), "cannot be resumed", *match)


@pytest.mark.parametrize("cell,option", [("lstm", "forget_bias"), ("phased-lstm", "forget_bias"),
                                         ("phased-lstm", "tau_log_max"), ("phased-lstm", "tau_log_min")])
@pytest.mark.parametrize("value", ["1e308", "-1e308", "nan"])
def test_cell_options_beyond_their_bounds_are_one_line(run, tmp_path, cell, option, value):
    result = CliRunner().invoke(cli, ["train", str(run["corpus"]), "--cell", cell, "-c", option, value,
                                      "--hidden-size", "4", "--batch-size", "2", "--seq-len", "8", "--steps", "1",
                                      "--device", "cpu", "-q", "--runs-dir", str(tmp_path)])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and option in lines[0], result.stderr


def test_a_truncated_checkpoint_whose_header_length_starts_with_0x80_is_truncated_not_a_pickle(tmp_path):
    """A header length's low byte may be 0x80, a pickle's first opcode: the brace after the length says safetensors."""
    from charforge.runs.checkpoint import load_checkpoint

    path = tmp_path / "cut.safetensors"
    path.write_bytes((0x180).to_bytes(8, "little") + b'{"__metadata__": ' + b"x" * 40)
    with pytest.raises(CharforgeError, match=r"is truncated: its header says 384 bytes, the file holds 65 bytes"):
        load_checkpoint(path)
