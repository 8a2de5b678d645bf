"""Named corpora: the classics (downloaded once, verified), Python's own sources, and the seed sentences."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from charforge.corpora import NamedCorpus
from charforge.hookspecs import hookimpl

def stdlib_files() -> list[Path]:
    """The running Python's top-level standard-library modules, sorted: real text on every machine."""
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def _strip_gutenberg(text: str) -> str:
    start = text.find("*** START OF")
    if start >= 0:
        text = text[text.index("\n", start) + 1:]
    end = text.find("End of Project Gutenberg")
    return (text[:end] if end >= 0 else text).strip() + "\n"


FAITH = "All the faith he had had had had no effect on the outcome of his life."
AMAZON = "Amazon is river."
ACKNOWLEDGEMENT = "Acknowledgement"


def sentence_settings(text: str) -> dict:
    """How a sentence is memorised: the whole of it as one window of one stream, every character
    trained on (nothing held out), one-hot input."""
    return {"batch_size": 1, "seq_len": len(text) - 1, "val_fraction": 0.0, "embedding_dim": 0,
            "sample_length": len(text) - 1}


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
        "The running Python's top-level standard-library modules (4.7 MB on 3.11): offline, on every machine.",
        files=stdlib_files,
    ),
    NamedCorpus("faith", "The memorisation sentence of the seed report.",
                text=FAITH, defaults=sentence_settings(FAITH)),
    NamedCorpus("amazon", "A seed sentence for memorisation.", text=AMAZON, defaults=sentence_settings(AMAZON)),
    NamedCorpus("acknowledgement", "A seed word: prime with 'Acknowl', expect 'edgement'.",
                text=ACKNOWLEDGEMENT, defaults=sentence_settings(ACKNOWLEDGEMENT)),
]


@hookimpl
def register_corpora(register):
    for corpus in CORPORA:
        register(corpus)
