"""Loading a checkpoint to generate: the weights alone, against reading the whole checkpoint.

    .venv/bin/python benchmarks/load.py                 # 2 x 1024 LSTM with Adam's state
    .venv/bin/python benchmarks/load.py --hidden 512 --layers 1 --rounds 7

Trains a large model for two steps on a small text (so that the checkpoint holds the optimizer's
moments, twice the weights' size with Adam), then times, in alternating rounds in one process:
``load_engine`` (what ``charforge sample``, ``generate``, ``charforge.load`` and the terminal UI
run: the weights read, validated, built) and the same build after ``load_checkpoint`` of every
tensor (what a resume reads, and what loading to sample read before it learnt to skip the rest).
Prints one table with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model

from charforge.config import TrainConfig
from charforge.plugins import Registry, make_plugin_manager
from charforge.runs.checkpoint import build_from, load_checkpoint
from charforge.sampling.loading import load_engine
from charforge.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("".join(chr(32 + i % 95) for i in range(20_000)), encoding="utf-8")
        config = TrainConfig(corpus=str(corpus), hidden_size=args.hidden, num_layers=args.layers, batch_size=2,
                             seq_len=8, steps=2, eval_every=2, sample_length=1, device="cpu", threads=1)
        trainer = Trainer(config, pm=make_plugin_manager(block=["console"]), runs_root=Path(tmp) / "runs",
                          name="big")
        trainer.run()
        path = trainer.directory.checkpoint("latest")
        size = path.stat().st_size / 2**20
        registry = Registry(make_plugin_manager(block=["console"]))

        def weights_only():
            load_engine(path, device="cpu", precision="float32")

        def whole_checkpoint():
            build_from(load_checkpoint(path), registry)

        times: dict[str, list[float]] = {"weights only": [], "whole checkpoint": []}
        weights_only(), whole_checkpoint()  # warm the page cache and the imports
        for _ in range(args.rounds):
            for name, fn in (("weights only", weights_only), ("whole checkpoint", whole_checkpoint)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    params = sum(p.numel() for p in trainer.model.parameters())
    print(f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; load {os.getloadavg()[0]:.1f}")
    print(f"{args.layers}x{args.hidden} LSTM, {params:,} parameters, Adam; checkpoint {size:.0f} MiB; "
          f"median of {args.rounds} alternating rounds")
    print()
    print("| loading to generate | seconds (median) | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    ratio = statistics.median(times["whole checkpoint"]) / statistics.median(times["weights only"])
    print(f"\nweights only is {ratio:.2f}x as fast as reading the whole checkpoint")


if __name__ == "__main__":
    main()
