"""A run has one writer, a record that survives a full disk, and a corpus it can tell apart from
another; a diverged run keeps its good checkpoint; fine-tuning starts a new run from old weights.
(Issue 14, items 2, 3, 5, 6 and 7.)"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from charforge.cli.group import cli
from charforge.corpora import changes
from charforge.errors import CharforgeError
from charforge.runs.checkpoint import load_checkpoint
from charforge.runs.directory import Run
from charforge.runs.lock import RunLock
from charforge.runs.metrics import MetricsLog, read_metrics
from charforge.trainer import Trainer, TrainingDiverged

TINY = ["--hidden-size", "16", "--batch-size", "4", "--seq-len", "16", "--device", "cpu", "--threads", "1",
        "--eval-every", "1000", "--sample-length", "10", "-q"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# -- one writer per run (item 2) ----------------------------------------------------------------

def test_a_run_being_trained_refuses_a_second_trainer_and_names_the_holder(train, quiet_pm):
    trainer = train(steps=2)
    first = Trainer.resume(trainer.run_dir, {"steps": 4}, pm=quiet_pm())
    with pytest.raises(CharforgeError, match=f"being trained by process {os.getpid()}"):
        Trainer.resume(trainer.run_dir, {"steps": 4}, pm=quiet_pm())
    first.run()  # the lock goes with the end of the run
    Trainer.resume(trainer.run_dir, {"steps": 6}, pm=quiet_pm()).run()
    assert load_checkpoint(trainer.run_dir, "latest").step == 6


def test_a_new_run_is_locked_from_the_moment_it_exists(tmp_path):
    run = Run.create(tmp_path, "fresh", True, {}, "{}")
    with pytest.raises(CharforgeError, match="being trained by process"):
        RunLock.acquire(run.path)
    run.release()
    RunLock.acquire(run.path).release()


def test_a_second_process_is_refused_readers_work_and_a_kill_leaves_no_stale_lock(text_corpus, runs_root):
    """The real thing: one process trains; a resume elsewhere is refused with one line, sampling works
    meanwhile; after a SIGKILL the run resumes at once."""
    command = [sys.executable, "-m", "charforge", "train", str(text_corpus), *TINY, "--name", "F",
               "--steps", "100000", "--checkpoint-every", "5", "--runs-dir", str(runs_root)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = runs_root / "F" / "checkpoints" / "latest.safetensors"
    try:
        deadline = time.monotonic() + 120
        while not latest.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert latest.exists(), proc.stderr.read().decode()
        refused = invoke("train", "--resume", runs_root / "F", "--steps", "100001")
        assert refused.exit_code == 1
        assert f"being trained by process {proc.pid}" in refused.output and len(refused.output.splitlines()) == 1
        sampled = invoke("sample", runs_root / "F", "--length", "20", "--seed", "1", "--device", "cpu")
        assert sampled.exit_code == 0, sampled.output
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    resumed = invoke("train", "--resume", runs_root / "F", "--steps", str(load_checkpoint(latest).step + 2), "-q")
    assert resumed.exit_code == 0, resumed.output


# -- the record survives a crash and a full disk (item 5) ---------------------------------------

def test_a_line_torn_by_a_crash_does_not_swallow_the_next_event(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "start", "step": 0}\n{"event": "step", "st')  # killed mid-write
    assert [e["event"] for e in read_metrics(path)] == ["start"]  # a line in progress: skipped quietly
    assert capsys.readouterr().err == ""
    log = MetricsLog(path)
    log.write("start", step=5)
    log.close()
    assert [(e["event"], e["step"]) for e in read_metrics(path)] == [("start", 0), ("start", 5)]
    assert capsys.readouterr().err == ""  # the fragment held no event: cut off, not left to warn forever
    path.write_text('{"event": "start", "step": 0}\n{"event": "st\n{"event": "end"}\n')  # damage mid-file
    assert [e["event"] for e in read_metrics(path)] == ["start", "end"]
    assert "1 damaged line(s) skipped (line 2 first)" in capsys.readouterr().err


def test_a_write_cut_short_by_a_full_disk_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.write("start", step=0)
    real_write = os.write

    def half_then_full(fd, data):
        if fd == log._fd and len(data) > 10:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        log.write("step", step=1, loss=1.0)
    monkeypatch.undo()
    log.write("end", step=1)
    log.close()
    assert path.read_bytes().endswith(b"\n")
    assert [e["event"] for e in read_metrics(path)] == ["start", "end"]


def test_a_full_disk_while_creating_a_run_leaves_nothing_and_the_name_free(tmp_path, monkeypatch):
    from pathlib import Path

    real = Path.write_text

    def full(self, data, *args, **kwargs):
        if self.name == "tokenizer.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(CharforgeError, match="No space left on device"):
        Run.create(tmp_path, "r", True, {}, "{}")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    Run.create(tmp_path, "r", True, {}, "{}").release()


def test_a_run_without_a_checkpoint_says_so_once(tmp_path):
    Run.create(tmp_path, "early", True, {}, "{}").release()
    result = invoke("train", "--resume", tmp_path / "early")
    assert result.exit_code == 1
    assert "holds no checkpoint yet: it stopped before its first one, so there is nothing to resume" in result.output
    sampled = invoke("sample", tmp_path / "early")
    assert sampled.exit_code == 1 and "holds no checkpoint (best.safetensors or latest.safetensors)." in sampled.output


# -- a diverged run keeps its good checkpoint (item 6) ------------------------------------------

def test_a_finite_but_huge_loss_is_divergence_and_the_checkpoint_is_kept(train, quiet_pm):
    trainer = train(steps=4, optimizer="sgd", lr=0.1)
    latest = trainer.run_dir / "checkpoints" / "latest.safetensors"
    before = latest.read_bytes()
    resumed = Trainer.resume(trainer.run_dir, {"steps": 40, "lr": 1e4, "clip": "none"}, pm=quiet_pm())
    with pytest.raises(TrainingDiverged, match="training diverged") as caught:
        resumed.run()
    assert latest.read_bytes() == before
    assert "more than 10 times a uniform guess's" in str(caught.value)  # finite: NaN alone was caught before


def test_the_divergence_rule_is_ten_times_a_uniform_guess(train):
    trainer = train(steps=1)
    limit = 10 * torch.log(torch.tensor(float(len(trainer.vocab)))).item()
    trainer._check_loss("validation", limit * 0.99)
    with pytest.raises(TrainingDiverged, match="more than 10 times a uniform guess's"):
        trainer._check_loss("validation", limit * 1.01)


# -- charforge sets what exact resume needs (item 7) --------------------------------------------

def test_importing_charforge_sets_mkl_reproducibility_unless_the_user_chose():
    code = "import os, charforge; print(os.environ.get('MKL_CBWR'))"
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "AUTO,STRICT"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "MKL_CBWR": "COMPATIBLE"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "COMPATIBLE"


def test_the_thread_count_does_not_change_the_losses(train):
    """Products big enough for MKL to split across threads (a 32 x 256 by 256 x 1024 gate product)."""
    losses = []
    for threads in (1, 2):
        run = train(steps=3, threads=threads, embedding_dim=16, hidden_size=256, batch_size=32, seq_len=32)
        losses.append([e["loss"] for e in run.directory.events() if e["event"] == "step"])
    assert losses[0] == losses[1]


# -- a changed corpus is refused, fine-tuning is offered (item 3) -------------------------------

@pytest.mark.parametrize("change", ["reordered", "doubled", "cut to 75%"])
def test_resuming_on_changed_text_with_the_same_characters_is_refused(train, quiet_pm, text_corpus, change):
    trainer = train(steps=2)
    text = text_corpus.read_text()
    changed = {"reordered": text[len(text) // 2:] + text[: len(text) // 2], "doubled": text + text,
               "cut to 75%": text[: len(text) * 3 // 4]}[change]
    changed += "".join(sorted(set(text) - set(changed)))  # the same characters: only the text tells
    assert set(changed) == set(text)
    text_corpus.write_text(changed)
    with pytest.raises(CharforgeError, match="has changed since this run started .*--init-from"):
        Trainer.resume(trainer.run_dir, {"steps": 4}, pm=quiet_pm())
    text_corpus.write_text(text)
    Trainer.resume(trainer.run_dir, {"steps": 4}, pm=quiet_pm()).run()


def test_a_folder_that_gained_a_file_is_named_in_the_refusal(tmp_path, corpus_text, runs_root):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(corpus_text)
    (folder / "b.txt").write_text(corpus_text[::-1])
    assert invoke("train", folder, *TINY, "--steps", "2", "--name", "T", "--runs-dir", runs_root).exit_code == 0
    (folder / "c.txt").write_text(corpus_text[:100])
    result = invoke("train", "--resume", runs_root / "T", "--steps", "3")
    assert result.exit_code == 1
    assert "1 file(s) added, c.txt" in result.output and len(result.output.splitlines()) == 1


def test_a_damaged_fingerprint_is_named_not_trusted():
    assert changes({"characters": "x"}, {}) == "the checkpoint's record of it is damaged"
    assert changes([], {}) == "the checkpoint's record of it is damaged"


def test_init_from_starts_a_new_run_from_the_weights_and_extends_the_vocabulary(tmp_path, corpus_text, runs_root):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text(corpus_text)
    new.write_text(corpus_text.upper() + "§")  # characters the model has never seen
    assert invoke("train", old, *TINY, "--steps", "3", "--name", "A", "--runs-dir", runs_root).exit_code == 0
    result = invoke("train", new, "--init-from", runs_root / "A", "--batch-size", "4", "--seq-len", "16",
                    "--steps", "2", "--eval-every", "1000", "--threads", "1", "--device", "cpu", "-q",
                    "--name", "B", "--runs-dir", runs_root, "--optimizer", "sgd", "--lr", "1e-30")
    assert result.exit_code == 0, result.output
    a, b = load_checkpoint(runs_root / "A"), load_checkpoint(runs_root / "B", "latest")
    assert b.config.init_from == str(runs_root / "A" / "checkpoints" / "best.safetensors")
    assert b.config.hidden_size == 16 and b.config.optimizer == "sgd"  # the shape from A, the rest its own
    assert b.vocab.chars[: len(a.vocab)] == a.vocab.chars and "§" in b.vocab.chars
    # an lr of 1e-30 leaves the weights as initialised: the old model's, with rows added for new characters
    for name, weight in a.group("model").items():
        grown = b.tensors[f"model.{name}"]
        assert torch.equal(grown[tuple(slice(0, n) for n in weight.shape)], weight), name
        assert grown.shape == weight.shape or grown.shape[0] == len(b.vocab), name
    resumed = invoke("train", "--resume", runs_root / "B", "--steps", "3", "-q")
    assert resumed.exit_code == 0, resumed.output


def test_init_from_refuses_another_shape_and_a_resume(tmp_path, text_corpus, runs_root):
    assert invoke("train", text_corpus, *TINY, "--steps", "2", "--name", "A", "--runs-dir", runs_root).exit_code == 0
    shape = invoke("train", text_corpus, "--init-from", runs_root / "A", "--hidden-size", "32", "--runs-dir", runs_root)
    assert shape.exit_code == 1 and "keeps the model's shape" in shape.output and "hidden_size 16" in shape.output
    both = invoke("train", "--resume", runs_root / "A", "--init-from", runs_root / "A")
    assert both.exit_code == 2 and "--init-from starts a new run" in both.output
    missing = invoke("train", text_corpus, "--init-from", tmp_path / "nothing", "--runs-dir", runs_root)
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_init_from_refuses_a_model_whose_inputs_are_not_characters(text_corpus, runs_root):
    trained = invoke("train", "frequency", "--steps", "2", "--hidden-size", "8", "--batch-size", "4",
                     "-T", "samples", "16", "-T", "test_samples", "8", "--device", "cpu", "--threads", "1",
                     "--name", "waves", "--runs-dir", runs_root, "-q")
    assert trained.exit_code == 0, trained.output
    result = invoke("train", text_corpus, "--init-from", runs_root / "waves", "--runs-dir", runs_root)
    assert result.exit_code == 1 and "whose inputs are not characters" in result.output
