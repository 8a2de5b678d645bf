"""Inputs a hostile or careless user gives charforge: each is refused with one CharforgeError (one
`Error:` line on the command line) before anything is written, and nothing runs code it should not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import charforge
from charforge.errors import CharforgeError


@pytest.mark.parametrize("option", [{"hidden_size": True}, {"steps": 2.5}, {"seed": 1.5}, {"seed": "x"},
                                    {"output_bias": "no"}])
def test_the_api_checks_its_training_arguments_as_the_checkpoint_loader_does(tmp_path, option):
    """A run the API wrote must be one charforge can load: a wrong type is refused before training."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 300)
    with pytest.raises(CharforgeError, match=f"configuration field '{next(iter(option))}' should be of type"):
        charforge.train(corpus, runs_dir=tmp_path / "runs", quiet=True, **{"steps": 2, **option})
    assert not (tmp_path / "runs").exists()


def test_python_m_charforge_does_not_import_plugins_from_the_current_folder(tmp_path):
    fake = tmp_path / "charforge_builtins"
    fake.mkdir()
    marker = tmp_path / "ran"
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('code from the current folder')\n")
    done = subprocess.run([sys.executable, "-m", "charforge", "cells"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "lstm" in done.stdout and not marker.exists()


def test_an_empty_corpus_argument_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from charforge.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a folder with text in it " * 100)
    for corpus in ("", "  "):
        result = CliRunner().invoke(cli, ["train", corpus, "--steps", "1", "-q"])
        assert result.exit_code == 1 and "the corpus is an empty string" in result.output
    assert not (tmp_path / "runs").exists()


def _catches_sigterm(pid: int) -> bool:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (15 - 1)))
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="watches the process's signal mask in Linux's /proc")
def test_sigterm_before_training_starts_says_nothing_was_lost(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 300)
    proc = subprocess.Popen([sys.executable, "-m", "charforge", "train", str(corpus), "--steps", "5", "--runs-dir",
                             str(tmp_path / "runs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _catches_sigterm(proc.pid):  # charforge's handler is in place; PyTorch is still loading
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "charforge: stopped by SIGTERM while no training ran; nothing was lost."


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_a_fifo_or_a_device_as_the_corpus_is_named_for_what_it_is(tmp_path):
    from charforge.corpora import load_corpus
    from charforge.plugins import Registry, make_plugin_manager

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    registry = Registry(make_plugin_manager(block=["console"]))
    for spec in (str(fifo), os.devnull):
        with pytest.raises(CharforgeError, match="is not a regular file"):
            load_corpus(spec, registry)


def test_an_empty_allow_list_warns_that_no_plugin_loads(monkeypatch, capsys):
    from charforge.plugins import Registry, make_plugin_manager

    monkeypatch.setenv("CHARFORGE_PLUGINS", "")
    assert Registry(make_plugin_manager()).names("cell") == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CHARFORGE_PLUGINS is set but names no plugin" in err
