"""Session-wide setup for charforge's tests, and the fixtures most test files share.

* ``CHARFORGE_CORPUS_DIR`` points at ``<repo>/../shared/corpora`` (CI clones the repository with
  ``shared/`` beside it), so named corpora such as tiny-shakespeare never touch the network.
  Tests that need those files ask for the ``shared_corpora`` fixture, which skips them, naming
  the folder, where it is missing (a user's fresh clone); CI runs the suite both ways.
* ``CHARFORGE_CACHE`` points at a temporary folder, so no test reads or writes ``~/.cache``.
* Torch runs on one thread: the models here are tiny, and one thread is the fastest and the
  most repeatable choice on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import charforge  # noqa: F401  (first: it sets what exact resume needs, MKL_CBWR, before torch loads)
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_CORPORA = REPO.parent / "shared" / "corpora"
TINY_SHAKESPEARE = "tinyshakespeare.txt"
GRIMMS = "grimms_fairy_tales.txt"

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def charforge_environment(tmp_path_factory):
    """Environment every test (and every subprocess a test starts) runs under."""
    saved = dict(os.environ)
    os.environ["CHARFORGE_CORPUS_DIR"] = str(SHARED_CORPORA)
    os.environ["CHARFORGE_CACHE"] = str(tmp_path_factory.mktemp("charforge-cache"))
    for var in ("CHARFORGE_BLOCK_PLUGINS", "CHARFORGE_PLUGINS"):  # a developer's own settings
        os.environ.pop(var, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def shared_corpora() -> Path:
    """The folder of reference corpora beside the repository. A clone without it (a user's) skips the
    tests that need it, with the reason on the summary line: charforge cannot make or ship these texts."""
    missing = [name for name in (TINY_SHAKESPEARE, GRIMMS) if not (SHARED_CORPORA / name).is_file()]
    if missing:
        pytest.skip(f"needs the reference corpora in {SHARED_CORPORA} (missing {', '.join(missing)}); "
                    f"charforge does not ship them")
    return SHARED_CORPORA


_WORDS = ("the a an of to and in that it with as for his her was on be at by this had not are but "
          "from or have you which one were all we when there can more if out so said what up its "
          "about into than them only other new some could time these two may then do first any "
          "river forest king queen little old house water bread garden window morning evening "
          "walked found looked laughed carried whispered opened remembered").split()


def make_text(n_chars: int = 6000, seed: int = 0) -> str:
    """Deterministic English-like prose: sentences, capitals, punctuation and paragraphs."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        sentence = " ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?", ";"])
        sentence += "\n\n" if rng.random() < 0.15 else " "
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)[:n_chars].rstrip() + "\n"


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return make_text()


@pytest.fixture
def text_corpus(tmp_path, corpus_text) -> Path:
    """A ~6 KB text file written by the test."""
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


@pytest.fixture
def runs_root(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def registry():
    """The installed plugins (the built-ins, through their entry points)."""
    from charforge.plugins import Registry, make_plugin_manager

    return Registry(make_plugin_manager())


@pytest.fixture
def quiet_pm():
    """A plugin manager factory without the console plugin (no progress output)."""
    from charforge.plugins import make_plugin_manager

    def make(extra=()):
        return make_plugin_manager(extra=extra, block=["console"])

    return make


TINY = dict(cell="lstm", hidden_size=32, batch_size=4, seq_len=16, steps=8, lr=3e-3, seed=0,
            device="cpu", threads=1, log_every=1, eval_every=1000, sample_length=20)


@pytest.fixture
def tiny_config(text_corpus):
    """A factory of small, fast TrainConfigs on ``text_corpus``; keyword arguments override."""
    from charforge.config import TrainConfig

    def make(**overrides) -> TrainConfig:
        return TrainConfig(**{"corpus": str(text_corpus), **TINY, **overrides})

    return make


@pytest.fixture
def train(tiny_config, quiet_pm, runs_root):
    """Train a tiny model to the end of its budget; returns the Trainer."""
    from charforge.trainer import Trainer

    def run(config=None, extra=(), name=None, **overrides):
        config = config or tiny_config(**overrides)
        trainer = Trainer(config, pm=quiet_pm(extra), runs_root=runs_root, name=name)
        trainer.run()
        return trainer

    return run
