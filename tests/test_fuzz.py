"""Property-based tests (hypothesis): nothing charforge reads may crash it beyond a clear error.

The tokenizer round-trips any Unicode text (and the ``tokenizers`` library agrees with it), the
batcher gives correct contiguous windows or a CharforgeError for any sizes, the sampler gives
valid ids for any valid options (and a CharforgeError for invalid ones), and loading random
bytes or randomly mutated checkpoints raises nothing but CharforgeError, within a time limit;
a mutated checkpoint that loads gives the tensors as they were written. Example counts are
kept modest so the whole file runs in well under 30 seconds.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save

from _hangs import no_hang
from charforge.runs.checkpoint import load_checkpoint
from charforge.sampling.loading import load_engine
from charforge.config import TrainConfig
from charforge.data import Streams
from charforge.errors import CharforgeError
from charforge.plugins import Registry, make_plugin_manager
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.picking import Picker
from charforge.sampling.settings import Request, Settings
from charforge.trainer import Trainer
from charforge.vocab import Vocab, build_and_encode

# CHARFORGE_FUZZ_SCALE=20 runs twenty times the examples, for a deeper search than CI's
SCALE = int(os.environ.get("CHARFORGE_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=120 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the tokenizer ------------------------------------------------------------------------------

@FUZZ
@given(st.text(min_size=1, max_size=200))
def test_vocab_round_trips_any_text(text):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    assert Vocab.from_json(vocab.to_json()) == vocab
    tok = vocab.tokenizer()  # the standard tokenizers-library tokenizer charforge stores
    assert tok.encode(text).ids == ids.tolist()
    assert tok.decode(ids.tolist()) == text
    fast_vocab, fast_ids = build_and_encode(text)
    assert fast_vocab == vocab and fast_ids.long().tolist() == ids.tolist()


@FUZZ
@given(st.text(min_size=1, max_size=50), st.text(max_size=50))
def test_vocab_unknown_characters_are_named_or_dropped(known, prompt):
    vocab = Vocab.from_text(known)
    missing = vocab.unknown(prompt)
    if missing:
        with pytest.raises(CharforgeError, match="not in the model's vocabulary"):
            vocab.encode(prompt)
    kept = vocab.encode(prompt, drop_unknown=True)
    assert vocab.decode(kept) == "".join(c for c in prompt if c not in missing)


def test_empty_text_has_no_vocabulary():
    with pytest.raises(CharforgeError, match="empty"):
        Vocab.from_text("")


# -- the batcher --------------------------------------------------------------------------------

@FUZZ
@given(n=st.integers(0, 400), batch=st.integers(-2, 24), seq_len=st.integers(-2, 48))
def test_streams_give_contiguous_windows_or_a_clear_error(n, batch, seq_len):
    ids = torch.arange(n, dtype=torch.int32)  # the value of each id is its position in the text
    try:
        streams = Streams(ids, batch, seq_len)
    except CharforgeError as exc:
        assert batch <= 0 or seq_len <= 0 or n - 1 < batch * seq_len, exc
        return
    assert batch > 0 and seq_len > 0 and n - 1 >= batch * seq_len
    per_stream = (n - 1) // batch
    assert streams.windows == per_stream // seq_len >= 1
    assert streams.chars_per_window == batch * seq_len
    for w in range(streams.windows):
        x, y, t = streams.window(w, with_time=True)
        assert x.shape == y.shape == t.shape == (batch, seq_len)
        assert x.dtype == y.dtype == torch.int64 and t.dtype == torch.float64
        start = torch.arange(batch)[:, None] * per_stream + w * seq_len
        assert torch.equal(x, start + torch.arange(seq_len))  # stream b reads its own text, in order
        assert torch.equal(y, x + 1)  # and predicts the next character
        assert torch.equal(t, (w * seq_len + torch.arange(seq_len, dtype=torch.float64)).expand(batch, -1))
        assert streams.window(w)[2] is None


@FUZZ
@given(n=st.integers(0, 200), batch=st.integers(1, 24), seq_len=st.integers(1, 48))
def test_validation_streams_shrink_to_fit(n, batch, seq_len):
    streams = Streams.fitting(torch.arange(n), batch, seq_len)
    if n < 2:
        assert streams is None
        return
    assert 1 <= streams.batch <= batch and 1 <= streams.seq_len <= seq_len and streams.windows >= 1


# -- the sampler --------------------------------------------------------------------------------

_any_float = st.floats(allow_nan=True, allow_infinity=True)


@FUZZ
@given(length=st.integers(-3, 40), temperature=st.one_of(_any_float, st.floats(0, 3)),
       top_k=st.integers(-3, 40), top_p=st.one_of(_any_float, st.floats(0, 1)), greedy=st.booleans(),
       vocab=st.integers(1, 30), batch=st.integers(1, 4), scale=st.floats(0, 1e4), seed=st.integers(0, 2**32))
def test_sampler_options_give_valid_ids_or_a_clear_error(length, temperature, top_k, top_p, greedy, vocab,
                                                        batch, scale, seed):
    options = Settings(length, temperature, top_k, top_p, greedy)
    valid = length >= 0 and temperature >= 0 and top_k >= 0 and 0 < top_p <= 1
    if not valid:
        with pytest.raises(CharforgeError):
            options.check()
        return
    assert options.check() is options
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=generator) * scale
    ids = Picker([options] * batch, vocab, torch.device("cpu")).choose(logits, torch.rand(batch, 1, generator=generator))
    assert ids.shape == (batch,) and ids.dtype == torch.int64
    assert bool(((ids >= 0) & (ids < vocab)).all())
    if greedy or temperature == 0 or top_k == 1:
        assert torch.equal(logits.gather(1, ids[:, None]), logits.max(dim=1, keepdim=True).values)


@pytest.fixture(scope="module")
def tiny_model():
    registry = Registry(make_plugin_manager())
    from charforge.model import build_model

    vocab = Vocab.from_text("abc xyz\n")
    config = TrainConfig(cell="lstm", hidden_size=8)
    return build_model(config, len(vocab), registry).eval(), vocab


@settings(max_examples=40 * SCALE, deadline=None)
@given(data=st.data())
def test_sampler_samples_any_valid_options(tiny_model, data):
    model, vocab = tiny_model
    options = Settings(data.draw(st.integers(0, 12)), data.draw(st.floats(0, 10)),
                       data.draw(st.integers(0, 12)), data.draw(st.floats(1e-30, 1)), data.draw(st.booleans()))
    prime = data.draw(st.text(alphabet="abc xyz\n!", max_size=8))
    n = data.draw(st.integers(1, 3))

    def sample(prime, seed, drop_unknown=False):
        engine = BatchGenerator(model, vocab, drop_unknown=drop_unknown)
        return [s.text for s in engine.run([Request(prime, options, n)], seed)]

    if "!" in prime:
        with pytest.raises(CharforgeError, match="vocabulary"):
            sample(prime, 1)
        assert sample(prime, 1, drop_unknown=True) == sample(prime.replace("!", ""), 1)
        return
    texts = sample(prime, data.draw(st.integers(0, 2**62)))
    assert len(texts) == n and all(len(t) == options.length and set(t) <= set(vocab.chars) for t in texts)


# -- checkpoints --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of a tiny run, its bytes and tensors, and the plugins to resume it with."""
    root = tmp_path_factory.mktemp("fuzzckpt")
    corpus = root / "corpus.txt"
    corpus.write_text("a tiny corpus for fuzzing checkpoints.\n" * 20)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARFORGE_CACHE", str(root / "cache"))
        pm = make_plugin_manager(block=["console"])
        config = TrainConfig(corpus=str(corpus), cell="lstm", hidden_size=8, batch_size=2, seq_len=8, steps=3,
                             eval_every=3, sample_length=2, device="cpu", optimizer="adam")
        trainer = Trainer(config, pm=pm, runs_root=root / "runs", name="run")
        trainer.run()
    path = trainer.run_dir / "checkpoints" / "latest.safetensors"
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return Fixture(root=root, path=path, bytes=path.read_bytes(), tensors=tensors, pm=pm)


class Fixture(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example: keep it short
        return f"<checkpoint {self['path']}>"


CASE_SECONDS = 30  # one load of a tiny checkpoint takes milliseconds: this long is a hang


def _same(loaded: dict[str, torch.Tensor], written: dict[str, torch.Tensor]) -> bool:
    return loaded.keys() == written.keys() and all(
        loaded[k].dtype == v.dtype and torch.equal(loaded[k], v) for k, v in written.items())


def _load_everything(path: Path, written: dict[str, torch.Tensor] | None = None) -> None:
    """What `charforge sample` and a resume read of a checkpoint: only CharforgeError may come out,
    and a load that succeeds reads exactly the tensors ``written`` (when given), never others."""
    with no_hang(CASE_SECONDS):
        try:
            ckpt = load_checkpoint(path)
            assert written is None or _same(ckpt.tensors, written), "a changed checkpoint loaded unnoticed"
            model = load_engine(path, device="cpu").model
            weights = {f"model.{k}": v for k, v in model.state_dict().items()}
            assert written is None or _same(weights, {k: v for k, v in written.items() if k.startswith("model.")})
        except CharforgeError as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message


def _scratch(checkpoint) -> Path:
    folder = Path(tempfile.mkdtemp(dir=checkpoint["root"])) / "checkpoints"  # a run directory of its own
    folder.mkdir()
    return folder / "latest.safetensors"


@FUZZ
@given(blob=st.binary(max_size=3000))
def test_random_bytes_are_refused_clearly(checkpoint, blob):
    path = _scratch(checkpoint)
    path.write_bytes(blob)
    with pytest.raises(CharforgeError):
        load_checkpoint(path)


@FUZZ
@given(body=st.binary(max_size=600), extra=st.integers(-20, 20))
def test_random_headers_are_refused_clearly(checkpoint, body, extra):
    """Bytes that pass the first look (a plausible header length and a brace) still fail cleanly."""
    header = b"{" + body
    path = _scratch(checkpoint)
    path.write_bytes(max(len(header) + extra, 0).to_bytes(8, "little") + header)
    _load_everything(path)


@FUZZ
@given(data=st.data())
def test_mutated_checkpoints_load_as_written_or_fail_clearly(checkpoint, data):
    """Bytes changed anywhere: a load that succeeds reads the tensors as they were written."""
    blob = bytearray(checkpoint["bytes"])
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        # mostly in the header, where the structure is; sometimes in the tensors' bytes
        where = data.draw(st.one_of(st.integers(0, header_end - 1), st.integers(0, len(blob) - 1)))
        blob[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    path = _scratch(checkpoint)
    path.write_bytes(bytes(blob))
    _load_everything(path, checkpoint["tensors"])


@FUZZ
@given(data=st.data())
def test_changed_tensor_bytes_are_refused_by_their_checksum(checkpoint, data):
    """Any change to the tensors' bytes is met, whichever tensor it hits and whether or not the value
    it makes is finite: one line naming the checksum, or (where every byte was set to what it was) the
    checkpoint as written."""
    blob = bytearray(checkpoint["bytes"])
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(header_end, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = _scratch(checkpoint)
    path.write_bytes(bytes(blob))
    if blob == checkpoint["bytes"]:
        _load_everything(path, checkpoint["tensors"])
        return
    with no_hang(CASE_SECONDS), pytest.raises(CharforgeError, match=r"tensor data is damaged \(checksum mismatch"):
        load_checkpoint(path)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    """Every place in a JSON document: dict keys and list indices, depth first."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


@settings(max_examples=80 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hand_edited_metadata_loads_or_fails_clearly(checkpoint, data):
    """Random edits of the metadata JSON (the tokenizer included): sample and resume fail cleanly or work."""
    with safe_open(checkpoint["path"], "pt") as f:
        meta = json.loads(f.metadata()["charforge"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["tokenizer"] = json.loads(meta["tokenizer"])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(meta) if p]
        target = data.draw(st.sampled_from(paths))
        parent = meta
        for key in target[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[target[-1]]
        else:
            parent[target[-1]] = data.draw(_json)
    if isinstance(meta.get("tokenizer"), (dict, list)):
        meta["tokenizer"] = json.dumps(meta["tokenizer"])
    path = _scratch(checkpoint)
    path.write_bytes(save(tensors, metadata={"charforge": json.dumps(meta)}))
    _load_everything(path, checkpoint["tensors"])
    try:  # what `charforge train --resume` does, one step further
        trainer = Trainer.resume(path, {"steps": 4}, pm=checkpoint["pm"])
        trainer.run()
        assert all(math.isfinite(float(v)) for v in trainer.model.state_dict()["head.weight"].flatten())
    except CharforgeError as exc:
        assert str(exc) and "\n" not in str(exc)
