"""Named corpora: the classics (downloaded once, verified), Python's own sources, and the seed sentences."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from charforge.corpora import NamedCorpus
from charforge.hookspecs import hookimpl

_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "ensurepip",
              "turtledemo", "pydoc_data", "__pycache__", "config-3"}
STDLIB_BYTES = 3_000_000


def stdlib_files(limit: int = STDLIB_BYTES) -> list[Path]:
    """Python's standard-library sources in a fixed order, up to ``limit`` bytes: real text on every machine."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chosen, total = [], 0
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in _SKIP_DIRS or part.startswith("config-") for part in parts[:-1]):
            continue
        size = path.stat().st_size
        if total + size > limit:
            break
        chosen.append(path)
        total += size
    return chosen


def _strip_gutenberg(text: str) -> str:
    start = text.find("*** START OF")
    if start >= 0:
        text = text[text.index("\n", start) + 1:]
    end = text.find("End of Project Gutenberg")
    return (text[:end] if end >= 0 else text).strip() + "\n"


CORPORA = [
    NamedCorpus(
        "tiny-shakespeare",
        "1.1 MB of Shakespeare's plays, the char-rnn classic (public domain).",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
    ),
    NamedCorpus(
        "grimms",
        "Grimms' Fairy Tales, Project Gutenberg #2591, without the Gutenberg header and licence (public domain).",
        url="https://raw.githubusercontent.com/uvadlc/uvadlc_practicals_2018/master/"
            "assignment_2/part3/assets/book_EN_grimms_fairy_tails.txt",
        sha256="e6439bd511820742e842e21b75e89b394d3809eec82ca56b506c39ff39d4a7d6",
        filename="grimms_fairy_tales.txt",
        strip=_strip_gutenberg,
    ),
    NamedCorpus(
        "python-stdlib",
        "About 3 MB of the running Python's standard-library sources: offline, on every machine.",
        files=stdlib_files,
    ),
    NamedCorpus("faith", "The memorisation sentence of the seed report.",
                text="All the faith he had had had had no effect on the outcome of his life."),
    NamedCorpus("amazon", "A seed sentence for memorisation.", text="Amazon is river."),
    NamedCorpus("acknowledgement", "A seed word: prime with 'Acknowl', expect 'edgement'.",
                text="Acknowledgement"),
]


@hookimpl
def register_corpora(register):
    for corpus in CORPORA:
        register(corpus)
