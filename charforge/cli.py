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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charforge")
def cli():
    """Train and sample character-level recurrent language models.

    \b
    charforge train corpus.txt        train on your own text (a file, folder or glob)
    charforge sample runs/corpus-lstm  sample from the trained model
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
def train(corpus, name, runs_dir, resume, quiet, **options):
    """Train a model on CORPUS: a text file, a folder, a glob, or a named corpus (`charforge corpora`)."""
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
def sample(checkpoint, prime, length, temperature, top_k, top_p, greedy, seed, num_samples, drop_unknown,
           which, device):
    """Print text sampled from CHECKPOINT (a .safetensors file or a run directory), streaming."""
    from charforge.checkpoint import load_model
    from charforge.sampler import SampleOptions, Sampler
    from charforge.trainer import pick_device

    options = SampleOptions(length, temperature, top_k, top_p, greedy).check()
    if num_samples < 1:
        raise CharforgeError(f"--num-samples must be at least 1, not {num_samples}.")
    dev = pick_device(device)
    model, vocab, _ = load_model(checkpoint, _registry(), dev, which)
    sampler = Sampler(model, vocab, dev)
    prompt = vocab.decode(sampler.prime_ids(prime, drop_unknown)) if prime else ""
    out = sys.stdout
    if num_samples == 1:
        out.write(prompt)
        for token in sampler.tokens(prime, options, 1, seed, drop_unknown):
            out.write(vocab.chars[int(token[0])])
            out.flush()
        out.write("\n")
        return
    for i, text in enumerate(sampler.sample(prime, options, num_samples, seed, drop_unknown)):
        out.write(("" if i == 0 else "\n----\n") + prompt + text)
    out.write("\n")


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


def main() -> None:
    cli(prog_name="charforge")
