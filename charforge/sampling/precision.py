"""Which precision ``auto`` generates in on this CPU: measured at first use, remembered on disk.

A CPU-flag rule chose wrongly on CPUs it was not tuned on (``torch._int_mm`` was fast with VNNI
and many times slower with AVX2 alone: benchmarks/NOTES.md), so ``auto`` times each candidate's
step on the model's own weights and keeps the fastest. A lossy precision must beat float32 by
:data:`MARGIN`, so a tie keeps the exact path. The choices live in ``precision.json`` in
charforge's cache folder, keyed by everything a timing depends on (CPU model and flags, the
instruction sets PyTorch and its libraries were told to use, torch version, threads, shapes); the
file is never required: an unreadable, corrupt or unwritable one only means measuring again (once
per process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from charforge.corpora import cache_dir

MARGIN = 0.9  # a lossy precision is chosen only at this share of float32's time per step, or less
SECONDS = 0.002  # timed per candidate per round
ROUNDS = 5  # alternating rounds per candidate, the best kept
ISA_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS", "MKL_ENABLE_INSTRUCTIONS")

_known: dict[str, str] = {}  # this process's choices, whether or not the file could be written


def cache_file() -> Path:
    """Where the choices are remembered: ``precision.json`` in charforge's cache folder."""
    return cache_dir() / "precision.json"


@functools.cache  # read once: the batch's size changes as samples end, and each new size asks for a key
def machine() -> str:
    """The CPU's model name and a digest of its instruction-set flags."""
    name, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            field, _, value = line.partition(":")
            field = field.strip()
            if field == "model name" and not name:
                name = value.strip()
            elif field in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{name or platform.processor() or platform.machine()} flags {digest}"


def key(shapes: str) -> str:
    """The cache key of a timing of ``shapes`` on this machine, build and thread count."""
    limits = ",".join(f"{name}={os.environ[name]}" for name in ISA_SETTINGS if name in os.environ)
    return (f"{machine()}; {torch.backends.cpu.get_cpu_capability()} {limits}; torch {torch.__version__}; "
            f"{torch.get_num_threads()} threads; {shapes}")


def _read() -> dict:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, or not JSON: measured again
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict) -> None:
    """Replaces the file in one step (a reader never sees half of it); a read-only home skips it."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".precision-", suffix=".json",
                                         delete=False, encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(out.name, path)
    except OSError:
        pass


def timings(candidates: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds per call of each candidate: the best of :data:`ROUNDS` alternating rounds of about
    :data:`SECONDS` each (on a shared machine a neighbour's burst slows a round, never speeds one),
    after as long again of warm-up, which also counts the calls a round makes."""
    calls = {}
    for name, run in candidates.items():
        began, done = time.perf_counter(), 0
        while done < 3 or time.perf_counter() - began < SECONDS:
            run()
            done += 1
        calls[name] = done
    best = dict.fromkeys(candidates, float("inf"))
    for _ in range(ROUNDS):
        for name, run in candidates.items():
            began = time.perf_counter()
            for _ in range(calls[name]):
                run()
            best[name] = min(best[name], (time.perf_counter() - began) / calls[name])
    return best


def fastest(cache_key: str, candidates: dict[str, Callable[[], object]]) -> str:
    """The name among ``candidates`` (one of them ``float32``) to generate in: remembered under
    ``cache_key`` when a remembered choice is still a candidate, else timed and remembered."""
    choice = _known.get(cache_key)
    if choice is None:
        entry = _read().get(cache_key)
        choice = entry.get("choice") if isinstance(entry, dict) else None
    if choice not in candidates:
        seconds = timings(candidates)
        lossy = {name: t for name, t in seconds.items() if name != "float32" and t <= MARGIN * seconds["float32"]}
        choice = min(lossy, key=lossy.get) if lossy else "float32"
        data = _read()
        data[cache_key] = {"choice": choice, "us per step": {k: round(t * 1e6, 2) for k, t in seconds.items()}}
        _write(data)
    _known[cache_key] = choice
    return choice
