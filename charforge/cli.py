"""The ``charforge`` command. Imports torch only inside the commands that need it."""

from __future__ import annotations

import json
import sys

import click

from charforge import __version__
from charforge.config import CLIP_MODES, SCHEDULES, TrainConfig
from charforge.errors import CharforgeError

_DEFAULTS = TrainConfig()


class _Group(click.Group):
    """Turns charforge's user-facing errors into one line and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharforgeError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a file that cannot be read or written (permissions, full disk): one line too
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}.") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charforge")
def cli():
    """Train and sample character-level recurrent language models.

    \b
    charforge train corpus.txt        train on your own text (a file, folder or glob)
    charforge sample runs/corpus-lstm  sample from the trained model
    charforge watch runs/corpus-lstm   follow a run in the terminal UI (also: train/sample --tui)
    charforge cells / optimizers       what the installed plugins provide
    """


def _registry(block=()):
    from charforge.plugins import Registry, make_plugin_manager

    return Registry(make_plugin_manager(block=block))


def _pairs(ctx, param, value):
    return {k: v for k, v in value} if value else None


def _option(flag, field=None, type=None, help="", **kw):
    """A train option whose default shows TrainConfig's; unset options stay None (so resume can tell)."""
    field = field or flag.lstrip("-").split("/")[0].replace("-", "_")
    default = getattr(_DEFAULTS, field)
    shown = f" [default: {default}]" if default is not None and not kw.get("is_flag") else ""
    return click.option(flag, field, type=type, default=None, help=help + shown, **kw)


TRAIN_OPTIONS = [
    _option("--cell", help="Recurrent cell (see `charforge cells`)."),
    click.option("-c", "--cell-option", "cell_options", nargs=2, multiple=True, callback=_pairs,
                 metavar="KEY VALUE", help="A cell option, e.g. -c init orthogonal (repeatable)."),
    _option("--hidden-size", type=int, help="Units per layer."),
    _option("--layers", "num_layers", type=int, help="Stacked recurrent layers."),
    _option("--dropout", type=float, help="Dropout after each layer."),
    _option("--embedding-dim", type=int, help="Input embedding size; 0 feeds one-hot characters."),
    _option("--output-bias/--no-output-bias", "output_bias", help="Learn the output bias b_y. [default: on]"),
    _option("--optimizer", help="Optimizer (see `charforge optimizers`)."),
    click.option("-o", "--optimizer-option", "optimizer_options", nargs=2, multiple=True, callback=_pairs,
                 metavar="KEY VALUE", help="An optimizer option, e.g. -o beta2 0.99 (repeatable)."),
    _option("--lr", type=float, help="Peak learning rate."),
    _option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule over the budget."),
    _option("--warmup", type=int, help="Steps of linear learning-rate warmup."),
    _option("--lr-decay", type=float, help="Step schedule: multiply the rate by this..."),
    _option("--lr-decay-every", type=int, help="...every this many steps."),
    _option("--min-lr-ratio", type=float, help="Cosine schedule: final rate as a fraction of --lr."),
    _option("--clip", type=click.Choice(CLIP_MODES), help="Clip gradients by global norm or by value."),
    _option("--clip-value", type=float, help="The clipping threshold."),
    _option("--batch-size", type=int, help="Parallel streams per step."),
    _option("--seq-len", type=int, help="Characters per truncated-BPTT window."),
    _option("--steps", type=int, help="Budget: optimizer steps in all."),
    _option("--epochs", type=float, help="Budget: passes over the training text."),
    _option("--minutes", type=float, help=f"Budget: wall-clock minutes ({TrainConfig.DEFAULT_MINUTES:g} "
                                          f"when no budget is given)."),
    _option("--seed", type=int, help="Random seed."),
    _option("--device", help="auto, cpu, cuda or mps."),
    _option("--threads", type=int, help="CPU threads; 0 picks from the model size."),
    _option("--val-fraction", type=float, help="Held-out fraction at the end of the text."),
    _option("--encoding", help="Text encoding of the corpus files."),
    _option("--errors", type=click.Choice(["strict", "replace", "ignore"]), help="Undecodable bytes."),
    _option("--log-every", type=int, help="Steps between logged metrics."),
    _option("--eval-every", type=int, help="Steps between validations (and checkpoints)."),
    _option("--sample-length", type=int, help="Characters sampled at each validation."),
    _option("--keep", "keep_checkpoints", type=int, help="Also keep the last K step-numbered checkpoints."),
]


def _train_options(fn):
    for option in reversed(TRAIN_OPTIONS):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("corpus", required=False)
@_train_options
@click.option("--name", help="Run name: the run lives in RUNS_DIR/NAME. [default: CORPUS-CELL]")
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories go.")
@click.option("--resume", metavar="RUN_OR_CHECKPOINT", help="Continue a run from its latest checkpoint.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output (blocks the console plugin).")
@click.option("--tui", is_flag=True, help="Watch it in the terminal UI: p pause, s stop and save, n sample now.")
@click.pass_context
def train(ctx, corpus, name, runs_dir, resume, quiet, tui, **options):
    """Train a model on CORPUS: a text file, a folder, a glob, or a named corpus (`charforge corpora`)."""
    if tui:
        from charforge.tui import commands

        return commands.train(ctx)
    from charforge.plugins import make_plugin_manager
    from charforge.trainer import Trainer

    overrides = {k: v for k, v in options.items() if v is not None}
    pm = make_plugin_manager(block=["console"] if quiet else ())
    if resume:
        if corpus is not None:
            overrides["corpus"] = corpus
        trainer = Trainer.resume(resume, overrides, pm=pm)
    else:
        if corpus is None:
            raise click.UsageError("give a CORPUS to train on, or --resume a run.")
        config = TrainConfig(corpus=corpus, **overrides)
        trainer = Trainer(config, pm=pm, runs_root=runs_dir, name=name)
    trainer.run()


_precision_option = click.option(
    "--precision", type=click.Choice(["auto", "float32", "int8"]), default="auto", show_default=True,
    help="Arithmetic of the recurrent products: int8 (8-bit weights and state, exact integer sums) is about "
         "twice as fast where the CPU has VNNI, and auto picks it there; float32 computes what training and "
         "scoring compute.")


@cli.command()
@click.argument("checkpoint")
@click.option("--prime", default="", help="Text to warm the model up on; the sample continues it.")
@click.option("--length", default=500, show_default=True, type=int, help="Characters to generate.")
@click.option("-t", "--temperature", default=1.0, show_default=True, type=float,
              help="Below 1 is safer, above 1 wilder; 0 is greedy.")
@click.option("--top-k", default=0, type=int, help="Sample among the k most likely characters (0: all).")
@click.option("--top-p", default=1.0, type=float, help="Sample among the most likely characters "
                                                       "holding this much probability.")
@click.option("--greedy", is_flag=True, help="Always take the most likely character.")
@click.option("--seed", type=int, help="Random seed, for repeatable samples.")
@click.option("-n", "--num-samples", default=1, show_default=True, type=int, help="Independent samples.")
@click.option("--drop-unknown", is_flag=True, help="Drop prompt characters the model does not know.")
@click.option("--which", type=click.Choice(["best", "latest"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, mps or auto.")
@_precision_option
@click.option("--tui", is_flag=True, help="Sample interactively in the terminal UI, starting from these settings.")
def sample(checkpoint, prime, length, temperature, top_k, top_p, greedy, seed, num_samples, drop_unknown,
           which, device, precision, tui):
    """Print text sampled from CHECKPOINT (a .safetensors file or a run directory), streaming."""
    if tui:
        from charforge.tui import commands

        return commands.sample(checkpoint, which, device, prime, length, 0.0 if greedy else temperature,
                               top_k, top_p, seed, precision)
    from charforge.checkpoint import load_model
    from charforge.generate import BatchGenerator, Request, Settings, random_seed
    from charforge.trainer import pick_device

    settings = Settings(length, temperature, top_k, top_p, greedy).check()
    if num_samples < 1:
        raise CharforgeError(f"--num-samples must be at least 1, not {num_samples}.")
    if seed is not None and not 0 <= seed < 2**63:
        raise CharforgeError(f"--seed must be in [0, 2**63), not {seed}.")
    dev = pick_device(device)
    _sampling_threads(dev, 0, num_samples)
    model, vocab, _ = load_model(checkpoint, _registry(), dev, which)
    engine = BatchGenerator(model, vocab, dev, drop_unknown=drop_unknown, precision=precision)
    prompt = engine.encode_prompt(prime)[0]  # what the model continues
    seed = random_seed() if seed is None else seed
    out = sys.stdout
    if num_samples == 1:
        out.write(prompt)
        for piece in engine.stream(Request(prime, settings), seed):
            out.write(piece)
            out.flush()
        out.write("\n")
        return
    for result in engine.run([Request(prime, settings, num_samples)], seed):
        out.write(("" if result.sample == 0 else "\n----\n") + prompt + result.text)
    out.write("\n")


def _sampling_threads(dev, threads: int, rows: int) -> None:
    """``threads`` CPU threads, or by default one for fewer than 32 rows (where a second thread only
    adds hand-offs: measured in benchmarks/NOTES.md) and all cores for more."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif dev.type == "cpu" and rows < 32:
        torch.set_num_threads(1)


@cli.command()
@click.argument("run_dir")
def watch(run_dir):
    """Follow RUN_DIR's training in the terminal UI; quitting leaves the run going."""
    from charforge.tui import commands

    commands.watch(run_dir)


@cli.command()
@click.argument("checkpoint")
@click.option("-p", "--prompt", "prompt_texts", multiple=True, help="A prompt to continue (repeatable).")
@click.option("--prompts", "prompts_file", metavar="FILE",
              help="Prompts, one per line, or JSONL with per-prompt settings (prompt, temperature, length, "
                   "top_k, top_p, greedy, num_samples, seed, stop, beam); - reads stdin. Without --prompt "
                   "or --prompts, prompts come from stdin when it is not a terminal.")
@click.option("-n", "--num-samples", default=1, show_default=True, type=int, help="Samples per prompt.")
@click.option("--length", default=500, show_default=True, type=int, help="Characters to generate at most.")
@click.option("-t", "--temperature", default="1.0", show_default=True, metavar="T[,T...]",
              help="A temperature, or a comma-separated list to sweep (each prompt at each). 0 is greedy.")
@click.option("--top-k", default=0, type=int, help="Sample among the k most likely characters (0: all).")
@click.option("--top-p", default=1.0, type=float, help="Sample among the most likely characters holding "
                                                       "this much probability.")
@click.option("--greedy", is_flag=True, help="Always take the most likely character.")
@click.option("--stop", multiple=True, metavar="STRING",
              help="End a sample where this string appears, leaving it out (repeatable; \\n, \\t work).")
@click.option("--beam", default=0, type=int, help="Beam search of this width: the most likely continuation.")
@click.option("--seed", type=int, help="Base random seed; the same seed repeats every sample. [default: random]")
@click.option("--batch-size", default=256, show_default=True, type=int, help="Samples generated together.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--threads", default=0, type=int,
              help="CPU threads (0: one for fewer than 32 samples, where more only add hand-offs, else all cores).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default="jsonl", show_default=True,
              help="JSONL records, or plain text (prompt + continuation, samples separated by ----).")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr. [default: when a terminal]")
@click.option("--drop-unknown", is_flag=True, help="Drop prompt characters the model does not know.")
@click.option("--which", type=click.Choice(["best", "latest"]), default="best", show_default=True,
              help="Which checkpoint of a run directory.")
@_precision_option
def generate(checkpoint, prompt_texts, prompts_file, num_samples, length, temperature, top_k, top_p, greedy,
             stop, beam, seed, batch_size, device, threads, fmt, output, progress, drop_unknown, which, precision):
    """Generate continuations of many prompts from CHECKPOINT, in batches, as JSONL or text."""
    from dataclasses import replace

    from charforge import generate as gen

    defaults = gen.Settings(length, 1.0, top_k, top_p, greedy, tuple(gen.unescape(s) for s in stop), beam)
    temperatures = gen.parse_temperatures(temperature)
    for t in temperatures:
        replace(defaults, temperature=t).check()
    if num_samples < 1:
        raise CharforgeError(f"--num-samples must be at least 1, not {num_samples}.")
    if threads < 0:
        raise CharforgeError(f"--threads must not be negative, not {threads}.")
    requests = []
    for index, text in enumerate(prompt_texts):
        requests += gen.expand(text, index, num_samples, None, defaults, temperatures)
    if prompts_file is not None or not prompt_texts:
        if prompts_file is None and sys.stdin.isatty():  # nothing piped in: one unprompted sample set
            requests += gen.expand("", 0, num_samples, None, defaults, temperatures)
        else:
            text, source = gen.read_source(prompts_file or "-")
            requests += gen.read_prompts(text, source, defaults, temperatures, num_samples,
                                         first_index=len(prompt_texts))
    if not requests:
        raise CharforgeError("no prompts: give --prompt TEXT, --prompts FILE, or prompts on stdin.")

    from charforge.checkpoint import load_model
    from charforge.trainer import pick_device

    dev = pick_device(device)
    _sampling_threads(dev, threads, sum(r.settings.beam or r.num_samples for r in requests))
    model, vocab, _ = load_model(checkpoint, _registry(), dev, which)
    engine = gen.BatchGenerator(model, vocab, dev, batch_size, drop_unknown, precision)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = gen.Progress(*gen.total_work(requests)) if show else None
    results = engine.run(requests, seed, bar)  # checks every prompt (unknown characters...) first
    try:
        out = open(output, "w", encoding="utf-8") if output and output != "-" else sys.stdout
    except OSError as exc:
        raise CharforgeError(f"cannot write {output}: {exc.strerror or exc}.") from None
    try:
        gen.write_results(results, out, fmt)
    finally:
        if bar is not None:
            bar.close()
        if out is not sys.stdout:
            out.close()


@cli.command()
def plugins():
    """The installed plugins as JSON: name, version, hooks and what each provides."""
    click.echo(json.dumps(_registry().describe_plugins(), indent=2))


def _listing(kind: str, as_json: bool) -> None:
    items = _registry().items(kind)
    rows = []
    for item in items:
        obj = item.obj
        options = {name: opt.describe() for name, opt in getattr(obj, "options", {}).items()}
        rows.append({"name": item.name, "plugin": item.plugin, "help": getattr(obj, "help", ""),
                     "options": options, **({"uses_time": obj.uses_time} if kind == "cell" else {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}  (plugin {row['plugin']})  {row['help']}")
        for name, opt in row["options"].items():
            choices = f" {{{', '.join(map(str, opt['choices']))}}}" if "choices" in opt else ""
            click.echo(f"    {name} = {opt['default']!r}{choices}  {opt['help']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cells(as_json):
    """The recurrent cells the installed plugins provide, with their options."""
    _listing("cell", as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def optimizers(as_json):
    """The optimizers the installed plugins provide, with their options."""
    _listing("optimizer", as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def corpora(as_json):
    """The named corpora the installed plugins provide."""
    _listing("corpus", as_json)


def _task_option(flag, type, help):
    from charforge.tasks.settings import FrequencySettings

    field = flag.lstrip("-").replace("-", "_")
    return click.option(flag, field, type=type, default=None,
                        help=f"{help} [default: {getattr(FrequencySettings, field)}]")


@cli.command("frequency-task")
@_task_option("--steps", int, "Optimizer steps for each model.")
@_task_option("--hidden-size", int, "Units per layer.")
@_task_option("--layers", int, "Stacked recurrent layers.")
@_task_option("--batch-size", int, "Waves per step.")
@_task_option("--lr", float, "Adam's peak learning rate (cosine-decayed).")
@_task_option("--samples", int, "Training waves.")
@_task_option("--test-samples", int, "Held-out waves.")
@_task_option("--min-points", int, "Fewest samples per wave.")
@_task_option("--max-points", int, "Most samples per wave.")
@_task_option("--seed", int, "Random seed (data and models).")
@_task_option("--threads", int, "CPU threads (0: one for small models, all cores above).")
@click.option("--cell", "timed_cell", default="phased-lstm", show_default=True, help="The cell that uses time.")
@click.option("--baseline", default="lstm", show_default=True, help="The cell that gets t as an input feature.")
@click.option("-c", "--cell-option", "cell_options", nargs=2, multiple=True, callback=_pairs,
              metavar="KEY VALUE", help="An option of --cell, e.g. -c r_on 0.1 (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON line at the end.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def frequency_task(timed_cell, baseline, cell_options, as_json, quiet, **options):
    """The Phased LSTM paper's frequency-discrimination task, asynchronously sampled.

    Sine waves sampled at random times; class 1 when the period is in [5, 6] ms. Trains --cell
    (values in, timestamps as its clock) and --baseline (value and timestamp as inputs) on the same
    waves and prints both held-out accuracies.
    """
    from charforge.tasks.frequency import run

    settings = {k: v for k, v in options.items() if v is not None}
    log = None if quiet else (lambda line: click.echo(line, err=as_json))
    result = run(log=log, cells=(timed_cell, baseline), cell_options=cell_options or {}, **settings)
    if as_json:
        click.echo(json.dumps(result))
        return
    for name in (timed_cell, baseline):
        click.echo(f"{name:>12}: held-out accuracy {result[name]['accuracy']:.1%}")


def main() -> None:
    cli(prog_name="charforge")
