"""What verifying every tensor's checksum costs when a checkpoint is saved and loaded.

    .venv/bin/python benchmarks/checksum.py                 # a ~100 MiB checkpoint: 1x1450 LSTM with Adam's state
    .venv/bin/python benchmarks/checksum.py --hidden 1024 --rounds 9

Trains a large model for two steps on a small text (so that the checkpoint holds the optimizer's
moments), then times, in alternating rounds in one process: saving it (of which the checksums),
reading it all (what a resume reads) and reading its weights alone (what generation reads), each
from the checkpoint as charforge writes it (verified) and from a copy without checksums (format 1,
what older charforge wrote, read unverified). Also times the candidate hashes of the standard
library over the same bytes, the measurement that chose CRC-32. Prints the tables with the
machine and its load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import torch
from machine import cpu_model
from safetensors import safe_open
from safetensors.torch import save

from charforge.config import TrainConfig
from charforge.plugins import make_plugin_manager
from charforge.runs.checkpoint import load_checkpoint, save_checkpoint
from charforge.runs.header import META_KEY
from charforge.runs.validation import checksum
from charforge.trainer import Trainer


def _median_ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1450)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("".join(chr(32 + i % 95) for i in range(20_000)), encoding="utf-8")
        config = TrainConfig(corpus=str(corpus), hidden_size=args.hidden, batch_size=2, seq_len=8, steps=2,
                             eval_every=2, sample_length=1, device="cpu", threads=1)
        trainer = Trainer(config, pm=make_plugin_manager(block=["console"]), runs_root=Path(tmp) / "runs",
                          name="big")
        trainer.run()
        verified = trainer.directory.checkpoint("latest")
        with safe_open(verified, "pt") as f:
            meta = json.loads(f.metadata()[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        unverified = Path(tmp) / "format1" / "checkpoints" / "latest.safetensors"
        unverified.parent.mkdir(parents=True)
        old = {**meta, "format": 1}
        del old["checksums"]
        unverified.write_bytes(save(tensors, metadata={META_KEY: json.dumps(old)}))
        size = verified.stat().st_size / 2**20
        scratch = Path(tmp) / "scratch.safetensors"
        blobs = [t.contiguous().reshape(-1).view(torch.uint8).numpy() for t in tensors.values()]

        ops = {
            "save (checksums included)": lambda: save_checkpoint(scratch, tensors, meta),
            "checksums alone, at save": lambda: {k: checksum(v) for k, v in tensors.items()},
            "load all, verified": lambda: load_checkpoint(verified, "latest"),
            "load all, format 1 (unverified)": lambda: load_checkpoint(unverified, "latest"),
            "load weights, verified": lambda: load_checkpoint(verified, "latest", model_only=True),
            "load weights, format 1 (unverified)": lambda: load_checkpoint(unverified, "latest", model_only=True),
        }
        hashes = {
            "zlib.crc32 (chosen)": lambda: [zlib.crc32(b) for b in blobs],
            "zlib.adler32": lambda: [zlib.adler32(b) for b in blobs],
            "hashlib.sha1": lambda: [hashlib.sha1(b).digest() for b in blobs],
            "hashlib.sha256": lambda: [hashlib.sha256(b).digest() for b in blobs],
            "hashlib.blake2b": lambda: [hashlib.blake2b(b).digest() for b in blobs],
        }
        times: dict[str, list[float]] = {name: [] for name in (*ops, *hashes)}
        for fn in (*ops.values(), *hashes.values()):  # warm the page cache and the imports
            fn()
        for _ in range(args.rounds):
            for name, fn in (*ops.items(), *hashes.items()):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    params = sum(p.numel() for p in trainer.model.parameters())
    print(f"{cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; zlib {zlib.ZLIB_VERSION}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"1x{args.hidden} LSTM, {params:,} parameters, Adam; checkpoint {size:.0f} MiB; "
          f"median of {args.rounds} alternating rounds")
    print()
    print("| operation | ms (median) | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name in ops:
        values = times[name]
        print(f"| {name} | {_median_ms(values)} | {1000 * min(values):.1f} | {1000 * max(values):.1f} |")
    for what, (a, b) in (("loading all", ("load all, verified", "load all, format 1 (unverified)")),
                         ("loading the weights", ("load weights, verified", "load weights, format 1 (unverified)"))):
        extra = statistics.median(times[a]) - statistics.median(times[b])
        print(f"\nverifying adds {1000 * extra:.1f} ms to {what}")
    print()
    print(f"| hash over the checkpoint's {size:.0f} MiB of tensors | ms (median) | GB/s |")
    print("| --- | ---: | ---: |")
    for name in hashes:
        seconds = statistics.median(times[name])
        print(f"| {name} | {1000 * seconds:.1f} | {size * 2**20 / seconds / 1e9:.2f} |")


if __name__ == "__main__":
    main()
