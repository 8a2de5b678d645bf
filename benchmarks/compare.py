"""What ``charforge compare`` costs beyond the training of its points.

    .venv/bin/python benchmarks/compare.py                 # both grids, --jobs 1 and 2
    .venv/bin/python benchmarks/compare.py --jobs 1 --grids sentence

Two grids of 40 tiny points on the seed sentences, the vanilla RNN and the LSTM at hidden sizes 10
to 50: ``sentence`` trains the corpus ``faith`` for a fixed number of steps (four seeds);
``memorise`` trains the task until each point reproduces its sentence (faith and amazon, two
seeds), so most points last well under a second. Each command runs whole, as a user runs it
(Python and PyTorch started, every point checked, trained, summarised and plotted), in a fresh
runs folder, and then once more, when every point is finished: that rerun is the fixed cost
(start-up, checks, summary, plots). The table puts the wall time beside the sum of the points' own
training time (each run's clock, validations and checkpoints included); the overhead is
wall x jobs / own, and what is left per point once the fixed cost is taken out. Prints the machine
and its load.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

SHARED = ["--cell", "rnn,lstm", "--hidden-size", "10,20,30,40,50", "--optimizer", "rmsprop", "--lr", "0.01",
          "-o", "alpha", "0.9", "--device", "cpu", "-q"]
GRIDS = {
    "sentence": ["faith", *SHARED, "--seeds", "4", "--steps", "300"],
    "memorise": ["memorise", "-T", "sentence", "faith,amazon", *SHARED, "--seeds", "2", "--steps", "400"],
}


def timed(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "charforge", "compare", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,2", help="Comma list of --jobs values to time.")
    parser.add_argument("--grids", default=",".join(GRIDS), help="Comma list of grids to run.")
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} before the runs")
    for name in args.grids.split(","):
        print(f"{name}: charforge compare {' '.join(GRIDS[name])}")
    print("| grid | jobs | points | wall s | points' own s | overhead | fixed s (rerun) | per point ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.grids.split(","):
        for jobs in map(int, args.jobs.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "CHARFORGE_CACHE": str(Path(tmp) / "cache")}
                command = [*GRIDS[name], "--jobs", str(jobs), "--runs-dir", tmp, "--name", "grid"]
                wall = timed(command, env)
                fixed = timed(command, env)
                with open(Path(tmp) / "grid" / "points.csv", newline="") as f:
                    points = list(csv.DictReader(f))
            own = sum(float(p["seconds"]) for p in points)
            per_point = (wall - fixed - own / jobs) * jobs / len(points)
            print(f"| {name} | {jobs} | {len(points)} | {wall:.1f} | {own:.1f} | {wall * jobs / own:.2f}x "
                  f"| {fixed:.1f} | {1000 * per_point:.0f} |")
    print(f"load {os.getloadavg()[0]:.2f} after the runs")


if __name__ == "__main__":
    main()
