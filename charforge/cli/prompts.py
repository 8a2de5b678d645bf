"""Prompts in, samples out: the files and streams ``charforge generate`` reads and writes.

A prompts file holds one prompt per line, or JSON lines with per-prompt settings; results are
JSON lines (one :meth:`~charforge.sampling.settings.Sample.to_dict` record each) or plain text.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import BinaryIO, Iterable, Iterator, Sequence

from charforge.errors import CharforgeError, shown
from charforge.sampling.settings import (MAX_PROMPT_CHARS, Budget, Request, Sample, Settings, check_seed, expand,
                                         parse_temperatures)

PROMPT_KEYS = {"prompt", "temperature", "length", "top_k", "top_p", "greedy", "num_samples", "seed", "stop",
               "beam"}
# The longest line a prompts file may have: room for the longest prompt however JSON escapes it
# (12 bytes for a character outside the BMP, as two \u escapes), with its settings.
MAX_LINE_BYTES = 16 * MAX_PROMPT_CHARS


def read_prompts(text: str | Iterable[str], source: str, defaults: Settings, temperatures: Sequence[float],
                 num_samples: int, first_index: int = 0, budget: Budget | None = None) -> list[Request]:
    """Requests from a prompts file: JSONL with per-prompt settings, or one prompt per line.

    ``text`` is the file's text, or its lines as :func:`read_source` reads them. The file is JSONL
    when its first non-blank line is a JSON object; every line must then be one. Otherwise each
    non-empty line is a prompt (without its line break). Each request is counted in ``budget``
    (a call's bounds) as it is read.
    """
    lines = text.splitlines() if isinstance(text, str) else text
    budget = budget or Budget()
    requests: list[Request] = []
    held: list[Request] = []  # the blank lines before the first non-blank one: prompts if the file is plain
    index = first_index
    is_jsonl = None  # decided by the first non-blank line
    for number, line in enumerate(lines, 1):
        if is_jsonl is None and line.strip():  # the first non-blank line decides
            is_jsonl = _is_object(line)
            if is_jsonl:
                index = first_index
            else:
                requests += held
        if (is_jsonl and not line.strip()) or not line:
            continue
        try:
            if is_jsonl:
                new = _entry_requests(line, index, defaults, temperatures, num_samples)
            else:
                new = expand(line, index, num_samples, None, defaults, temperatures)
            # counted at once, held ones too, so that no file holds more than a call's bounds
            (held if is_jsonl is None else requests).extend(map(budget.add, new))
        except CharforgeError as exc:
            raise CharforgeError(f"{source}, line {number}: {exc}") from None
        index += 1
    if is_jsonl is None:  # only blank lines: each is a prompt of a plain file
        requests += held
    return requests


def _is_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _entry_requests(line: str, index: int, defaults: Settings, temperatures: Sequence[float],
                    num_samples: int) -> list[Request]:
    """The requests of one JSONL line."""
    try:
        entry = json.loads(line)
    except RecursionError:
        raise CharforgeError("not valid JSON (nested too deeply).") from None
    except ValueError as exc:
        raise CharforgeError(f"not valid JSON ({exc}).") from None
    if not isinstance(entry, dict):
        raise CharforgeError("expected a JSON object with a \"prompt\".")
    unknown = sorted(set(entry) - PROMPT_KEYS)
    if unknown:
        raise CharforgeError(f"unknown key {shown(unknown[0])}; known: {', '.join(sorted(PROMPT_KEYS))}.")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str):
        raise CharforgeError("\"prompt\" must be a string.")
    stop = entry.get("stop", defaults.stop)
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
        raise CharforgeError("\"stop\" must be a string or a list of strings.")
    settings = replace(defaults, **{k: entry[k] for k in ("length", "top_k", "top_p", "greedy", "beam")
                                    if k in entry}, stop=tuple(stop))
    temps = parse_temperatures(entry["temperature"]) if "temperature" in entry else temperatures
    seed = check_seed(entry.get("seed"))
    samples = entry.get("num_samples", num_samples)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise CharforgeError(f"num_samples must be a positive integer, not {shown(samples)}.")
    return expand(prompt, index, samples, seed, settings, temps)


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


def read_source(path: str) -> tuple[Iterator[str], str]:
    """(lines, name) of a prompts file, ``-`` meaning standard input: its lines without their line
    breaks, read one at a time as they are asked for, so a file is never held whole."""
    if path == "-":
        return _lines(sys.stdin.buffer, "<stdin>", close=False), "<stdin>"
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise CharforgeError(f"cannot read prompts file {path}: {exc.strerror or exc}.") from None
    return _lines(stream, path, close=True), path


def _lines(stream: BinaryIO, source: str, close: bool) -> Iterator[str]:
    """Each line of ``stream`` as text; a line longer than :data:`MAX_LINE_BYTES` is refused before
    it is read whole."""
    try:
        for number, line in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 2), b""), 1):
            line = line.removesuffix(b"\n").removesuffix(b"\r")
            if len(line) > MAX_LINE_BYTES:
                raise CharforgeError(f"{source}, line {number}: longer than {MAX_LINE_BYTES:,} bytes, more than "
                                     f"a prompt of {MAX_PROMPT_CHARS:,} characters needs.")
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise CharforgeError(f"{source}, line {number}: not UTF-8 text.") from None
    finally:
        if close:
            stream.close()
