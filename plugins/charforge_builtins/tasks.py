"""Built-in tasks: the palindrome test of long memory, memorising one sentence, the Phased LSTM
paper's frequency task (:mod:`charforge.tasks.frequency`), and the capacity of a model in bits.

* ``palindrome``: the model reads the first T-1 digits of a palindrome of length T and predicts the
  last, which equals the first: it must remember T-1 steps back. The metric is the held-out
  accuracy of that digit (``val_accuracy``); guessing scores 10%.
* ``memorise``: one sentence, learned until greedy sampling from its first character gives back the
  whole sentence; the metric is the step of the first exact reproduction (``reproduced`` turns 1).
"""

from __future__ import annotations

import math

import torch

from charforge.errors import CharforgeError
from charforge.hookspecs import hookimpl
from charforge.options import Option
from charforge.sampling.engine import BatchGenerator
from charforge.sampling.settings import Request, Settings
from charforge.tasks.frequency import Frequency
from charforge.tasks.task import IGNORE, Sequences, Task, TaskData
from charforge.vocab import Vocab, build_and_encode
from charforge_builtins.corpora import CORPORA, sentence_settings

DIGITS = Vocab(list("0123456789"))


MAX_LENGTH = 10**4  # a palindrome's digits: the longest the seed reports' question could want, and more
MAX_SAMPLES = 10**7  # palindromes per stream, drawn lazily, a batch at a time
MAX_DIGITS = 10**7  # capacity's whole set, held in memory: 80 MB of int64


def palindromes(count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random digit palindromes of ``length``, (count, length) int64: a random first half,
    mirrored."""
    half = torch.randint(10, (count, math.ceil(length / 2)), generator=generator)
    return torch.cat([half, half[:, : length // 2].flip(1)], dim=1)


class Palindrome(Task):
    name = "palindrome"
    help = "Predict the last digit of a palindrome of length T from the first T-1 (memory over T steps)."
    metric = "val_accuracy"
    options = {
        "length": Option(10, "T, the palindrome's length (at least 2)."),
        "samples": Option(100_000, "Training palindromes, drawn once from the seed (an epoch reads them all)."),
        "test_samples": Option(2_000, "Held-out palindromes, drawn from another stream of the seed."),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        for name, least, most in (("length", 2, MAX_LENGTH), ("samples", 1, MAX_SAMPLES),
                                  ("test_samples", 1, MAX_SAMPLES)):
            if not least <= settings[name] <= most:
                raise CharforgeError(f"task 'palindrome' option {name!r} must be from {least} to {most:,}, "
                                     f"not {settings[name]}.")

    def defaults(self) -> dict:
        return {"hidden_size": 128, "batch_size": 128, "embedding_dim": 0, "lr": 1e-3, "sample_length": 20}

    def data(self, batch_size, seq_len, seed, device) -> TaskData:
        length = self.settings["length"]

        def batches(stream: int, count: int) -> Sequences:
            def make(i: int, with_time: bool):
                generator = torch.Generator().manual_seed(hash((seed, stream, i)) % 2**63)
                rows = palindromes(batch_size, length, generator)
                targets = torch.full((batch_size, length - 1), IGNORE)
                targets[:, -1] = rows[:, -1]
                return rows[:, :-1], targets, None
            return Sequences(make, max(count // batch_size, 1), batch_size, length - 1, device)

        return TaskData(DIGITS, batches(0, self.settings["samples"]), batches(1, self.settings["test_samples"]))


def _sentence(value: str) -> str:
    named = {c.name: c.text for c in CORPORA if c.text is not None}
    return named.get(value, value)


class Memorise(Task):
    name = "memorise"
    help = "Learn one sentence until greedy sampling from its first character reproduces it exactly."
    metric = "solved_step"
    options = {
        "sentence": Option("faith", "The sentence itself, or a seed sentence's name (faith, amazon, "
                                    "acknowledgement)."),
        "stop": Option(True, "Stop training at the first exact reproduction."),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        self.text = _sentence(settings["sentence"])
        if len(self.text) < 2:
            raise CharforgeError("task 'memorise' needs a sentence of at least 2 characters.")

    def defaults(self) -> dict:
        # a constant rate: the step of the first reproduction must not depend on the budget (a decaying
        # rate's pace does)
        return {**sentence_settings(self.text), "hidden_size": 32, "eval_every": 10, "schedule": "constant"}

    def data(self, batch_size, seq_len, seed, device) -> TaskData:
        from charforge.data import Streams  # here: loading the plugins (to sample, say) needs no training data

        vocab, ids = build_and_encode(self.text)
        return TaskData(vocab, Streams(ids, batch_size, seq_len, device), None)

    def evaluate(self, model, vocab, device) -> dict:
        engine = BatchGenerator(model, vocab, device, precision="float32", threads=torch.get_num_threads())
        request = Request(self.text[0], Settings(length=len(self.text) - 1, greedy=True))
        got = self.text[0] + next(engine.run([request], seed=0)).text
        right = next((i for i, (a, b) in enumerate(zip(got, self.text)) if a != b), len(self.text))
        return {"reproduced": float(got == self.text), "matched": right / len(self.text)}

    def solved(self, metrics) -> bool:
        return self.settings["stop"] and metrics.get("reproduced") == 1.0


class Capacity(Task):
    """After Collins, Sohl-Dickstein and Sussillo (2016): how many bits of random labels of random
    sequences a model stores, per parameter. The labels carry log2(classes) bits each; what the model
    stores is that less its remaining cross-entropy, summed over the set it learns."""

    name = "capacity"
    help = "Memorise random labels of random digit sequences; the metric is bits stored per parameter."
    metric = "bits_per_parameter"
    options = {
        "samples": Option(2_000, "Random sequences to label (the whole set is learned and measured)."),
        "length": Option(10, "Digits per sequence."),
        "classes": Option(10, "Possible labels (2 to 10): log2(classes) bits each."),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        if not (2 <= settings["classes"] <= 10 and settings["length"] >= 1 and settings["samples"] >= 1
                and settings["samples"] * settings["length"] <= MAX_DIGITS):
            raise CharforgeError(f"task 'capacity' needs 2 <= classes <= 10, length >= 1, samples >= 1 and "
                                 f"samples x length <= {MAX_DIGITS:,} (the whole set is held in memory).")

    def defaults(self) -> dict:
        return {"hidden_size": 16, "batch_size": 100, "embedding_dim": 0, "sample_length": 0}

    def data(self, batch_size, seq_len, seed, device) -> TaskData:
        n, length = self.settings["samples"], self.settings["length"]
        generator = torch.Generator().manual_seed(hash((seed, "capacity")) % 2**63)
        inputs = torch.randint(10, (n, length), generator=generator)
        targets = torch.full((n, length), IGNORE)
        targets[:, -1] = torch.randint(self.settings["classes"], (n,), generator=generator)
        self._set = inputs, targets

        def make(i: int, with_time: bool):
            rows = slice(i * batch_size, (i + 1) * batch_size)
            return inputs[rows], targets[rows], None

        return TaskData(DIGITS, Sequences(make, max(n // batch_size, 1), batch_size, length, device), None)

    @torch.no_grad()
    def evaluate(self, model, vocab, device) -> dict:
        inputs, targets = self._set
        model.eval()
        logits, _ = model(inputs.to(device), model.initial_state(len(inputs), device))
        nats = float(torch.nn.functional.cross_entropy(logits[:, -1], targets[:, -1].to(device)))
        stored = max(math.log2(self.settings["classes"]) - nats / math.log(2), 0.0) * len(inputs)
        return {"bits_stored": stored, "bits_per_parameter": stored / sum(p.numel() for p in model.parameters())}


@hookimpl
def register_tasks(register):
    register(Palindrome)
    register(Memorise)
    register(Frequency)
    register(Capacity)
