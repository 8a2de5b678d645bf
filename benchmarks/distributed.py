"""Two processes (torchrun, DistributedDataParallel over gloo) against one, on this machine's CPUs.

    .venv/bin/python benchmarks/distributed.py CORPUS                  # 1 minute each
    .venv/bin/python benchmarks/distributed.py CORPUS --minutes 2 --batch-size 64

Each setting trains the same model with the same global batch for the same wall-clock budget, in
a fresh runs folder, one after the other: ``charforge train`` in one process (adaptive threads),
then ``charforge train --nproc 2`` (each process pinned to its share of the cores). The table
gives the characters per second (the mean of the logged rates after the first log), the threads,
the steps reached and the final validation loss (all the held-out text). Prints the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_model


def train(corpus: str, runs: Path, minutes: float, batch: int, nproc: int) -> dict:
    args = [sys.executable, "-m", "charforge", "train", corpus, "--minutes", str(minutes), "--batch-size",
            str(batch), "--device", "cpu", "--name", "run", "--runs-dir", str(runs), "-q"]
    subprocess.run(args + (["--nproc", str(nproc)] if nproc > 1 else []), check=True)
    events = [json.loads(line) for line in (runs / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    final = [e for e in events if e["event"] == "validation"][-1]
    return {"chars_per_s": statistics.mean(e["chars_per_s"] for e in steps[1:] or steps),
            "threads": statistics.median(e["threads"] for e in steps), "steps": steps[-1]["step"],
            "val_loss": final["val_loss"], "world": events[0].get("world_size", 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} before the runs")
    print(f"charforge train {args.corpus} --minutes {args.minutes:g} --batch-size {args.batch_size} (defaults otherwise)")
    rows = []
    for nproc in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append((nproc, train(args.corpus, Path(tmp), args.minutes, args.batch_size, nproc)))
    print(f"load {os.getloadavg()[0]:.2f} after the runs")
    base = rows[0][1]["chars_per_s"]
    print("| processes | threads each | chars/s | vs 1 process | steps | final val loss |")
    print("|---|---|---|---|---|---|")
    for nproc, r in rows:
        print(f"| {nproc} | {r['threads']:g} | {r['chars_per_s']:,.0f} | {r['chars_per_s'] / base:.2f} | {r['steps']} | "
              f"{r['val_loss']:.4f} |")


if __name__ == "__main__":
    main()
