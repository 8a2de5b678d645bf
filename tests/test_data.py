"""Text in, ids out: the vocabulary, its tokenizer.json, the corpus readers, the BPTT batches."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

import charforge.corpora as corpora
from charforge.corpora import load_corpus
from charforge.data import Streams, split
from charforge.errors import CharforgeError
from charforge.vocab import Vocab, build_and_encode

TRICKY = [
    "plain ascii text.",
    "Grüße aus Köln — naïve café, Ωμέγα, Ёлка, 中文字符, עברית",
    "emoji 🙂🎄 and a family 👩‍👩‍👧 (a ZWJ sequence), flags 🇳🇴, skin tone 👍🏽",
    "lines\nwith\r\nCRLF\rCR\u2028LS\u2029PS\x0bVT\x0cFF and\ttabs",
    "  leading and   repeated   spaces  ",
    "combining e\u0301 vs é, ligature ﬁ, zero\u200bwidth, NBSP\u00a0here, BOM\ufeffinside",
    "\x00NUL and \x7fDEL and \U0010fffd the last plane",
]


# -- the vocabulary ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", TRICKY)
def test_vocab_round_trips(text):
    vocab, ids = build_and_encode(text)
    assert vocab.chars == sorted(set(text))  # ids are characters sorted by code point
    assert len(ids) == len(text) and ids.dtype == torch.uint8
    assert vocab.decode(ids) == text
    assert torch.equal(vocab.encode(text), ids.long())
    assert vocab == Vocab.from_text(text) == Vocab.from_json(vocab.to_json())


@pytest.mark.parametrize("text", TRICKY)
def test_vocab_json_is_a_tokenizer_that_agrees(text):
    vocab = Vocab.from_text(text)
    tokenizer = Tokenizer.from_str(vocab.to_json())
    encoding = tokenizer.encode(text)
    assert encoding.ids == vocab.encode(text).tolist()
    assert tokenizer.decode(encoding.ids) == text
    assert tokenizer.get_vocab() == {c: i for i, c in enumerate(vocab.chars)}


def test_unknown_characters_are_named_or_dropped():
    vocab = Vocab.from_text("abc ")
    with pytest.raises(CharforgeError) as info:
        vocab.encode("a cab! €")
    assert "'!€'" in str(info.value) and "--drop-unknown" in str(info.value)
    assert vocab.decode(vocab.encode("a cab! €", drop_unknown=True)) == "a cab "
    assert vocab.unknown("zebra") == ["e", "r", "z"]


def test_large_vocabularies_use_wider_ids():
    text = "".join(chr(0x4E00 + i) for i in range(300))
    vocab, ids = build_and_encode(text)
    assert len(vocab) == 300 and ids.dtype == torch.int16 and vocab.decode(ids) == text


# -- train/validation split and batches -----------------------------------------------------------------

def test_split_holds_out_the_end_contiguously():
    ids = torch.arange(1000)
    train, val = split(ids, 0.1)
    assert torch.equal(train, ids[:900]) and torch.equal(val, ids[900:])
    train, val = split(ids, 0.0)
    assert len(train) == 1000 and len(val) == 0


def test_streams_shapes_targets_and_contiguity():
    ids = torch.arange(103).to(torch.int16)  # stored small, served as int64
    data = Streams(ids, batch=4, seq_len=5)
    per_stream = 102 // 4
    assert data.windows == per_stream // 5 == 5 and data.chars_per_window == 20
    previous = None
    for i in range(data.windows):
        x, y, t = data.window(i)
        assert x.shape == y.shape == (4, 5) and x.dtype == y.dtype == torch.int64 and t is None
        assert torch.equal(y, x + 1)  # each target is the next character
        assert torch.equal(x[:, 0], torch.arange(4) * per_stream + 5 * i)  # stream b reads its own part
        if previous is not None:  # stream b continues exactly where window i-1 ended
            assert torch.equal(x[:, 0], previous[0][:, -1] + 1)
            assert torch.equal(x[:, 0], previous[1][:, -1])
        previous = (x, y)


def test_streams_timestamps_are_positions_within_each_stream():
    data = Streams(torch.arange(200), batch=3, seq_len=8)
    for i in (0, 1, data.windows - 1):
        _, _, t = data.window(i, with_time=True)
        assert t.dtype == torch.float64 and t.shape == (3, 8)
        assert torch.equal(t, torch.arange(8 * i, 8 * (i + 1), dtype=torch.float64).expand(3, 8))


@pytest.mark.parametrize("length, batch, seq_len, hint", [
    (10, 2, 8, "use --batch-size 1 or less"),
    (30, 8, 8, "use --batch-size 3 or less"),
    (5, 1, 8, "use --seq-len 4 or less with --batch-size 1"),
])
def test_too_short_text_says_what_would_fit(length, batch, seq_len, hint):
    with pytest.raises(CharforgeError) as info:
        Streams(torch.arange(length), batch, seq_len)
    message = str(info.value)
    assert f"has {length} characters" in message and f"needs at least {batch * seq_len + 1}" in message
    assert hint in message


def test_validation_streams_shrink_to_fit():
    data = Streams.fitting(torch.arange(40), batch=8, seq_len=16)
    assert (data.batch, data.seq_len, data.windows) == (2, 16, 1)
    data = Streams.fitting(torch.arange(10), batch=8, seq_len=16)
    assert (data.batch, data.seq_len, data.windows) == (1, 9, 1)
    assert Streams.fitting(torch.arange(1), batch=8, seq_len=16) is None


def test_too_short_corpus_is_a_clear_training_error(train, tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("just a few words here\n")
    with pytest.raises(CharforgeError, match=r"too short for --batch-size 4 x --seq-len 16"):
        train(corpus=str(path))


# -- reading corpora ----------------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private encoding cache for the test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CHARFORGE_CACHE", str(folder))
    return folder


def text_of(spec, registry, **kw) -> str:
    corpus = load_corpus(str(spec), registry, **kw)
    return corpus.vocab.decode(corpus.ids)


def test_a_directory_is_one_corpus(tmp_path, registry, cache):
    root = tmp_path / "books"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.txt").write_text("alpha")  # no final newline: one is added between files
    (root / "b.txt").write_text("beta\n")
    (root / "sub" / "c.md").write_text("gamma")
    (root / ".git" / "config").write_text("hidden")
    (root / ".notes.txt").write_text("hidden too")
    (root / "picture.png").write_bytes(b"\x89PNG\x00\x00binary")
    corpus = load_corpus(str(root), registry)
    assert corpus.name == "books"
    assert corpus.vocab.decode(corpus.ids) == "alpha\nbeta\ngamma"


def test_a_glob_is_one_corpus(tmp_path, registry, cache):
    root = tmp_path / "books"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "b.log").write_text("not me\n")
    (root / "sub" / "c.txt").write_text("gamma\n")
    assert text_of(root / "*.txt", registry) == "alpha\n"
    assert text_of(root / "**" / "*.txt", registry) == "alpha\ngamma\n"
    with pytest.raises(CharforgeError, match="no files match"):
        load_corpus(str(root / "*.csv"), registry)


def test_byte_order_mark_is_stripped(tmp_path, registry, cache):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffHello, world\n".encode("utf-8"))
    corpus = load_corpus(str(path), registry)
    assert corpus.vocab.decode(corpus.ids) == "Hello, world\n" and "\ufeff" not in corpus.vocab.chars


def test_not_utf8_says_where_and_what_to_do(tmp_path, registry, cache):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"line one\nline two\nbad \xff byte\n")
    with pytest.raises(CharforgeError) as info:
        load_corpus(str(path), registry)
    message = str(info.value)
    assert str(path) in message and "byte 22" in message and "line 3" in message
    assert "--encoding" in message and "--errors replace" in message
    assert text_of(path, registry, encoding="latin-1").endswith("bad \xff byte\n")
    assert "\ufffd" in text_of(path, registry, errors="replace")


def test_missing_and_unknown_corpora(registry, cache):
    with pytest.raises(CharforgeError, match="does not exist"):
        load_corpus("no/such/file.txt", registry)
    with pytest.raises(CharforgeError, match="Did you mean 'faith'"):
        load_corpus("faiht", registry)


def test_encoding_cache_is_reused_and_invalidated(tmp_path, registry, cache, monkeypatch, corpus_text):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text)
    first = load_corpus(str(path), registry)
    entries = list((cache / "encoded").glob("*.safetensors"))
    assert len(entries) == 1

    real_read = corpora._read

    def no_reading(*args):
        raise AssertionError("the corpus was read again instead of taken from the cache")

    monkeypatch.setattr(corpora, "_read", no_reading)
    second = load_corpus(str(path), registry)
    assert second.vocab == first.vocab and torch.equal(second.ids, first.ids)

    monkeypatch.setattr(corpora, "_read", real_read)
    path.write_text(corpus_text + "A new line, with new characters: XYZ.\n")
    changed = load_corpus(str(path), registry)
    assert changed.vocab.decode(changed.ids).endswith("XYZ.\n") and "Z" in changed.vocab.chars
    assert len(list((cache / "encoded").glob("*.safetensors"))) == 2

    for entry in (cache / "encoded").glob("*.safetensors"):  # a damaged entry is rebuilt, not trusted
        entry.write_bytes(b"garbage")
    again = load_corpus(str(path), registry)
    assert torch.equal(again.ids, changed.ids)


def test_no_cache_when_asked(tmp_path, registry, cache):
    path = tmp_path / "corpus.txt"
    path.write_text("some text\n")
    load_corpus(str(path), registry, use_cache=False)
    assert not (cache / "encoded").exists()


# -- named corpora ------------------------------------------------------------------------------------------

def test_built_in_seed_corpora(registry):
    corpus = load_corpus("faith", registry)
    assert corpus.vocab.decode(corpus.ids) == "All the faith he had had had had no effect on the outcome of his life."
    assert text_of("acknowledgement", registry) == "Acknowledgement"
    assert text_of("amazon", registry) == "Amazon is river."


def test_tiny_shakespeare_from_the_shared_corpora(shared_corpora, registry):
    corpus = load_corpus("tiny-shakespeare", registry)
    assert len(corpus.ids) == 1_115_394 and len(corpus.vocab) == 65
    assert corpus.vocab.decode(corpus.ids[:14]) == "First Citizen:"


def test_grimms_without_bom_header_or_licence(shared_corpora, registry):
    text = text_of("grimms", registry)
    assert "\ufeff" not in text and "Gutenberg" not in text
    assert 500_000 < len(text) < 540_241
    assert "Hansel" in text or "HANSEL" in text


def test_a_corrupt_download_is_refused(tmp_path, registry, monkeypatch, cache):
    monkeypatch.setenv("CHARFORGE_CORPUS_DIR", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").write_text("not shakespeare\n")
    with pytest.raises(CharforgeError, match="does not match the SHA-256"):
        load_corpus("tiny-shakespeare", registry)


def test_python_stdlib_corpus_is_real_text_on_every_machine(registry):
    named = {p.name: p.obj for p in registry.items("corpus")}["python-stdlib"]
    files = named.files()
    assert len(files) > 50 and all(f.suffix == ".py" and f.is_file() for f in files)
    assert files == sorted(files)
