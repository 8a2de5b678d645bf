"""``charforge train`` and ``charforge watch``: every TrainConfig field as an option, and the UI's door."""

from __future__ import annotations

import click

from charforge.cli.common import pairs
from charforge.cli.intervals import EveryType, config_fields
from charforge.config import CLIP_MODES, SCHEDULES, TrainConfig

_DEFAULTS = TrainConfig()


def _option(flag, field=None, type=None, help="", **kw):
    """A train option whose default shows TrainConfig's; unset options stay None (so resume can tell)."""
    field = field or flag.lstrip("-").split("/")[0].replace("-", "_")
    default = getattr(_DEFAULTS, field)
    shown = f" [default: {default}]" if default is not None and "/" not in flag else ""
    return click.option(flag, field, type=type, default=None, help=help + shown, **kw)


def _every(flag: str, what: str):
    field = flag.lstrip("-").replace("-", "_")
    return click.option(flag, field, type=EveryType(), default=None,
                        help=f"{what} every N steps or every so many seconds (90s, 2m). [default: within 30 s "
                             f"of the first step, then every tenth of the budget, 30 s to 5 min apart]")


TRAIN_OPTIONS = [
    _option("--cell", help="Recurrent cell (see `charforge cells`)."),
    click.option("-c", "--cell-option", "cell_options", nargs=2, multiple=True, callback=pairs,
                 metavar="KEY VALUE", help="A cell option, e.g. -c forget_bias 2, or with --cell rnn "
                                           "-c init orthogonal (repeatable; `charforge cells` lists them)."),
    click.option("-T", "--task-option", "task_options", nargs=2, multiple=True, callback=pairs,
                 metavar="KEY VALUE", help="An option of a task (CORPUS names one), e.g. palindrome -T length 20 "
                                           "(repeatable; `charforge tasks` lists them)."),
    _option("--init-from", metavar="RUN_OR_CHECKPOINT",
            help="Fine-tune: start from this model's weights (a run's best checkpoint) on CORPUS, in a new run. "
                 "The model keeps its shape; characters it lacks extend its vocabulary."),
    _option("--hidden-size", type=int, help="Units per layer."),
    _option("--layers", "num_layers", type=int, help="Stacked recurrent layers."),
    _option("--dropout", type=float, help="Dropout after each layer."),
    _option("--embedding-dim", type=int, help="Input embedding size; 0 feeds one-hot characters."),
    _option("--output-bias/--no-output-bias", "output_bias", help="Learn the output bias b_y. [default: on]"),
    _option("--optimizer", help="Optimizer (see `charforge optimizers`)."),
    click.option("-o", "--optimizer-option", "optimizer_options", nargs=2, multiple=True, callback=pairs,
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
    _option("--steps", type=int, help="Budget: optimizer steps in all (with --resume: the whole run's, "
                                      "unless --more)."),
    _option("--epochs", type=float, help="Budget: passes over the training text."),
    _option("--minutes", type=float, help=f"Budget: minutes of training, the final validation included "
                                          f"({TrainConfig.DEFAULT_MINUTES:g} when no budget is given)."),
    _option("--seed", type=int, help="Random seed."),
    _option("--device", help="auto, cpu, cuda[:N] or mps."),
    _option("--threads", type=int, help="CPU threads: 0 measures and keeps the fastest count as the machine's "
                                        "load changes; N pins N."),
    _option("--val-fraction", type=float, help="Held-out fraction at the end of the text."),
    _option("--encoding", help="Text encoding of the corpus files."),
    _option("--errors", type=click.Choice(["strict", "replace", "ignore"]), help="Undecodable bytes."),
    _option("--log-every", type=int, help="Steps between logged metrics."),
    _every("--eval-every", "Validate, sample and checkpoint"),
    _every("--checkpoint-every", "Also checkpoint (the latest) between validations"),
    _option("--sample-length", type=int, help="Characters sampled at each validation."),
    _option("--keep", "keep_checkpoints", type=int, help="Also keep the last K step-numbered checkpoints."),
]


def _train_options(fn):
    for option in reversed(TRAIN_OPTIONS):
        fn = option(fn)
    return fn


TRAIN_PARAMS: list[click.Option] = click.command()(_train_options(lambda **options: None)).params  # as objects


@click.command()
@click.argument("corpus", required=False)
@_train_options
@click.option("--name", help="Run name: the run lives in RUNS_DIR/NAME. [default: CORPUS-CELL]")
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories go.")
@click.option("--resume", metavar="RUN_OR_CHECKPOINT",
              help="Continue a run from its latest checkpoint; --steps, --epochs and --minutes then count the "
                   "whole run, from its start, unless --more.")
@click.option("--more", is_flag=True, help="With --resume: the budget given is more, counted from where the run "
                                           "stands (--minutes 5 --more: five more minutes).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output (blocks the console plugin).")
@click.option("--tui", is_flag=True, help="Watch it in the terminal UI: p pause, s stop and save, n sample now.")
@click.option("--nproc", type=click.IntRange(1), help="Train in N processes on this machine, each on its share of "
                                                       "the batch's streams (torchrun, DistributedDataParallel).")
@click.pass_context
def train(ctx, corpus, name, runs_dir, resume, more, quiet, tui, nproc, **options):
    """Train a model on CORPUS: a text file, a folder, a glob, a named corpus (`charforge corpora`), or a
    task (`charforge tasks`)."""
    from charforge.distributed import launched

    if nproc and nproc > 1 and tui:
        raise click.UsageError("--tui watches one process; with --nproc, watch the run from another terminal "
                               "(charforge watch RUN).")
    if nproc and nproc > 1 and launched()[1] == 1:
        from charforge.cli.launch import torchrun

        ctx.exit(torchrun(nproc))
    if tui:
        from charforge.tui import commands

        return commands.train(ctx)
    from charforge.plugins import make_plugin_manager
    from charforge.trainer import Trainer

    overrides = config_fields(options)
    pm = make_plugin_manager(block=["console"] if quiet or launched()[0] else ())  # one rank prints
    if more and not resume:
        raise click.UsageError("--more adds to the budget of a run you --resume.")
    if resume and options.get("init_from"):
        raise click.UsageError("--init-from starts a new run; --resume continues one: give one of them.")
    if resume:
        if corpus is not None:
            overrides["corpus"] = corpus
        trainer = Trainer.resume(resume, overrides, pm=pm, more=more)
    else:
        if corpus is None:
            raise click.UsageError("give a CORPUS to train on, or --resume a run.")
        from charforge.data import run_config
        from charforge.plugins import Registry

        config = run_config({"corpus": corpus, **overrides}, Registry(pm))
        trainer = Trainer(config, pm=pm, runs_root=runs_dir, name=name)
    trainer.run()


@click.command()
@click.argument("run_dir")
def watch(run_dir):
    """Follow RUN_DIR's training in the terminal UI; quitting leaves the run going.

    RUN_DIR may also be a grid's directory (made by charforge compare): its loss curves, its points
    and its summary table, live."""
    from charforge.tui import commands

    commands.watch(run_dir)
