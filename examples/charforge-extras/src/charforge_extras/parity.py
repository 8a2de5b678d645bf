"""The parity task: read a string of random bits and say, at its last bit, whether it held an odd
number of ones. Every bit matters to the answer, so the model must carry one bit of state over the
whole string, changing it at each one: a small test of memory that guessing scores 50% on."""

from __future__ import annotations

import torch

from charforge.plugin import IGNORE, CharforgeError, Option, Sequences, Task, TaskData, Vocab, hookimpl

BITS = Vocab(["0", "1"])  # id 0 is "0", id 1 is "1": a bit is its own id
MAX_LENGTH = 10_000
MAX_SAMPLES = 10**7  # strings are drawn a batch at a time, never held all at once


class Parity(Task):
    name = "parity"
    help = "Predict the parity of a string of random bits at its last bit (one bit of memory, kept over T steps)."
    metric = "val_accuracy"
    options = {
        "length": Option(8, "T, bits per string."),
        "samples": Option(20_000, "Training strings per epoch."),
        "test_samples": Option(1_000, "Held-out strings, from another stream of the seed."),
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        for name, most in (("length", MAX_LENGTH), ("samples", MAX_SAMPLES), ("test_samples", MAX_SAMPLES)):
            if not 1 <= settings[name] <= most:
                raise CharforgeError(f"task 'parity' option {name!r} must be from 1 to {most:,}, not {settings[name]}.")

    def defaults(self) -> dict:
        return {"hidden_size": 32, "batch_size": 64, "embedding_dim": 0, "sample_length": 0}

    def data(self, batch_size, seq_len, seed, device) -> TaskData:
        length = self.settings["length"]

        def strings(stream: int, count: int) -> Sequences:
            def make(i: int, with_time: bool):
                # batch i of a stream is the same in every process, so a resumed run reads what it would have
                generator = torch.Generator().manual_seed(hash((seed, stream, i)) % 2**63)
                bits = torch.randint(2, (batch_size, length), generator=generator)
                targets = torch.full((batch_size, length), IGNORE)
                targets[:, -1] = bits.sum(dim=1) % 2  # only the answer at the last bit is scored
                return bits, targets, None
            return Sequences(make, max(count // batch_size, 1), batch_size, length, device)

        return TaskData(BITS, strings(0, self.settings["samples"]), strings(1, self.settings["test_samples"]))


@hookimpl
def register_tasks(register):
    register(Parity)
