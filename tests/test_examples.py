"""The example plugin packages in examples/, installed with pip as a user would and driven through
the CLI in a real process: the test that charforge's plugin surface is enough for a package outside
the repository's own code.

Each package is installed once per module, offline, into a folder of its own (``pip install
--target``) rather than into the environment, and reached through ``PYTHONPATH``: charforge finds
it from the dist-info pip writes there, as it would in site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = ["--hidden-size", "8", "--device", "cpu", "--threads", "1", "-q"]


class Installed:
    """One example package, copied (so that building leaves nothing in the repository) and installed."""

    def __init__(self, name: str, root: Path):
        self.source = root / "source"
        shutil.copytree(EXAMPLES / name, self.source,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        self.target = root / "site"
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", "-q", "--target", str(self.target), str(self.source)],
                       check=True, capture_output=True, timeout=120)

    def run(self, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(self.target), "PYTHONIOENCODING": "utf-8"}
        proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env,
                              cwd=cwd, timeout=120)
        assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
        return proc

    def charforge(self, *args) -> subprocess.CompletedProcess:
        return self.run("-m", "charforge", *args)

    def plugins(self) -> dict[str, dict]:
        return {p["name"]: p for p in json.loads(self.charforge("plugins").stdout)}


@pytest.fixture(scope="module")
def mgu(tmp_path_factory) -> Installed:
    return Installed("charforge-mgu", tmp_path_factory.mktemp("charforge-mgu"))


@pytest.fixture(scope="module")
def extras(tmp_path_factory) -> Installed:
    return Installed("charforge-extras", tmp_path_factory.mktemp("charforge-extras"))


def last_step(run: Path) -> int:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "end"][-1]["step"]


def test_plugins_lists_the_mgu_with_its_distribution_and_version(mgu):
    entry = mgu.plugins()["mgu"]
    assert (entry["distribution"], entry["version"]) == ("charforge-mgu", "0.1.0")
    assert entry["provides"] == {"cell": ["mgu"]} and not entry["blocked"]


def test_the_mgu_trains_resumes_and_samples(mgu, tmp_path):
    run = tmp_path / "faith-mgu"
    mgu.charforge("train", "faith", "--cell", "mgu", "-c", "forget_bias", "2", "--steps", "5", *TINY,
                  "--runs-dir", tmp_path)
    assert last_step(run) == 5
    mgu.charforge("train", "--resume", run, "--steps", "8", "--device", "cpu", "--threads", "1", "-q")
    assert last_step(run) == 8
    assert json.loads((run / "config.json").read_text())["cell_options"] == {"forget_bias": 2.0}
    text = mgu.charforge("sample", run, "--length", "20", "--seed", "1", "--device", "cpu", "--threads", "1").stdout
    assert len(text.rstrip("\n")) == 20


def test_the_mgu_package_s_own_tests_pass(mgu):
    proc = mgu.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=mgu.source)
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_plugins_lists_both_extras_under_one_distribution(extras):
    listed = extras.plugins()
    for name, kind in (("signum", "optimizer"), ("parity", "task")):
        assert (listed[name]["distribution"], listed[name]["version"]) == ("charforge-extras", "0.1.0")
        assert listed[name]["provides"] == {kind: [name]}


def test_signum_trains_and_resumes(extras, tmp_path):
    run = tmp_path / "signum"
    extras.charforge("train", "faith", "--optimizer", "signum", "-o", "momentum", "0.5", "--lr", "0.001",
                     "--steps", "5", *TINY, "--runs-dir", tmp_path, "--name", "signum")
    extras.charforge("train", "--resume", run, "--steps", "8", "--device", "cpu", "--threads", "1", "-q")
    assert last_step(run) == 8


def test_the_parity_task_trains(extras, tmp_path):
    extras.charforge("train", "parity", "-T", "length", "4", "-T", "samples", "256", "--steps", "6", *TINY,
                     "--runs-dir", tmp_path, "--name", "parity")
    run = tmp_path / "parity"
    assert json.loads((run / "config.json").read_text())["task_options"] == {"length": 4, "samples": 256,
                                                                           "test_samples": 1000}
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= [e for e in events if e["event"] == "end"][-1]["val_accuracy"] <= 1.0  # scored on the last bits


def test_the_extras_package_s_own_tests_pass(extras):
    proc = extras.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=extras.source)
    assert " passed" in proc.stdout and "failed" not in proc.stdout
