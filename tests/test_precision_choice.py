"""Precision ``auto``: chosen by timing at first use, remembered on disk, never needing the file."""

from __future__ import annotations

import json
import os

import pytest

from charforge.sampling import precision
from charforge.sampling.fastpath import BLAS, FastWeights
from charforge.model import CharModel
from charforge.plugins import Registry, make_plugin_manager
from charforge.vocab import Vocab


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "_known", {})
    return tmp_path / "cache" / "precision.json"


def counted(times: dict, calls: list):
    """Candidates whose timings are ``times`` (seconds per call), counting the measurements."""
    def timings(candidates):
        calls.append(sorted(candidates))
        return {name: times[name] for name in candidates}
    return timings


def test_the_choice_is_measured_once_then_read_back(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "timings", counted({"float32": 1.0, "float16": 0.8, "int8": 0.5}, calls))
    run = {"float32": lambda: None, "float16": lambda: None, "int8": lambda: None}
    assert precision.fastest("k", run) == "int8" and len(calls) == 1
    assert json.loads(cache.read_text())["k"]["choice"] == "int8"
    precision._known.clear()  # a new process: the file answers
    assert precision.fastest("k", run) == "int8" and len(calls) == 1
    assert precision.fastest("k", {"float32": run["float32"], "float16": run["float16"]}) == "float16"
    assert len(calls) == 2  # the remembered choice is no candidate any more: measured again


def test_a_lossy_precision_must_beat_float32_clearly(cache, monkeypatch):
    monkeypatch.setattr(precision, "timings", counted({"float32": 1.0, "int8": 0.95}, []))
    assert precision.fastest("tie", {"float32": None, "int8": None}) == "float32"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"k": "int8"}', '{"k": {"choice": "bfloat3"}}', "\xff"])
def test_a_corrupt_cache_is_ignored_and_rewritten(cache, monkeypatch, content):
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content.encode("latin-1"))
    calls = []
    monkeypatch.setattr(precision, "timings", counted({"float32": 1.0, "int8": 0.5}, calls))
    assert precision.fastest("k", {"float32": None, "int8": None}) == "int8" and calls
    assert json.loads(cache.read_text())["k"]["choice"] == "int8"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_is_never_required(cache, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.parent.chmod(0o500)
    try:
        calls = []
        monkeypatch.setattr(precision, "timings", counted({"float32": 1.0, "int8": 0.5}, calls))
        assert precision.fastest("k", {"float32": None, "int8": None}) == "int8"
        assert precision.fastest("k", {"float32": None, "int8": None}) == "int8" and len(calls) == 1
    finally:
        cache.parent.chmod(0o700)


def test_a_cache_path_that_cannot_be_a_folder_is_never_required(cache, monkeypatch):
    cache.parent.parent.mkdir(parents=True, exist_ok=True)
    cache.parent.write_text("a file where the folder should be")
    monkeypatch.setattr(precision, "timings", counted({"float32": 1.0, "int8": 0.5}, []))
    assert precision.fastest("k", {"float32": None, "int8": None}) == "int8"


def test_auto_times_the_models_own_step_and_keys_by_machine_and_shape(cache):
    vocab = Vocab.from_text("abcdefgh \n")
    cell = Registry(make_plugin_manager()).get("cell", "lstm").obj
    model = CharModel(len(vocab), cell, 32, 1, 0.0, 0).eval()
    plan = FastWeights.of(model, "auto")
    mode = plan.weights(1)[0]
    saved = json.loads(cache.read_text()) if cache.exists() else {}
    if not saved:  # no lossy mode in this build: float32, nothing to measure
        assert mode == BLAS
        return
    (key, entry), = saved.items()
    assert "rows 1" in key and "(128, 32)" in key and precision.machine() in key
    assert set(entry["us per step"]) >= {"float32"} and all(t > 0 for t in entry["us per step"].values())
    assert FastWeights.of(model, "auto").weights(1)[0] == mode  # the same choice, not measured again
    assert json.loads(cache.read_text()) == saved
