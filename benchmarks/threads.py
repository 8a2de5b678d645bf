"""Adaptive CPU threads against fixed counts, on the machine as it is and beside a busy process.

Every workload runs three ways: 1 thread, all cores, and charforge's default (``threads=0``:
:class:`charforge.threads.ThreadTuner` measures and picks), each "idle" (the machine as it is)
and "busy" (beside a competing CPU-bound process: a Python busy loop, started for the
measurement and killed after). Training goes through the real ``Trainer`` (hooks, metrics and
all), timed from the end of its first step to the end of its last, validation excluded;
generation streams one sample from a fresh ``BatchGenerator`` (as ``charforge sample`` does).
Either way the default pays for its own probing in every figure. The variants alternate in
rounds within this one process, so the machine's drift hits all alike; the ratio is the median
over rounds of default / the faster fixed count, target >= 0.8. The markdown table is printed.

    .venv/bin/python benchmarks/threads.py                     # 3-6 minutes on 2 cores, by their load
    .venv/bin/python benchmarks/threads.py --seconds 4 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from machine import cpu_model

from charforge.config import TrainConfig
from charforge.hookspecs import hookimpl
from charforge.model import build_model
from charforge.plugins import Registry, make_plugin_manager
from charforge.sampling.engine import ROUND, BatchGenerator
from charforge.sampling.settings import Request, Settings
from charforge.trainer import Trainer
from charforge.vocab import Vocab

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
CORES = os.cpu_count() or 1
VARIANTS = (1, CORES, 0)  # threads: fixed 1, fixed all cores, the default
TRAIN_CASES = [(1, 256, 64, 64), (2, 128, 50, 50)]  # layers, hidden, batch, seq_len; embedding 64
TARGET = 0.8


class _Steps:
    """A plugin that timestamps the end of every step."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []

    @hookimpl
    def on_step_end(self, run, step, metrics):
        self.marks.append((time.perf_counter(), step))


def train(layers: int, hidden: int, batch: int, seq: int, threads: int, seconds: float,
          runs: Path) -> tuple[Trainer, list[tuple[float, int]]]:
    """A ``Trainer.run`` of ``seconds`` (validation only at the end); the trainer and its step marks."""
    steps = _Steps()
    config = TrainConfig(corpus=str(CORPUS), cell="lstm", hidden_size=hidden, num_layers=layers, embedding_dim=64,
                         batch_size=batch, seq_len=seq, minutes=seconds / 60, threads=threads, device="cpu",
                         val_fraction=0.01, log_every=1, eval_every=10**9, checkpoint_every=10**9, sample_length=0)
    trainer = Trainer(config, pm=make_plugin_manager(extra=[steps], block=["console"]), runs_root=runs)
    trainer.run()
    return trainer, steps.marks


def train_rate(layers: int, hidden: int, batch: int, seq: int, threads: int, seconds: float,
               runs: Path) -> tuple[float, int]:
    """(chars/s of ``Trainer.run`` after its first step, the thread count it ended on)."""
    trainer, marks = train(layers, hidden, batch, seq, threads, seconds, runs)
    if len(marks) < 2:
        sys.exit(f"threads: --seconds {seconds:g} is too short for a second training step")
    (t0, s0), (t1, s1) = marks[0], marks[-1]
    return (s1 - s0) * batch * seq / (t1 - t0), trainer.tuner.threads


def generation_rate(model, vocab: Vocab, threads: int, seconds: float) -> tuple[float, int]:
    """(chars/s of one sample streamed from a fresh engine for ``seconds``, the count it ended on)."""
    engine = BatchGenerator(model, vocab, "cpu", batch_size=1, threads=threads)
    chars, started = 0, time.perf_counter()
    for piece in engine.stream(Request("", Settings(length=10**9)), seed=0):
        chars += len(piece)
        if chars % ROUND == 0 and time.perf_counter() - started >= seconds:
            break
    return chars / (time.perf_counter() - started), engine.tuner.threads


@contextmanager
def competitor(busy: bool):
    """A CPU-bound process running beside the block, when ``busy``."""
    if not busy:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start and take its core
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="seconds per training measurement; generation measures half as long")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    args = parser.parse_args()
    if not CORPUS.is_file():
        sys.exit(f"threads: {CORPUS} is missing (clone with shared/ beside the repository)")
    load_before, started = os.getloadavg(), time.perf_counter()
    text = CORPUS.read_text()
    vocab = Vocab.from_text(text)
    torch.manual_seed(0)
    model = build_model(TrainConfig(cell="lstm", hidden_size=512, num_layers=1), len(vocab),
                        Registry(make_plugin_manager())).eval()

    with tempfile.TemporaryDirectory(prefix="charforge-threads-") as tmp:
        runs = Path(tmp)
        os.environ["CHARFORGE_CACHE"] = str(runs / "cache")
        cases = {f"train lstm {layers}x{hidden} b{batch} s{seq}":
                 (lambda threads, c=(layers, hidden, batch, seq): train_rate(*c, threads, args.seconds, runs))
                 for layers, hidden, batch, seq in TRAIN_CASES}
        cases["stream lstm 1x512 (batch 1)"] = lambda threads: generation_rate(model, vocab, threads,
                                                                               args.seconds / 2)
        for threads in sorted(set(VARIANTS) - {0}):  # compile and warm up once, outside the figures
            train(*TRAIN_CASES[0], threads, 1.0, runs)
            generation_rate(model, vocab, threads, 0.5)
        results: dict = {}
        for r in range(args.rounds):
            order = VARIANTS[r % 3:] + VARIANTS[:r % 3]  # no variant always runs first
            for name, measure in cases.items():
                for busy in (False, True):
                    with competitor(busy):
                        for threads in order:
                            rate, ended = measure(threads)
                            results.setdefault((name, busy, threads), []).append((rate, ended))
                            print(f"  round {r + 1} {name:<30} {'busy' if busy else 'idle'} threads={threads}: "
                                  f"{rate:,.0f} chars/s (ended on {ended})", flush=True)
    load_after = os.getloadavg()

    print()
    print(f"# Adaptive CPU threads ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    print(f"CPU: {cpu_model()}, {CORES} cores; torch {torch.__version__}; load average (1, 5, 15 min) "
          f"before {', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in load_after)} "
          f"(busy rows add one process of their own); {args.rounds} rounds of {args.seconds:g} s per training "
          f"and {args.seconds / 2:g} s per generation measurement, {(time.perf_counter() - started) / 60:.1f} "
          f"minutes in all.\n")
    print(f"| case | load | 1 thread | {CORES} threads | default (adaptive) | default / best fixed | "
          f"default ended on | target {TARGET}x |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
    for name in cases:
        for busy in (False, True):
            one, all_, auto = (results[(name, busy, t)] for t in VARIANTS)
            ratio = statistics.median(a[0] / max(o[0], c[0]) for o, c, a in zip(one, all_, auto))
            median = [statistics.median(rate for rate, _ in v) for v in (one, all_, auto)]
            print(f"| {name} | {'busy' if busy else 'idle'} | {median[0]:,.0f} | {median[1]:,.0f} | {median[2]:,.0f} | "
                  f"{ratio:.2f}x | {', '.join(str(e) for _, e in auto)} | {'pass' if ratio >= TARGET else 'FAIL'} |")


if __name__ == "__main__":
    main()
