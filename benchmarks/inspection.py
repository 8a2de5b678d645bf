"""What ``model.inspect`` costs: one pass over a long text, keeping every unit's state and gates.

    .venv/bin/python benchmarks/inspection.py                      # 100,000 characters of Python
    .venv/bin/python benchmarks/inspection.py --chars 20000 --threads 2

For each built-in cell (the Quickstart's 1x256 LSTM, a 2x512 LSTM, a GRU, a vanilla RNN, a Phased
LSTM), times in alternating rounds in one process: ``inspect`` (the losses, top-5 predictions and
every trace), ``score`` (the float32 forward alone, the least any pass costs), and the plain loop a
user would write to get the same states, one ``torch.lstm_cell`` (or ``gru_cell``, ``rnn_tanh_cell``,
the Phased LSTM's own ``step``) per character, keeping h and c. Weights are random: the cost does
not depend on them. The text is the standard library's Python when it is found, else repeated
generated prose. Prints the table with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from machine import cpu_model

from charforge.api import Model
from charforge.model import CharModel
from charforge.plugins import Registry, make_plugin_manager
from charforge.vocab import Vocab

MODELS = (("lstm", 1, 256), ("lstm", 2, 512), ("gru", 1, 256), ("rnn", 1, 256), ("phased-lstm", 1, 256))


def python_text(chars: int) -> str:
    """``chars`` characters of the standard library's own source, in a fixed order."""
    import sysconfig

    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        size += len(text)
        if size >= chars:
            break
    text = "".join(parts)
    return (text * (chars // max(1, len(text)) + 1))[:chars]


def plain_loop(model: CharModel, ids: torch.Tensor) -> None:
    """A hand-written step loop that keeps every layer's h (and c) for every character."""
    state = model.initial_state(1)
    kept = []
    x = torch.nn.functional.one_hot(ids, model.vocab_size).float()
    for i in range(len(ids)):
        inp = x[i:i + 1]
        layers = []
        for layer, s in zip(model.layers, state):
            if hasattr(layer, "_weights") and layer.name != "phased-lstm":
                weights = layer._weights()
                if layer.name == "lstm":
                    h, c = torch.lstm_cell(inp, s, *weights)
                    s = (h, c)
                else:
                    op = torch.gru_cell if layer.name == "gru" else torch.rnn_tanh_cell
                    h = op(inp, s[0], *weights)
                    s = (h,)
            else:
                h, s = layer.step(inp, s, torch.tensor([float(i)], dtype=torch.float64))
            layers.append(s)
            inp = h
        model.head(inp)
        kept.append(layers)
        state = layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = python_text(args.chars)
    vocab = Vocab.from_text(text)
    registry = Registry(make_plugin_manager())
    load = os.getloadavg()[0]
    print(f"inspect on {len(text):,} characters ({len(vocab)} distinct), {args.threads} thread(s), "
          f"median of {args.rounds} rounds; {cpu_model()}, {os.cpu_count()} cores, load {load:.1f} at start")
    print("| model | inspect (s) | score (s) | plain step loop (s) | inspect / score | plain / inspect | traces (MB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    ids = vocab.encode(text)
    for cell, layers, hidden in MODELS:
        torch.manual_seed(0)
        model = CharModel(len(vocab), registry.get("cell", cell).obj, hidden, layers).eval()
        api = Model(model, vocab)
        times: dict[str, list[float]] = {"inspect": [], "score": [], "plain": []}
        size = 0.0
        for _ in range(args.rounds):
            for what in times:
                start = time.perf_counter()
                if what == "inspect":
                    seen = api.inspect(text)
                    size = sum(t.numel() * t.element_size() for t in seen.traces.values()) / 1e6
                    del seen
                elif what == "score":
                    api.score(text, prompt="")
                else:
                    with torch.inference_mode():
                        plain_loop(model, ids)
                times[what].append(time.perf_counter() - start)
        med = {what: statistics.median(values) for what, values in times.items()}
        print(f"| {layers}x{hidden} {cell} | {med['inspect']:.2f} | {med['score']:.2f} | {med['plain']:.2f} | "
              f"{med['inspect'] / med['score']:.2f} | {med['plain'] / med['inspect']:.2f} | {size:,.0f} |", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
