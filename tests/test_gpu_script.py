"""benchmarks/gpu.sh on a machine without a GPU: its options, its checks, and the command it runs.

The script must be right the first time it meets a CUDA machine, so what it would run (``--dry-run``)
is parsed by bench.py's own argument parser here. A fake ``nvidia-smi`` first on the PATH stands for
a GPU whose driver fails, or one that torch cannot see; no test here ever starts the benchmark.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu.sh"


def gpu_sh(*args: str, path_first: Path | None = None, cwd: Path = REPO, **env: str):
    environ = {**os.environ, "PYTHON": sys.executable, **env}
    if path_first is not None:
        environ["PATH"] = f"{path_first}{os.pathsep}{environ['PATH']}"
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environ, cwd=cwd,
                          timeout=60)


def fake_nvidia_smi(folder: Path, output: str, status: int) -> Path:
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\necho {shlex.quote(output)}\nexit {status}\n")
    tool.chmod(0o755)
    return folder


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def bench_arguments(monkeypatch, dry_run_stdout: str):
    """The dry run's command, checked to be bench.py under the venv's python, parsed as bench.py would."""
    words = shlex.split(one_line(dry_run_stdout))
    assert words[:3] == ["cd", str(REPO), "&&"]
    assert words[3:5] == [sys.executable, "benchmarks/bench.py"]
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    bench = importlib.import_module("bench")
    return bench.arguments().parse_args(words[5:])


def test_help_lists_the_options_and_what_it_needs():
    done = gpu_sh("--help")
    assert done.returncode == 0 and not done.stderr
    for option in ("--dry-run", "--out FILE", "--quick", "-h, --help"):
        assert option in done.stdout
    for need in ("CUDA GPU", "venv", "shared/corpora/tinyshakespeare.txt", "no network", "Time budget"):
        assert need in done.stdout
    assert gpu_sh("-h").stdout == done.stdout


@pytest.mark.parametrize("args, says", [(["--fast"], "unknown option '--fast'"), (["--out"], "--out needs"),
                                        (["--quick", "extra"], "unknown option 'extra'"),
                                        (["--out", "/no/such/folder/t.md"], "does not exist")])
def test_bad_options_exit_2_with_one_line(args, says):
    done = gpu_sh(*args)
    assert done.returncode == 2 and not done.stdout
    assert says in one_line(done.stderr)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_without_a_gpu_a_run_stops_at_once_naming_it(shared_corpora):
    start = time.perf_counter()
    done = gpu_sh()
    assert time.perf_counter() - start < 5
    assert done.returncode == 1 and not done.stdout
    assert "nvidia-smi is not found" in one_line(done.stderr)


def test_a_driver_that_fails_stops_the_run(shared_corpora, tmp_path):
    done = gpu_sh(path_first=fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed: no driver", 9))
    assert done.returncode == 1 and not done.stdout
    assert one_line(done.stderr) == "gpu.sh: nvidia-smi lists no GPU: NVIDIA-SMI has failed: no driver"


def test_torch_that_sees_no_gpu_stops_the_run(shared_corpora, tmp_path):
    done = gpu_sh(path_first=fake_nvidia_smi(tmp_path, "GPU 0: Fake (UUID: GPU-0)", 0), CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 1 and not done.stdout
    line = one_line(done.stderr)
    assert line.startswith("gpu.sh: torch ") and ("CPU-only build" in line or "sees no CUDA GPU" in line)


def test_a_missing_python_stops_the_run(tmp_path):
    done = gpu_sh(PYTHON=str(tmp_path / "python"))
    assert done.returncode == 1
    assert f"no python at {tmp_path / 'python'}" in one_line(done.stderr)


def test_dry_run_prints_the_full_table_command(monkeypatch):
    done = gpu_sh("--dry-run")
    assert done.returncode == 0
    assert one_line(done.stderr).startswith("gpu.sh: dry run: ")  # the check a real run would stop at, or none
    args = bench_arguments(monkeypatch, done.stdout)
    assert args.device == "cuda" and args.only.split(",") == ["train", "phased", "sample", "quality"]
    assert (args.seconds, args.rounds, args.quality_minutes) == (2, 2, 2.5)
    assert args.quality_together and not args.quick and not args.no_write
    assert args.out == str(REPO / "benchmarks" / "RESULTS-gpu.md")


def test_dry_run_with_quick_and_a_relative_out(monkeypatch, tmp_path):
    done = gpu_sh("--quick", "--dry-run", "--out", "gpu.md", cwd=tmp_path)
    assert done.returncode == 0
    args = bench_arguments(monkeypatch, done.stdout)
    assert args.quick and args.device == "cuda"
    assert args.out == str(tmp_path / "gpu.md")  # where the caller stands, though bench.py runs in the repo
    assert not (tmp_path / "gpu.md").exists()
