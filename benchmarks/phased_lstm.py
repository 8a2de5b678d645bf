"""Training throughput of a char model with ``--cell phased-lstm`` next to the fused ``lstm`` cell.

Runs the trainer's inner step (forward, cross-entropy, backward, norm clipping, Adam) on random
characters, with timestamps that are absolute character indices far into a stream, and prints
chars/s for both cells at the same sizes, with 1 and 2 threads. The two cells are measured in
alternating rounds within one process, so a machine shared with other work slows both alike:
compare the ratio column.

    .venv/bin/python benchmarks/phased_lstm.py            # the default sizes, 1 and 2 threads
    .venv/bin/python benchmarks/phased_lstm.py --quick    # a short run
    CHARFORGE_PHASED_LSTM_IMPL=python .venv/bin/python benchmarks/phased_lstm.py  # uncompiled loops

Other benchmarks can call :func:`measure` or :func:`compare`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from charforge.model import CharModel, detach_state
from charforge.optim import clip_gradients
from charforge.plugins import Registry, make_plugin_manager

VOCAB = 96
SIZES = [(2, 128, 50, 50), (1, 512, 32, 100)]  # layers, hidden, batch, seq_len


class _Run:
    """One model and optimizer, ready to take training steps on random text."""

    def __init__(self, cell: str, layers: int, hidden: int, batch: int, seq_len: int, seed: int = 0):
        torch.manual_seed(seed)
        cls = Registry(make_plugin_manager()).get("cell", cell).obj
        self.model = CharModel(VOCAB, cls, hidden, layers)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batch, self.seq_len = batch, seq_len
        self.x = torch.randint(VOCAB, (batch, seq_len))
        self.y = torch.randint(VOCAB, (batch, seq_len))
        self.state = self.model.initial_state(batch)
        self.window = 20_000  # timestamps around 10^6: a stream well into a corpus
        self.offsets = torch.arange(seq_len, dtype=torch.float64).expand(batch, seq_len)

    def step(self) -> None:
        model = self.model
        t = self.offsets + self.window * self.seq_len if model.uses_time else None
        logits, state = model(self.x, self.state, t)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), self.y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), "norm", 5.0)
        self.opt.step()
        self.state = detach_state(state)
        self.window += 1

    def chars_per_s(self, seconds: float) -> float:
        steps, start = 0, time.perf_counter()
        while True:
            self.step()
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps * self.batch * self.seq_len / elapsed


def measure(cell: str, layers: int, hidden: int, batch: int, seq_len: int, threads: int = 1,
            seconds: float = 3.0) -> float:
    """Training chars/s of one cell (after two warm-up steps)."""
    torch.set_num_threads(threads)
    run = _Run(cell, layers, hidden, batch, seq_len)
    run.step()
    run.step()
    return run.chars_per_s(seconds)


def compare(layers: int, hidden: int, batch: int, seq_len: int, threads: int = 1, seconds: float = 2.0,
            rounds: int = 3, cells: tuple[str, str] = ("lstm", "phased-lstm")) -> dict:
    """Median chars/s of each cell over alternating rounds, and their ratio (second / first)."""
    torch.set_num_threads(threads)
    runs = {cell: _Run(cell, layers, hidden, batch, seq_len) for cell in cells}
    for run in runs.values():
        run.step()
        run.step()
    speeds: dict[str, list[float]] = {cell: [] for cell in cells}
    for _ in range(rounds):
        for cell, run in runs.items():
            speeds[cell].append(run.chars_per_s(seconds))
    out = {cell: statistics.median(v) for cell, v in speeds.items()}
    out["ratio"] = out[cells[1]] / out[cells[0]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per size")
    parser.add_argument("--quick", action="store_true", help="one round of 1 second")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    from charforge_builtins.phased_lstm import active_implementation

    print(f"torch {torch.__version__}, phased-lstm recurrence: {active_implementation()}")
    print(f"{'size':>22} {'threads':>7} {'lstm chars/s':>13} {'phased chars/s':>15} {'ratio':>6}")
    for layers, hidden, batch, seq_len in SIZES:
        for threads in args.threads:
            r = compare(layers, hidden, batch, seq_len, threads, args.seconds, args.rounds)
            size = f"{layers}x{hidden} b{batch} s{seq_len}"
            print(f"{size:>22} {threads:>7} {r['lstm']:>13,.0f} {r['phased-lstm']:>15,.0f} "
                  f"{r['ratio']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
