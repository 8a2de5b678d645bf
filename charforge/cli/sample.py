"""``charforge sample`` (stream one prompt to the terminal) and ``charforge generate`` (many prompts, in
batches, for scripts): one engine behind both, one set of option declarations and defaults."""

from __future__ import annotations

import sys
from dataclasses import replace

import click

from charforge.errors import CharforgeError
from charforge.sampling.settings import (PRECISIONS, Budget, Request, Settings, check_num_samples, check_seed,
                                         expand, parse_temperatures)


def _precision(fn):
    return click.option(
        "--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
        help="Arithmetic of the recurrent products: float32 computes what training and scoring compute; "
             "float16 (16-bit weights) and int8 (8-bit weights) read fewer bytes per character; auto times "
             "them on this CPU at first use and takes a lossy one only where it is faster (the choice is "
             "cached).")(fn)


_SHARED = [  # the options sample and generate both take, declared once
    click.option("-n", "--num-samples", default=1, show_default=True, type=int, help="Samples per prompt."),
    click.option("--length", default=500, show_default=True, type=int, help="Characters to generate at most."),
    click.option("--top-k", default=0, type=int, help="Sample among the k most likely characters (0: all)."),
    click.option("--top-p", default=1.0, type=float, help="Sample among the most likely characters holding "
                                                          "this much probability."),
    click.option("--greedy", is_flag=True, help="Always take the most likely character."),
    click.option("--seed", type=int, help="Base random seed; the same seed repeats every sample. [default: random]"),
    click.option("--drop-unknown", is_flag=True, help="Drop prompt characters the model does not know."),
    click.option("--which", type=click.Choice(["best", "latest"]), default="best", show_default=True,
                 help="Which checkpoint of a run directory."),
    click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda "
                                                                     "or mps."),
    click.option("--threads", default=0, type=int,
                 help="CPU threads (0: the count measured fastest while generating, measured again as the "
                      "machine's load changes)."),
    _precision,
]


def _generation_options(fn):
    for option in reversed(_SHARED):
        fn = option(fn)
    return fn


def _engine(checkpoint, which, device, threads, batch_size=256, drop_unknown=False, precision="auto"):
    """The engine both commands run; ``threads`` is checked before the checkpoint is read."""
    from charforge.sampling.loading import load_engine

    if threads < 0:
        raise CharforgeError(f"--threads must not be negative, not {threads}.")
    return load_engine(checkpoint, which, device, precision, batch_size, drop_unknown, threads=threads)


@click.command()
@click.argument("checkpoint")
@click.option("--prime", default="", help="Text to warm the model up on; the sample continues it.")
@click.option("-t", "--temperature", default=1.0, show_default=True, type=float,
              help="Below 1 is safer, above 1 wilder; 0 is greedy.")
@_generation_options
@click.option("--tui", is_flag=True, help="Sample interactively in the terminal UI, starting from these settings.")
def sample(checkpoint, prime, temperature, num_samples, length, top_k, top_p, greedy, seed, drop_unknown, which,
           device, threads, precision, tui):
    """Print text sampled from CHECKPOINT (a .safetensors file or a run directory), streaming."""
    request = Request(prime, Settings(length, temperature, top_k, top_p, greedy), num_samples, seed).check()
    if tui:
        from charforge.tui import commands

        return commands.sample(checkpoint, which, device, prime, request.settings, seed, precision)
    from charforge.cli.prompts import write_results
    from charforge.sampling.randomness import random_seed

    engine = _engine(checkpoint, which, device, threads, drop_unknown=drop_unknown, precision=precision)
    seed = random_seed() if seed is None else seed
    out = sys.stdout
    if num_samples > 1:
        write_results(engine.run([request], seed), out, "plain")
        return
    out.write(engine.encode_prompt(prime)[0])  # the prompt as the model continues it
    for piece in engine.stream(request, seed):
        out.write(piece)
        out.flush()
    out.write("\n")


@click.command()
@click.argument("checkpoint")
@click.option("-p", "--prompt", "prompt_texts", multiple=True, help="A prompt to continue (repeatable).")
@click.option("--prompts", "prompts_file", metavar="FILE",
              help="Prompts, one per line, or JSONL with per-prompt settings (prompt, temperature, length, "
                   "top_k, top_p, greedy, num_samples, seed, stop, beam); - reads stdin. Without --prompt "
                   "or --prompts, prompts come from stdin when it is not a terminal.")
@click.option("-t", "--temperature", default="1.0", show_default=True, metavar="T[,T...]",
              help="A temperature, or a comma-separated list to sweep (each prompt at each). 0 is greedy.")
@_generation_options
@click.option("--stop", multiple=True, metavar="STRING",
              help="End a sample where this string appears, leaving it out (repeatable; \\n, \\t work).")
@click.option("--beam", default=0, type=int, help="Beam search of this width: the most likely continuation.")
@click.option("--batch-size", default=256, show_default=True, type=int, help="Samples generated together.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default="jsonl", show_default=True,
              help="JSONL records, or text: each sample (prompt + continuation) under a line naming its prompt, "
                   "sample number, temperature and seed.")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr. [default: when a terminal]")
def generate(checkpoint, prompt_texts, prompts_file, temperature, num_samples, length, top_k, top_p, greedy, seed,
             drop_unknown, which, device, threads, precision, stop, beam, batch_size, fmt, output, progress):
    """Generate continuations of many prompts from CHECKPOINT, in batches, as JSONL or text."""
    from charforge.cli.progress import Progress
    from charforge.cli.prompts import read_prompts, read_source, total_work, unescape, write_results

    defaults = Settings(length, 1.0, top_k, top_p, greedy, tuple(unescape(s) for s in stop), beam)
    temperatures = parse_temperatures(temperature)
    for t in temperatures:
        replace(defaults, temperature=t).check()
    check_num_samples(num_samples)
    check_seed(seed)
    budget = Budget()  # the call's bounds, counted as the requests come in
    requests = []
    for index, text in enumerate(prompt_texts):
        requests += map(budget.add, expand(text, index, num_samples, None, defaults, temperatures))
    if prompts_file is not None or not prompt_texts:
        if prompts_file is None and sys.stdin.isatty():  # nothing piped in: one unprompted sample set
            requests += map(budget.add, expand("", 0, num_samples, None, defaults, temperatures))
        else:
            lines, source = read_source(prompts_file or "-")
            requests += read_prompts(lines, source, defaults, temperatures, num_samples,
                                     first_index=len(prompt_texts), budget=budget)
    if not requests:
        raise CharforgeError("no prompts: give --prompt TEXT, --prompts FILE, or prompts on stdin.")

    engine = _engine(checkpoint, which, device, threads, batch_size, drop_unknown, precision)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = Progress(*total_work(requests)) if show else None
    results = engine.run(requests, seed, bar)  # checks every prompt (unknown characters...) first
    try:
        out = open(output, "w", encoding="utf-8") if output and output != "-" else sys.stdout
    except OSError as exc:
        raise CharforgeError(f"cannot write {output}: {exc.strerror or exc}.") from None
    try:
        write_results(results, out, fmt)
    finally:
        if bar is not None:
            bar.close()
        if out is not sys.stdout:
            out.close()
