"""Prompts in, samples out: the files and streams ``charforge generate`` reads and writes.

A prompts file holds one prompt per line, or JSON lines with per-prompt settings; results are
JSON lines (one :meth:`~charforge.sampling.settings.Sample.to_dict` record each) or plain text.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from charforge.errors import CharforgeError
from charforge.sampling.settings import Request, Sample, Settings, check_seed, expand, parse_temperatures

PROMPT_KEYS = {"prompt", "temperature", "length", "top_k", "top_p", "greedy", "num_samples", "seed", "stop",
               "beam"}


def read_prompts(text: str, source: str, defaults: Settings, temperatures: Sequence[float],
                 num_samples: int, first_index: int = 0) -> list[Request]:
    """Requests from a prompts file: JSONL with per-prompt settings, or one prompt per line.

    The file is JSONL when its first non-blank line is a JSON object; every line must then be
    one. Otherwise each non-empty line is a prompt (without its line break).
    """
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    is_jsonl = False
    if first.lstrip().startswith("{"):
        try:
            is_jsonl = isinstance(json.loads(first), dict)
        except ValueError:
            is_jsonl = False
    requests: list[Request] = []
    index = first_index
    if not is_jsonl:
        for line in lines:
            if line:
                requests.extend(expand(line, index, num_samples, None, defaults, temperatures))
                index += 1
        return requests
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise CharforgeError(f"{where}: not valid JSON ({exc}).") from None
        if not isinstance(entry, dict):
            raise CharforgeError(f"{where}: expected a JSON object with a \"prompt\".")
        unknown = sorted(set(entry) - PROMPT_KEYS)
        if unknown:
            raise CharforgeError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(PROMPT_KEYS))}.")
        prompt = entry.get("prompt")
        if not isinstance(prompt, str):
            raise CharforgeError(f"{where}: \"prompt\" must be a string.")
        stop = entry.get("stop", defaults.stop)
        stop = (stop,) if isinstance(stop, str) else stop
        if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
            raise CharforgeError(f"{where}: \"stop\" must be a string or a list of strings.")
        try:
            settings = replace(defaults, **{k: entry[k] for k in ("length", "top_k", "top_p", "greedy", "beam")
                                            if k in entry}, stop=tuple(stop))
            temps = parse_temperatures(entry["temperature"]) if "temperature" in entry else temperatures
            seed = check_seed(entry.get("seed"))
            samples = entry.get("num_samples", num_samples)
            if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
                raise CharforgeError(f"num_samples must be a positive integer, not {samples!r}.")
            requests.extend(expand(prompt, index, samples, seed, settings, temps))
        except CharforgeError as exc:
            raise CharforgeError(f"{where}: {exc}") from None
        index += 1
    return requests


def unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` in a command-line stop string, as those characters."""
    out, i = [], 0
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# -- progress on stderr ----------------------------------------------------------------------------


def total_work(requests: Iterable[Request]) -> tuple[int, int]:
    """(characters, samples) a list of requests asks for at most."""
    chars = samples = 0
    for r in requests:
        samples += r.num_samples
        chars += r.num_samples * r.settings.length
    return chars, samples


def label(sample: Sample) -> str:
    """The line that says what made a sample: its prompt's and its own number, the settings, the seed."""
    settings = sample.settings
    how = (f"beam {settings.beam}" if settings.beam else "greedy" if settings.is_greedy
           else f"temperature {settings.temperature:g}")
    return f"---- prompt {sample.index} · sample {sample.sample} · {how} · seed {sample.seed}"


def write_results(samples: Iterable[Sample], out, fmt: str = "jsonl") -> int:
    """Write samples as JSONL records, as labelled text (``text``: each sample under the :func:`label`
    line that can make it again), or as bare text (``plain``: samples separated by ``----``)."""
    n = 0
    for sample in samples:
        if fmt == "jsonl":
            out.write(json.dumps(sample.to_dict(), ensure_ascii=False) + "\n")
        elif fmt == "text":
            out.write(f"{label(sample)}\n{sample.prompt}{sample.text}\n")
        else:
            out.write(("" if n == 0 else "\n----\n") + sample.prompt + sample.text)
        out.flush()
        n += 1
    if fmt == "plain" and n:
        out.write("\n")
        out.flush()
    return n


def read_source(path: str) -> tuple[str, str]:
    """(text, name) of a prompts file, ``-`` meaning standard input."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise CharforgeError(f"cannot read prompts file {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise CharforgeError(f"prompts file {path} is not UTF-8 text.") from None
