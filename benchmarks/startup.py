"""Whether importing ``torch._dynamo`` on a thread shortens the start of training (it does not).

    .venv/bin/python benchmarks/startup.py              # 5 alternating runs of each
    .venv/bin/python benchmarks/startup.py --runs 9

Every torch optimizer imports ``torch._dynamo`` at construction and in each step (see
benchmarks/NOTES.md, section 13). Each run is a fresh process that imports torch, then (in the
"thread" runs) starts a thread importing ``torch._dynamo``, imports the trainer and builds a
Trainer on python-stdlib, whose optimizer is the last thing it builds; the time to that point is
printed per run, and the medians with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu_model

CHILD = """
import sys, time, threading, importlib
began = time.perf_counter()
import torch
if sys.argv[1] == "thread":
    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True).start()
from charforge.config import TrainConfig
from charforge.plugins import make_plugin_manager
from charforge.trainer import Trainer
trainer = Trainer(TrainConfig(corpus="python-stdlib", steps=1, threads=1), runs_root=sys.argv[2],
                  pm=make_plugin_manager(block=["console"]))
print(time.perf_counter() - began)
trainer.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"plain": [], "thread": []}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", CHILD, "plain", tmp], check=True, capture_output=True)  # caches the corpus
        for _ in range(args.runs):
            for mode in times:
                out = subprocess.run([sys.executable, "-c", CHILD, mode, tmp], check=True, capture_output=True,
                                     text=True).stdout
                times[mode].append(float(out.strip().splitlines()[-1]))
    print(f"launch to the optimizer built, {args.runs} alternating runs each; {cpu_model()}, {os.cpu_count()} cores, "
          f"load {load:.1f} at start, {os.getloadavg()[0]:.1f} at the end")
    print("| start-up | median (s) | runs (s) |")
    print("| --- | ---: | --- |")
    for mode, values in times.items():
        label = "torch._dynamo imported on a thread" if mode == "thread" else "as torch does it"
        print(f"| {label} | {statistics.median(values):.3f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
