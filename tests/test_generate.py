"""Batched generation: row independence, reproducibility, stop strings, beam search, the CLI.

Most tests use a small 2-layer LSTM with fixed random weights (its predictions are spread out,
so sampling is as random as it gets); the CLI tests use a checkpoint written by the Trainer.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

import charforge
from charforge.cell import Cell
from charforge.cli import cli
from charforge.errors import CharforgeError
from charforge.cli.prompts import read_prompts, unescape
from charforge.sampling.engine import ROUND, BatchGenerator
from charforge.sampling.picking import Picker
from charforge.sampling.randomness import row_seed, uniforms
from charforge.sampling.settings import Request, Settings
from charforge.model import CharModel
from charforge.plugins import Registry, make_plugin_manager
from charforge.vocab import Vocab

TEXT = "The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs!\n" * 30
PROMPTS = ["", "T", "Th", "fox", "dog", "The quick", "Pack my box with", "jugs!\nThe lazy dog"]


def lstm_model(vocab_size: int, hidden: int = 24, layers: int = 2, seed: int = 0, sharpen: float = 1.0):
    torch.manual_seed(seed)
    cell = Registry(make_plugin_manager()).get("cell", "lstm").obj
    model = CharModel(vocab_size, cell, hidden, num_layers=layers).eval()
    with torch.no_grad():
        model.head.weight.mul_(sharpen)
    return model


@pytest.fixture(scope="module")
def tiny():
    vocab = Vocab.from_text(TEXT)
    return lstm_model(len(vocab), sharpen=4.0), vocab


def texts(model, vocab, requests, batch_size, seed=7, precision="float32"):
    """{(prompt, settings, sample index): text} from one run (float32: the arithmetic of ``model.step``)."""
    gen = BatchGenerator(model, vocab, "cpu", batch_size, precision=precision)
    return {(s.prompt, s.settings, s.sample): s.text for s in gen.run(requests, seed)}


def reference(model, vocab, prompt: str, length: int, temperature: float, seed: int, sample: int = 0) -> str:
    """The plainest possible sampler for one prompt: prime, then step and invert the CDF."""
    ids = vocab.encode(prompt) if prompt else torch.tensor([vocab.index["\n"]])
    u = uniforms(torch.tensor([row_seed(seed, prompt, sample)]), torch.tensor([0]), length)[0]
    with torch.inference_mode():
        state = model.initial_state(1)
        if len(ids) > 1:
            _, state = model(ids[None, :-1], state)
        token, out = ids[-1:], []
        for j in range(length):
            logits, state = model.step(token, state)
            x = logits[0] - logits[0].max()
            cdf = (x / temperature).softmax(-1).cumsum(-1)
            k = int((cdf <= u[j] * cdf[-1]).sum())
            out.append(vocab.chars[k])
            token = torch.tensor([k])
    return "".join(out)


# -- randomness -----------------------------------------------------------------------------------

def test_uniforms_are_splitmix64_and_split_anywhere():
    mask = (1 << 64) - 1

    def splitmix(key, i):
        z = (key + (i + 1) * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return (z ^ (z >> 31)) >> 40

    keys = [row_seed(1, "a", 0), row_seed(1, "a", 1), row_seed(2, "a", 0), 5]
    u = uniforms(torch.tensor(keys), torch.tensor([0, 10, 1000, 2 ** 40]), 100)
    for r, (key, start) in enumerate(zip(keys, [0, 10, 1000, 2 ** 40])):
        expected = torch.tensor([splitmix(key, start + j) for j in range(100)], dtype=torch.float32)
        assert torch.allclose(u[r], expected * 2.0 ** -24, rtol=3e-6, atol=0)
    assert 0 <= float(u.min()) and float(u.max()) < 1
    assert len({row_seed(s, p, i) for s in (0, 1) for p in ("a", "b", "") for i in (0, 1)}) == 12
    whole = uniforms(torch.tensor(keys), torch.zeros(4, dtype=torch.int64), 90)
    parts = torch.cat([uniforms(torch.tensor(keys), torch.full((4,), a), b - a)
                       for a, b in [(0, 7), (7, 64), (64, 90)]], dim=1)
    assert torch.equal(whole, parts)


def test_inverse_cdf_pick_matches_the_distribution():
    torch.manual_seed(3)
    logits = torch.randn(1, 6) * 1.5
    n = 40_000
    u = torch.rand(n)
    for settings, check in [
        (Settings(temperature=1.0), lambda p: p),
        (Settings(temperature=0.5), lambda p: (logits[0] / 0.5).softmax(-1)),
        (Settings(top_k=2), None),
        (Settings(top_p=0.6), None),
    ]:
        plan = Picker([settings] * n, 6, torch.device("cpu"))
        picks = plan.choose(logits.expand(n, 6), u.unsqueeze(1))
        freq = torch.bincount(picks, minlength=6).float() / n
        probs = logits[0].softmax(-1)
        if settings.top_k:
            allowed = probs.topk(2).indices
            assert set(picks.unique().tolist()) <= set(allowed.tolist())
            probs = torch.zeros(6).index_fill(0, allowed, 1) * probs
            probs /= probs.sum()
        elif settings.top_p < 1:
            order = probs.argsort(descending=True)
            keep = (probs[order].cumsum(0) - probs[order]) < 0.6
            mask = torch.zeros(6).index_fill(0, order[keep], 1)
            probs = mask * probs / (mask * probs).sum()
            assert set(picks.unique().tolist()) == set(order[keep].tolist())
        else:
            probs = check(probs)
        assert torch.allclose(freq, probs, atol=0.012), (settings, freq, probs)


def test_filters_at_their_limits_are_greedy(tiny):
    model, vocab = tiny
    greedy = texts(model, vocab, [Request(p, Settings(length=40, greedy=True)) for p in PROMPTS], 8)
    for variant in (Settings(length=40, top_k=1), Settings(length=40, top_p=1e-30),
                    Settings(length=40, temperature=0.0), Settings(length=40, temperature=1e-30)):
        got = texts(model, vocab, [Request(p, variant) for p in PROMPTS], 8)
        assert [got[(p, variant, 0)] for p in PROMPTS] == [greedy[(p, Settings(length=40, greedy=True), 0)]
                                                           for p in PROMPTS], variant


# -- prompts of different lengths, batch size, order ------------------------------------------------

def test_matches_a_plain_one_prompt_sampler(tiny):
    model, vocab = tiny
    requests = [Request(p, Settings(length=150, temperature=t)) for p in PROMPTS for t in (1.0, 0.7)]
    got = texts(model, vocab, requests, batch_size=16, seed=11)
    for p in PROMPTS:
        for t in (1.0, 0.7):
            assert got[(p, Settings(length=150, temperature=t), 0)] == reference(model, vocab, p, 150, t, 11)


def test_a_prompt_alone_and_inside_a_batch_give_the_same_text(tiny):
    model, vocab = tiny
    settings = Settings(length=130)
    for prompt in ["fox", "The quick", ""]:
        alone = texts(model, vocab, [Request(prompt, settings, num_samples=2)], batch_size=1)
        crowd = [Request(p, settings, num_samples=2) for p in PROMPTS + ["box", "dog", "a b c d e f g h i"]]
        together = texts(model, vocab, crowd, batch_size=8)
        for i in range(2):
            assert alone[(prompt, settings, i)] == together[(prompt, settings, i)]


def test_same_seed_same_text_whatever_the_batch_size_and_order(tiny):
    model, vocab = tiny
    mixes = [Settings(length=90), Settings(length=70, temperature=0.6), Settings(length=80, top_k=5),
             Settings(length=80, top_p=0.8, temperature=1.3), Settings(length=60, greedy=True),
             Settings(length=90, stop=("e ",)), Settings(length=5)]
    requests = [Request(p, s, num_samples=2) for p, s in zip(PROMPTS, itertools.cycle(mixes))]
    requests += [Request(p, mixes[0], num_samples=3) for p in PROMPTS[:4]]
    base = texts(model, vocab, requests, batch_size=64)
    assert len(set(base.values())) > len(base) * 0.8  # samples differ from each other
    rng = random.Random(0)
    for batch_size in (1, 3, 8):
        order = list(requests)
        rng.shuffle(order)
        assert texts(model, vocab, order, batch_size) == base, batch_size


def test_results_come_in_request_order_and_seeds_are_reported(tiny):
    model, vocab = tiny
    requests = [Request(p, Settings(length=10 * (i % 3) + 1), num_samples=2, index=i)
                for i, p in enumerate(PROMPTS)]
    requests.append(Request("dog", Settings(length=3), num_samples=1, seed=99, index=len(PROMPTS)))
    out = list(BatchGenerator(model, vocab, "cpu", batch_size=3).run(requests, seed=5))
    assert [(s.index, s.sample) for s in out] == [(r.index, i) for r in requests for i in range(r.num_samples)]
    assert [s.seed for s in out] == [5] * (len(out) - 1) + [99]
    assert all(s.chars == len(s.text) == s.settings.length and s.stop_reason == "length" for s in out)
    again = list(BatchGenerator(model, vocab, "cpu", batch_size=3).run(requests, seed=5))
    assert [s.text for s in again] == [s.text for s in out]
    other = list(BatchGenerator(model, vocab, "cpu", batch_size=3).run(requests, seed=6))
    assert [s.text for s in other][:-1] != [s.text for s in out][:-1]
    assert other[-1].text == out[-1].text  # its own seed
    with pytest.raises(CharforgeError, match="not in the model's vocabulary: '~'"):
        BatchGenerator(model, vocab).run([Request("fox"), Request("~")])  # checked before anything runs


def test_greedy_samples_are_identical_and_length_zero_is_empty(tiny):
    model, vocab = tiny
    out = list(BatchGenerator(model, vocab).run([Request("fox", Settings(length=50, greedy=True), 3),
                                                 Request("fox", Settings(length=0), 2)], seed=1))
    assert len({s.text for s in out[:3]}) == 1 and len(out[0].text) == 50
    assert [s.text for s in out[3:]] == ["", ""]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_compiled_loop_python_loop_and_model_step_agree(cell, monkeypatch):
    from charforge.sampling import engine as generate
    from charforge.sampling import fastpath

    vocab = Vocab.from_text(TEXT)
    torch.manual_seed(1)
    model = CharModel(len(vocab), Registry(make_plugin_manager()).get("cell", cell).obj, 20, num_layers=2).eval()
    mixes = [Settings(length=70), Settings(length=50, temperature=0.5, top_k=4), Settings(length=60, top_p=0.7),
             Settings(length=40, greedy=True)]
    requests = [Request(p, s, num_samples=2) for p, s in zip(PROMPTS, itertools.cycle(mixes))]
    assert generate._Stepper(model, "float32").fast is not None
    compiled = texts(model, vocab, requests, batch_size=5)
    monkeypatch.setattr(generate, "compiled_fast_rows", lambda: fastpath.fast_rows)
    assert texts(model, vocab, requests, batch_size=5) == compiled
    monkeypatch.setattr(generate, "FastWeights", type("NoFastWeights", (), {"of": staticmethod(lambda m, p: None)}))
    assert generate._Stepper(model, "float32").fast is None
    assert texts(model, vocab, requests, batch_size=5) == compiled


def test_big_batches_agree_with_small_ones(tiny):
    """From BIG_BATCH rows up the float32 products go through oneDNN's packed weights, which round
    differently from BLAS: greedy texts agree exactly, sampled ones except at a near-tie."""
    from charforge.sampling.fastpath import BIG_BATCH

    model, vocab = tiny
    n = BIG_BATCH + 8
    prompts = [PROMPTS[i % len(PROMPTS)] + "abcdefgh"[:i % 5] for i in range(n)]
    for settings in (Settings(length=60, greedy=True), Settings(length=60)):
        requests = [Request(p, settings) for p in prompts]
        big = texts(model, vocab, requests, batch_size=n)
        small = texts(model, vocab, requests, batch_size=4)
        same = sum(big[k] == small[k] for k in big)
        assert same == len(big) if settings.greedy else same >= 0.9 * len(big)


class TimeCell(Cell):
    """A cell whose output depends on the timestamps, to check positions through priming and steps."""

    name = "timed"
    uses_time = True

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.lin = torch.nn.Linear(input_size + hidden_size, hidden_size)

    def step(self, x, state, t=None):
        h = torch.tanh(self.lin(torch.cat([x, state[0]], -1)) + torch.sin(t.float()).unsqueeze(-1))
        return h, (h,)


def test_time_cells_see_each_row_s_own_positions():
    vocab = Vocab.from_text(TEXT)
    torch.manual_seed(0)
    model = CharModel(len(vocab), TimeCell, 16).eval()
    got = texts(model, vocab, [Request(p, Settings(length=70)) for p in PROMPTS], batch_size=8, seed=2)
    for p in PROMPTS:
        ids = vocab.encode(p) if p else torch.tensor([vocab.index["\n"]])
        u = uniforms(torch.tensor([row_seed(2, p, 0)]), torch.tensor([0]), 70)[0]
        with torch.inference_mode():
            state = model.initial_state(1)
            for i, tok in enumerate(ids[:-1]):  # prime through the step path, one position at a time
                _, state = model.step(tok[None], state, torch.tensor([float(i)], dtype=torch.float64))
            token, out = ids[-1:], []
            for j in range(70):
                t = torch.tensor([float(len(ids) - 1 + j)], dtype=torch.float64)
                logits, state = model.step(token, state, t)
                cdf = logits[0].softmax(-1).cumsum(-1)
                k = int((cdf <= u[j] * cdf[-1]).sum())
                out.append(vocab.chars[k])
                token = torch.tensor([k])
        assert got[(p, Settings(length=70), 0)] == "".join(out), p


# -- stop strings ----------------------------------------------------------------------------------

def test_stop_strings_cut_the_same_text_where_they_first_complete(tiny):
    model, vocab = tiny
    free = {s.sample: s.text for s in BatchGenerator(model, vocab).run(
        [Request("The ", Settings(length=200), num_samples=3)], seed=4)}
    for i, text in free.items():
        for stop in {text[3:5], text[ROUND - 2:ROUND + 2], "zzz"}:
            settings = Settings(length=200, stop=(stop,))
            [got] = [s for s in BatchGenerator(model, vocab, batch_size=2).run(
                [Request("The ", settings, num_samples=3)], seed=4) if s.sample == i]
            cut = text.find(stop)
            assert got.text == (text[:cut] if cut >= 0 else text)
            assert got.stop_reason == ("stop" if cut >= 0 else "length")
            streamed = "".join(BatchGenerator(model, vocab, batch_size=1).stream(
                Request("The ", settings), seed=4, sample=i))
            assert streamed == got.text
    # Several stops: the one that completes first wins; on a tie, the longest.
    text = free[0]
    for stops in [(text[10:14], text[11:13]), (text[12:14], text[10:14]), (text[5:6], text[30:33], "zz")]:
        [got] = BatchGenerator(model, vocab).run([Request("The ", Settings(length=200, stop=stops))], seed=4)
        assert got.text == text[:expected_cut(text, stops)] and got.stop_reason == "stop"


def expected_cut(text, stops):
    """Where a sample with these stops ends: scan for the first end of any stop, take the longest."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if text[:end].endswith(s)]
        if done:
            return end - max(map(len, done))
    return len(text)


def test_unescape():
    assert unescape(r"\n\t\\x\q") == "\n\t\\x\\q"


# -- beam search ----------------------------------------------------------------------------------

def test_beam_of_one_is_greedy_and_wider_beams_score_at_least_as_well(tiny):
    model, vocab = tiny
    api = charforge.Model(model, vocab)
    for prompt in PROMPTS:
        greedy = api.generate(prompt, length=40, greedy=True)
        assert api.generate(prompt, length=40, beam=1) == greedy
        g = api.score(greedy, prompt=prompt).log_likelihood
        for width in (2, 5):
            [best] = api.generate_records(prompt, length=40, beam=width)
            assert best.logprob >= g - 1e-4
            assert best.logprob == pytest.approx(api.score(best.text, prompt=prompt).log_likelihood, abs=1e-3)


def test_beam_search_finds_the_most_likely_continuation():
    vocab = Vocab(["a", "b", "c", "\n"])
    model = lstm_model(4, hidden=8, layers=1, seed=5, sharpen=0.5)
    api = charforge.Model(model, vocab)
    length = 4
    for prompt in ["", "ab", "cab"]:
        scores = {"".join(seq): api.score("".join(seq), prompt=prompt).log_likelihood
                  for seq in itertools.product(vocab.chars, repeat=length)}
        ranked = sorted(scores, key=scores.get, reverse=True)
        records = api.generate_records(prompt, length=length, beam=64, num_samples=3)
        assert [r.text for r in records] == ranked[:3]
        assert [r.logprob for r in records] == pytest.approx([scores[t] for t in ranked[:3]], abs=1e-4)
        assert [r.sample for r in records] == [0, 1, 2]


def test_beam_batches_like_alone_and_honours_stops(tiny):
    model, vocab = tiny
    settings = Settings(length=60, beam=3)
    requests = [Request(p, settings, num_samples=2) for p in PROMPTS]
    alone = {}
    for r in requests:
        for s in BatchGenerator(model, vocab, batch_size=3).run([r], seed=0):
            alone[(s.prompt, s.sample)] = (s.text, s.logprob)
    together = {(s.prompt, s.sample): (s.text, s.logprob)
                for s in BatchGenerator(model, vocab, batch_size=30).run(requests, seed=0)}
    assert together.keys() == alone.keys()
    mixed = list(BatchGenerator(model, vocab).run([Request("fox", replace(settings, length=0), 2),
                                                   Request("fox", settings, 2)], seed=0))
    assert [(s.index, s.sample, s.text) for s in mixed[:2]] == [(0, 0, ""), (0, 1, "")]
    assert [s.text for s in mixed[2:]] == [alone[("fox", 0)][0], alone[("fox", 1)][0]]
    for key in alone:
        assert together[key][0] == alone[key][0]
        assert together[key][1] == pytest.approx(alone[key][1], abs=1e-4)
    text = alone[("fox", 0)][0]
    stop = text[20:22]
    for best in BatchGenerator(model, vocab).run([Request("fox", replace(settings, stop=(stop,)), 2)], seed=0):
        ended = best.text + (stop if best.stop_reason == "stop" else "")
        assert expected_cut(ended, [stop]) == len(best.text)
        assert best.logprob == pytest.approx(charforge.Model(model, vocab).score(ended, prompt="fox").log_likelihood,
                                             abs=1e-3)


def test_beam_search_with_a_stop_string_is_exact():
    vocab = Vocab(["a", "b", "c", "\n"])
    api = charforge.Model(lstm_model(4, hidden=8, layers=1, seed=6, sharpen=0.5), vocab)
    length = 4
    for prompt, stop in [("", "b"), ("ca", "ab"), ("b", "cc")]:
        candidates = {}
        for n in range(1, length + 1):
            for seq in map("".join, itertools.product(vocab.chars, repeat=n)):
                cut = expected_cut(seq, [stop])
                if (cut + len(stop) == n and cut < n) or (n == length and cut == n):
                    candidates[seq] = api.score(seq, prompt=prompt).log_likelihood
        best = max(candidates, key=candidates.get)
        [got] = api.generate_records(prompt, length=length, beam=64, stop=stop)
        assert got.text == (best[:-len(stop)] if best.endswith(stop) and expected_cut(best, [stop]) < len(best)
                            else best)
        assert got.logprob == pytest.approx(candidates[best], abs=1e-4)


# -- prompts files and the command line -------------------------------------------------------------

def test_read_prompts_plain_and_jsonl():
    plain = read_prompts("one\n\ntwo\n", "f", Settings(length=5), [0.5, 1.0], 2)
    assert [(r.prompt, r.index, r.settings.temperature, r.num_samples) for r in plain] == [
        ("one", 0, 0.5, 2), ("one", 0, 1.0, 2), ("two", 1, 0.5, 2), ("two", 1, 1.0, 2)]
    jsonl = read_prompts('{"prompt": "a", "temperature": [0.2, 0.3], "stop": "\\n", "seed": 4}\n'
                         '{"prompt": "b\\nc", "length": 9, "top_k": 3, "num_samples": 4, "greedy": true}\n',
                         "f", Settings(length=5), [1.0], 1)
    assert [(r.prompt, r.index, r.settings.temperature, r.settings.stop, r.seed) for r in jsonl[:2]] == [
        ("a", 0, 0.2, ("\n",), 4), ("a", 0, 0.3, ("\n",), 4)]
    assert jsonl[2].settings == Settings(length=9, top_k=3, greedy=True) and jsonl[2].num_samples == 4
    for bad, message in [('{"prompt": "a"}\nnope\n', "line 2: not valid JSON"),
                         ('{"prompt": "a", "tempreature": 1}', "unknown key 'tempreature'"),
                         ('{"prompt": 3}', "\"prompt\" must be a string"),
                         ('{"prompt": "a", "top_p": 0}', "--top-p must be in (0, 1]"),
                         ('{"prompt": "a", "num_samples": 0}', "num_samples must be a positive integer"),
                         ('{"prompt": "a", "length": "9"}', "length must be an integer")]:
        with pytest.raises(CharforgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_prompts(bad, "f", Settings(), [1.0], 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    result = charforge.train(corpus, runs_dir=root / "runs", name="tiny", steps=3, hidden_size=16,
                             batch_size=4, seq_len=16, eval_every=3, sample_length=4, device="cpu", quiet=True)
    return result.run_dir


def run_cli(*args, input=None):
    return CliRunner().invoke(cli, ["generate", *map(str, args)], input=input, catch_exceptions=False)


def test_cli_generates_jsonl_reproducibly(checkpoint):
    args = [checkpoint, "--prompt", "The", "-p", "fox jumps", "-n", "2", "--length", "30", "--seed", "3"]
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["prompt"], r["index"], r["sample"]) for r in records] == [
        ("The", 0, 0), ("The", 0, 1), ("fox jumps", 1, 0), ("fox jumps", 1, 1)]
    assert set(records[0]) == {"prompt", "index", "sample", "seed", "settings", "text", "chars", "stop_reason"}
    assert records[0]["settings"] == {"length": 30, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                                      "greedy": False, "stop": [], "beam": 0}
    assert all(r["seed"] == 3 and r["chars"] == 30 == len(r["text"]) and r["stop_reason"] == "length"
               for r in records)
    assert run_cli(*args, "--batch-size", "1").stdout == first.stdout
    swapped = [checkpoint, "-p", "fox jumps", "-p", "The", *args[5:], "--batch-size", "3"]
    again = [json.loads(line) for line in run_cli(*swapped).stdout.splitlines()]
    assert again == [{**r, "index": 1 - r["index"]} for r in records[2:] + records[:2]]


@pytest.mark.parametrize("precision", ["auto", "float32"])
def test_sample_generate_and_the_api_give_one_text_per_seed(checkpoint, precision):
    """One engine serves them all: the same seed, prompt and sample index give the same text."""
    lines = run_cli(checkpoint, "-p", "The", "-n", "2", "--length", "40", "--seed", "9", "--precision", precision)
    generated = [json.loads(line)["text"] for line in lines.stdout.splitlines()]
    sample = ["sample", str(checkpoint), "--prime", "The", "--length", "40", "--seed", "9", "--precision", precision]
    one = CliRunner().invoke(cli, sample, catch_exceptions=False)
    assert one.exit_code == 0 and one.stdout == "The" + generated[0] + "\n"
    two = CliRunner().invoke(cli, [*sample, "-n", "2"], catch_exceptions=False).stdout
    assert two == "The" + generated[0] + "\n----\nThe" + generated[1] + "\n"
    model = charforge.load(checkpoint, device="cpu", precision=precision)
    assert model.generate("The", length=40, seed=9, num_samples=2) == generated
    assert "".join(model.stream("The", length=40, seed=9)) == generated[0]
    bad = CliRunner().invoke(cli, [*sample[:-1], "bfloat16"])
    assert bad.exit_code != 0 and "bfloat16" in bad.output
    with pytest.raises(CharforgeError, match="precision"):
        charforge.load(checkpoint, device="cpu", precision="half")


def test_cli_prompts_from_files_and_stdin_and_text_output(checkpoint, tmp_path):
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"prompt": "The", "temperature": [0.5, 1.0], "seed": 1}\n'
                     '{"prompt": "dog", "greedy": true, "num_samples": 2, "stop": ["o", "e"]}\n', encoding="utf-8")
    result = run_cli(checkpoint, "--prompts", jsonl, "--length", "25", "--seed", "0")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["prompt"], r["settings"]["temperature"], r["seed"]) for r in records] == [
        ("The", 0.5, 1), ("The", 1.0, 1), ("dog", 1.0, 0), ("dog", 1.0, 0)]
    assert records[2]["text"] == records[3]["text"] and records[2]["settings"]["greedy"] is True
    for r in records[2:]:
        assert r["stop_reason"] == ("stop" if r["chars"] < 25 else "length")
        assert "o" not in r["text"] and "e" not in r["text"]

    piped = run_cli(checkpoint, "--length", "8", "--seed", "2", "-t", "0.5,0.9", input="The\nfox\n")
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [(r["prompt"], r["settings"]["temperature"]) for r in lines] == [
        ("The", 0.5), ("The", 0.9), ("fox", 0.5), ("fox", 0.9)]

    out = tmp_path / "out.txt"
    args = [checkpoint, "-p", "The", "-p", "fox", "--length", "12", "--seed", "2", "-t", "0.5"]
    text = run_cli(*args, "--format", "text", "-o", out)
    assert text.exit_code == 0 and text.stdout == ""
    records = [json.loads(line) for line in run_cli(*args).stdout.splitlines()]
    assert out.read_text(encoding="utf-8") == "".join(
        f"---- prompt {r['index']} · sample {r['sample']} · temperature 0.5 · seed 2\n{r['prompt']}{r['text']}\n"
        for r in records)


def test_cli_progress_beam_and_errors(checkpoint, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["generate", str(checkpoint), "-p", "The", "--length", "20", "--progress",
                                 "--beam", "2", "-n", "2"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 and records[0]["logprob"] >= records[1]["logprob"]
    assert "2/2 samples" in result.stderr and "chars/s" in result.stderr
    for args, message in [
        (["-p", "The", "-t", "hot"], "--temperature takes a number"),
        (["-p", "The", "-t", "-1"], "--temperature must be 0 or more"),
        (["-p", "Zebra~"], "not in the model's vocabulary"),
        (["-p", "The", "-n", "0"], "--num-samples must be at least 1"),
        (["-p", "The", "--beam", "2", "-n", "3"], "returns at most 2 samples"),
        (["--prompts", str(tmp_path / "missing.txt")], "cannot read prompts file"),
        (["--prompts", "-"], "no prompts"),
    ]:
        bad = runner.invoke(cli, ["generate", str(checkpoint), *args], input="")
        assert bad.exit_code == 1, (args, bad.output)
        assert message in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.output
    dropped = runner.invoke(cli, ["generate", str(checkpoint), "-p", "The~", "--drop-unknown", "--length", "3"])
    assert dropped.exit_code == 0 and json.loads(dropped.stdout)["prompt"] == "The"


def test_import_and_help_do_not_load_torch():
    code = ("import sys, charforge\n"
            "assert callable(charforge.__getattr__) and 'load' in dir(charforge)\n"
            "from charforge.cli import cli\n"
            "try:\n    cli(['generate', '--help'], prog_name='charforge')\n"
            "except SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--prompts FILE" in out and out.strip().endswith("NO TORCH")
