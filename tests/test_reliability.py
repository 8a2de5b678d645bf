"""Nothing lost: SIGKILL at any moment, Ctrl-C and SIGTERM, NaN, a full disk, an unwritable folder.

Also: exact resume of plugin state and of the learning-rate schedule, keep-last-K checkpoints,
and plugins loaded only from installed entry points, with a block-list and an allow-list.
The kill and signal tests run the real command in real processes.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from charforge.runs.checkpoint import load_checkpoint
from charforge.runs.directory import Run
from charforge.runs.files import atomic_write
from charforge.cli import cli
from charforge.config import TrainConfig
from charforge.hookspecs import hookimpl
from charforge.plugins import Registry, make_plugin_manager
from charforge.trainer import Trainer, TrainingDiverged

HARNESS = Path(__file__).with_name("_kill_harness.py")
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards box jolly quartz".split()
TINY = dict(cell="rnn", hidden_size=8, batch_size=2, seq_len=8, sample_length=2, device="cpu")
TINY_ARGS = ["--cell", "rnn", "--hidden-size", "8", "--batch-size", "2", "--seq-len", "8", "--sample-length", "2",
             "--device", "cpu"]


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CHARFORGE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(WORDS[(i * 7) % len(WORDS)] for i in range(900)) + "\n")
    return path


def quiet_pm(*extra):
    return make_plugin_manager(extra=extra, block=["console"])


def env_for(tmp_path: Path, **extra) -> dict[str, str]:
    return {**os.environ, "CHARFORGE_CACHE": str(tmp_path / "cache"), **extra}


def checkpoint_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def step_events(run: Path) -> int:
    return sum(e["event"] == "step" for e in Run(run).events())


# -- SIGKILL ------------------------------------------------------------------------------------

def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint_and_resume_is_exact(tmp_path, corpus):
    """24 real training processes, saving at every step, SIGKILLed at random moments; then resume."""
    runs = tmp_path / "runs"
    seed = int(os.environ.get("CHARFORGE_KILL_SEED", time.time_ns() % 10_000))
    done = subprocess.run([sys.executable, str(HARNESS), str(runs), str(corpus), "24", str(seed)],
                          capture_output=True, text=True, env=env_for(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    context = f"seed {seed}: {report}"
    assert not report["errors"], context
    assert report["kills"] == 24 and not report["exited"], context  # every process was killed, none crashed
    assert report["steps"] == sorted(report["steps"]) and report["final_step"] > 0, context

    # what the last kill left equals an uninterrupted run stopped at the same step: weights,
    # optimizer, RNG and hidden state (dropout is on, so a wrong RNG state would show)
    run = runs / "killed"
    killed = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    reference = load_checkpoint(report["reference"])
    assert killed.meta["step"] == reference.meta["step"] == report["final_step"]
    assert killed.tensors.keys() == reference.tensors.keys()
    for name, tensor in reference.tensors.items():
        assert torch.equal(killed.tensors[name], tensor), f"{name} differs after resumes ({context})"

    # and the real command resumes from what is on disk
    final = report["final_step"] + 3
    resumed = subprocess.run([sys.executable, "-m", "charforge", "train", "--resume", str(run), "--steps", str(final),
                              "-q"], capture_output=True, text=True, env=env_for(tmp_path), timeout=300)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "latest.safetensors").meta["step"] == final
    files = checkpoint_files(run)
    assert not [f for f in files if ".tmp" in f], f"killed saves left temporary files: {files}"
    assert [f for f in files if f.startswith("step-")] == [f"step-{final - 1:08d}.safetensors",
                                                           f"step-{final:08d}.safetensors"]  # --keep 2


# -- Ctrl-C and SIGTERM -------------------------------------------------------------------------

def _train_process(corpus: Path, runs: Path, name: str, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "charforge", "train", str(corpus), *TINY_ARGS, "--steps", "1000000",
         "--log-every", "1", "--runs-dir", str(runs), "--name", name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_ctrl_c_or_sigterm_saves_the_current_step_and_says_how_to_resume(tmp_path, corpus):
    runs = tmp_path / "runs"
    procs = {sig: _train_process(corpus, runs, sig.name, env_for(tmp_path), "--eval-every", "100000")
             for sig in (signal.SIGINT, signal.SIGTERM)}  # both at once: half the wall time on two cores
    for sig, proc in procs.items():
        wait_for(lambda: (runs / sig.name / "metrics.jsonl").exists() and step_events(runs / sig.name) >= 3,
                 what=f"{sig.name} run to train")
        proc.send_signal(sig)
    for sig, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        run = runs / sig.name
        assert proc.returncode == 0, (sig.name, err)
        assert "Traceback" not in err and not err.strip(), err
        found = re.search(r"interrupted at step (\d+); saved\. Resume with: charforge train --resume (\S+)", out)
        assert found, out
        step = int(found[1])
        assert Path(found[2]) == run
        # no checkpoint was due before step 100000: this one was written because of the signal
        assert load_checkpoint(run / "checkpoints" / "latest.safetensors").meta["step"] == step >= 3
        end = [e for e in Run(run).events() if e["event"] == "end"]
        assert end and end[-1]["reason"] == "interrupted" and end[-1]["step"] == step
        trainer = Trainer.resume(run, {"steps": step + 2}, pm=quiet_pm())
        trainer.run()
        assert trainer.step == step + 2


SLOW_SAVE = '''
import os
import signal
import time
from charforge.hookspecs import hookimpl


@hookimpl
def on_step_end(step):
    if step == 7:  # the first Ctrl-C, between two checkpoints: sent from outside, it could land just
        os.kill(os.getpid(), signal.SIGINT)  # after a save, and no further save would come


@hookimpl
def on_checkpoint_save(run):
    if run.stop_reason == "interrupted":  # the save after a first Ctrl-C: take (far too) long
        print("SAVING", flush=True)
        time.sleep(60)
'''


def install_plugins(site: Path, modules: dict[str, str]) -> Path:
    """A folder to put on PYTHONPATH holding modules and a distribution declaring them as entry points."""
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    dist = site / "charforge_test_plugins-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: charforge-test-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[charforge]\n" + "".join(f"{n} = {n}\n" for n in modules))
    return site


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


def test_second_ctrl_c_exits_at_once_and_keeps_the_last_checkpoint(tmp_path, corpus):
    site = install_plugins(tmp_path / "site", {"slow_save": SLOW_SAVE})
    runs, run = tmp_path / "runs", tmp_path / "runs" / "twice"
    proc = _train_process(corpus, runs, "twice", env_for(tmp_path, PYTHONPATH=str(site)), "--eval-every", "5")
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    out = []
    while not out or out[-1] != "SAVING\n":
        try:
            out.append(lines.get(timeout=60))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"no SAVING line; exit {proc.wait()}; stdout {out[-5:]}; "
                                 f"stderr {proc.stderr.read()[-2000:]}") from None
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert time.monotonic() - started < 10, "the second Ctrl-C did not stop the save at once"
    err = proc.stderr.read()
    reader.join(timeout=10)
    while not lines.empty():
        out.append(lines.get())
    assert proc.returncode not in (0, None)
    assert "Traceback" not in err and "Aborted" in err, err
    assert any(line.startswith("stopped at once at step") for line in out), out
    ckpt = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert ckpt.meta["step"] == 5  # the last regular checkpoint, intact
    assert not [f for f in checkpoint_files(run) if ".tmp" in f]


# -- exact resume: plugin state and the learning-rate schedule ----------------------------------

class Recorder:
    """Counts steps in its own state (saved and restored through the checkpoint hooks); records lr and loss."""

    name = "recorder"

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.count, self.loaded, self.trace = stop_at, 0, None, {}

    @hookimpl
    def on_step_end(self, run, step, metrics):
        self.count += 1
        self.trace[step] = (metrics["lr"], metrics["loss"])
        if step == self.stop_at:
            run.request_stop("paused")

    @hookimpl
    def on_checkpoint_save(self, plugin_state):
        plugin_state[self.name] = {"count": self.count, "nested": {"steps": list(self.trace)[-2:]}}

    @hookimpl
    def on_checkpoint_load(self, plugin_state):
        self.loaded = plugin_state.get(self.name)
        self.count = self.loaded["count"]


def test_resume_restores_plugin_state_and_the_schedule_position(tmp_path, corpus):
    config = dict(corpus=str(corpus), **TINY, steps=16, log_every=1, eval_every=5, schedule="cosine", warmup=4,
                  dropout=0.2)
    whole = Recorder()
    Trainer(TrainConfig(**config), pm=quiet_pm(whole), runs_root=tmp_path / "runs", name="whole").run()

    first = Recorder(stop_at=7)
    paused = Trainer(TrainConfig(**config), pm=quiet_pm(first), runs_root=tmp_path / "runs", name="paused")
    paused.run()
    assert paused.step == 7
    second = Recorder()
    resumed = Trainer.resume(paused.run_dir, {}, pm=quiet_pm(second))
    assert second.loaded == {"count": 7, "nested": {"steps": [6, 7]}}
    resumed.run()
    assert second.count == 16
    # steps 8..16 of the resumed run: the same learning rates (warmup and cosine position) and losses
    assert {s: v for s, v in second.trace.items()} == {s: v for s, v in whole.trace.items() if s > 7}
    assert first.trace == {s: v for s, v in whole.trace.items() if s <= 7}


# -- NaN ----------------------------------------------------------------------------------------

class Poison:
    """Puts a NaN into a weight after step ``at``: right after the step, or just before a checkpoint is written."""

    def __init__(self, at: int, when: str):
        self.at, self.when = at, when

    def _poison(self, run, step):
        if step == self.at:
            with torch.no_grad():
                run.model.head.weight[0, 0] = float("nan")

    @hookimpl
    def on_step_end(self, run, step):
        if self.when == "step":
            self._poison(run, step)

    @hookimpl
    def on_validation_end(self, run, step):
        if self.when == "before-save":
            self._poison(run, step)


@pytest.mark.parametrize("when,diverged_at,reason", [("step", 5, "training loss became nan"),
                                                     ("before-save", 6, "became NaN or infinite")])
def test_nan_stops_the_run_and_never_overwrites_the_good_checkpoint(tmp_path, corpus, when, diverged_at, reason):
    trainer = Trainer(TrainConfig(corpus=str(corpus), **TINY, steps=50, log_every=1, eval_every=3),
                      pm=quiet_pm(Poison(4 if when == "step" else 6, when)), runs_root=tmp_path, name="nan")
    with pytest.raises(TrainingDiverged) as caught:
        trainer.run()
    message = str(caught.value)
    assert "\n" not in message
    latest = trainer.run_dir / "checkpoints" / "latest.safetensors"
    for words in (reason, f"at step {diverged_at}", f"{latest} (step 3), is intact", "--lr", "resume"):
        assert words in message, message
    ckpt = load_checkpoint(latest)  # loads: every tensor is finite, or it would be refused
    assert ckpt.meta["step"] == 3
    assert all(bool(t.isfinite().all()) for t in ckpt.tensors.values() if t.is_floating_point())
    assert load_checkpoint(trainer.run_dir, "best").meta["step"] == 3
    assert [e for e in Run(trainer.run_dir).events() if e["event"] == "error"]


def test_nan_from_the_command_line_is_one_line_and_a_failure(tmp_path, corpus, monkeypatch):
    import charforge.plugins

    real = charforge.plugins.make_plugin_manager
    monkeypatch.setattr(charforge.plugins, "make_plugin_manager",
                        lambda extra=(), block=(): real(extra=[Poison(4, "step")], block=block))
    result = CliRunner().invoke(cli, ["train", str(corpus), *TINY_ARGS, "--steps", "50", "--log-every", "1",
                                      "--eval-every", "3", "--runs-dir", str(tmp_path / "runs"), "--name", "nan"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: training diverged: the training loss became nan at step 5")
    assert load_checkpoint(tmp_path / "runs" / "nan", "latest").meta["step"] == 3


def test_a_real_divergence_is_caught(tmp_path, corpus):
    """No injection: a ReLU RNN, plain SGD, an absurd learning rate and no clipping blow up by themselves."""
    result = CliRunner().invoke(cli, ["train", str(corpus), *TINY_ARGS, "-c", "nonlinearity", "relu", "--optimizer",
                                      "sgd", "--lr", "1e10", "--clip", "none", "--steps", "50", "--eval-every", "1",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "boom", "-q"])
    assert result.exit_code == 1 and "training diverged" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Lower the learning rate" in result.stderr
    latest = tmp_path / "runs" / "boom" / "checkpoints" / "latest.safetensors"
    if latest.exists():
        load_checkpoint(latest)  # whatever was saved is finite


# -- disk full, unwritable folders --------------------------------------------------------------

def _tiny_run(tmp_path: Path, corpus: Path, steps: int = 2) -> Path:
    result = CliRunner().invoke(cli, ["train", str(corpus), *TINY_ARGS, "--steps", str(steps), "--eval-every", "2",
                                      "--runs-dir", str(tmp_path / "runs"), "--name", "run", "-q"])
    assert result.exit_code == 0, result.output
    return tmp_path / "runs" / "run"


def test_disk_full_is_a_clear_error_and_leaves_the_checkpoint_intact(tmp_path, corpus, monkeypatch):
    run = _tiny_run(tmp_path, corpus)
    latest = run / "checkpoints" / "latest.safetensors"
    before = latest.read_bytes()
    real_write = os.write

    def full_disk(fd, data):  # checkpoint temporaries get half their bytes written, then ENOSPC
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ".tmp"
        if ".tmp" in target:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "4", "-q"])
    monkeypatch.undo()
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for words in ("could not write checkpoint", "latest.safetensors", "No space left on device",
                  "previous checkpoint is intact", "free some disk space"):
        assert words in lines[0]
    assert latest.read_bytes() == before
    assert checkpoint_files(run) == ["best.safetensors", "latest.safetensors"]


def test_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def interrupted(fd, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["file.bin"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        live_tmp = tmp_path / f".best.safetensors.tmp{sleeper.pid}"
        dead_tmp = tmp_path / f".step-00000003.safetensors.tmp{int(dead.stdout)}"
        live_tmp.write_bytes(b"x")
        dead_tmp.write_bytes(b"x")
        atomic_write(tmp_path / "latest.safetensors", b"data")
        assert live_tmp.exists() and not dead_tmp.exists()  # a live writer's file is left alone
    finally:
        sleeper.kill()
        sleeper.wait()


def _drop_capabilities() -> None:
    """In a child before exec: no capabilities, so that even root obeys file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP


def _unprivileged(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_drop_capabilities if sys.platform == "linux" else None)


def test_unwritable_run_directory_is_a_clear_error(tmp_path, corpus):
    run = _tiny_run(tmp_path, corpus)
    folder = run / "checkpoints"
    latest = folder / "latest.safetensors"
    before = latest.read_bytes()
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    for path in (folder, readonly):
        path.chmod(0o555)
    try:
        probe = _unprivileged([sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"], os.environ)
        if probe.wait(timeout=60) == 0:
            pytest.skip("this user can write into a read-only folder")
        env = env_for(tmp_path)
        cmd = [sys.executable, "-m", "charforge", "train"]
        resumed = _unprivileged([*cmd, "--resume", str(run), "--steps", "4", "-q"], env)
        fresh = _unprivileged([*cmd, str(corpus), *TINY_ARGS, "--steps", "2", "--runs-dir", str(readonly), "-q"], env)
        outputs = {proc: proc.communicate(timeout=300) for proc in (resumed, fresh)}
    finally:
        for path in (folder, readonly):
            path.chmod(0o755)
    for done, words in ((resumed, ["could not write checkpoint", "Permission denied", "previous checkpoint is intact",
                                   "writable"]),
                        (fresh, ["cannot create run directory", "readonly", "Permission denied"])):
        err = outputs[done][1]
        lines = err.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
        for word in words:
            assert word in lines[0], lines[0]
    assert latest.read_bytes() == before
    assert not [f for f in checkpoint_files(run) if ".tmp" in f]


# -- keep the last K and the best ---------------------------------------------------------------

def test_keep_last_k_step_checkpoints_and_the_best(tmp_path, corpus):
    result = CliRunner().invoke(cli, ["train", str(corpus), *TINY_ARGS, "--steps", "9", "--eval-every", "1",
                                      "--keep", "3", "--runs-dir", str(tmp_path / "runs"), "--name", "k", "-q"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "k"
    assert checkpoint_files(run) == ["best.safetensors", "latest.safetensors", "step-00000007.safetensors",
                                     "step-00000008.safetensors", "step-00000009.safetensors"]
    validations = [e for e in Run(run).events() if e["event"] == "validation"]
    best = min(validations, key=lambda e: e["val_loss"])
    assert load_checkpoint(run, "best").meta["step"] == best["step"]
    for step in (7, 8, 9):
        assert load_checkpoint(run / "checkpoints" / f"step-{step:08d}.safetensors").meta["step"] == step


def test_pruning_counts_steps_as_numbers(tmp_path):
    folder = Run(tmp_path).checkpoints
    folder.mkdir()
    for step in (99_999_998, 99_999_999, 100_000_000, 100_000_001):
        (folder / f"step-{step:08d}.safetensors").write_bytes(b"")
    (folder / "step-notes.safetensors").write_bytes(b"")
    Run(tmp_path).prune(2)
    assert sorted(os.listdir(folder)) == ["step-100000000.safetensors", "step-100000001.safetensors",
                                            "step-notes.safetensors"]


# -- plugins: entry points only, block-list, allow-list -----------------------------------------

SUSPECT = '''
import os
from charforge.hookspecs import hookimpl
from charforge_builtins.gru import GRUCell

open(os.environ["SUSPECT_MARKER"], "w").close()  # proof that this module was imported


class SuspectCell(GRUCell):
    name = "suspect"


@hookimpl
def register_cells(register):
    register(SuspectCell)
'''

NOT_AN_ENTRY_POINT = '''
import os
open(os.environ["SUSPECT_MARKER"] + ".stray", "w").close()
'''


@pytest.fixture
def suspect(tmp_path, monkeypatch):
    site = install_plugins(tmp_path / "site", {"suspect": SUSPECT})
    (site / "charforge_stray.py").write_text(NOT_AN_ENTRY_POINT)  # importable, but no entry point names it
    marker = tmp_path / "suspect-imported"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("SUSPECT_MARKER", str(marker))
    monkeypatch.delenv("CHARFORGE_PLUGINS", raising=False)
    monkeypatch.delenv("CHARFORGE_BLOCK_PLUGINS", raising=False)
    yield site, marker
    sys.modules.pop("suspect", None)


def _cells(pm) -> list[str]:
    return Registry(pm).names("cell")


def test_installed_plugins_load_from_entry_points_only(suspect, monkeypatch):
    site, marker = suspect
    assert "suspect" in _cells(make_plugin_manager()) and marker.exists()
    monkeypatch.setenv("CHARFORGE_PLUGINS", "charforge_stray,lstm")  # a module name is not a plugin
    assert _cells(make_plugin_manager()) == ["lstm"]
    assert not Path(str(marker) + ".stray").exists() and "charforge_stray" not in sys.modules


def test_block_list_disables_a_suspect_plugin_without_importing_it(suspect, monkeypatch, capsys):
    site, marker = suspect
    monkeypatch.setenv("CHARFORGE_BLOCK_PLUGINS", " suspect , console")
    pm = make_plugin_manager()
    cells = _cells(pm)
    assert "suspect" not in cells and {"lstm", "gru", "rnn"} <= set(cells)
    assert not marker.exists() and "suspect" not in sys.modules  # its import-time code never ran
    assert pm.get_plugin("console") is None
    assert capsys.readouterr().err == ""


def test_allow_list_loads_only_the_named_plugins(suspect, monkeypatch, capsys):
    site, marker = suspect
    monkeypatch.setenv("CHARFORGE_PLUGINS", "lstm,optimizers,corpora")
    pm = make_plugin_manager()
    assert _cells(pm) == ["lstm"] and not marker.exists()
    assert Registry(pm).names("optimizer") and pm.get_plugin("console") is None
    monkeypatch.setenv("CHARFORGE_PLUGINS", "lstm,suspect")
    monkeypatch.setenv("CHARFORGE_BLOCK_PLUGINS", "suspect")  # blocking wins over allowing
    assert _cells(make_plugin_manager()) == ["lstm"] and not marker.exists()
    monkeypatch.setenv("CHARFORGE_PLUGINS", "lstm,lsmt")
    make_plugin_manager()
    err = capsys.readouterr().err
    assert "CHARFORGE_PLUGINS names 'lsmt', but no installed plugin has that name" in err and "lstm" in err


def test_blocked_cell_plugin_gives_a_clear_error(suspect, monkeypatch, corpus, tmp_path):
    monkeypatch.setenv("CHARFORGE_BLOCK_PLUGINS", "rnn")
    result = CliRunner().invoke(cli, ["train", str(corpus), *TINY_ARGS, "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "unknown cell 'rnn'" in result.stderr


def test_block_list_from_the_real_command(suspect, tmp_path):
    site, marker = suspect
    env = env_for(tmp_path, PYTHONPATH=str(site), CHARFORGE_BLOCK_PLUGINS="suspect")
    done = subprocess.run([sys.executable, "-m", "charforge", "cells", "--json"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    names = [cell["name"] for cell in json.loads(done.stdout)]
    assert "lstm" in names and "suspect" not in names and not marker.exists()
