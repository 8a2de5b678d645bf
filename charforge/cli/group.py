"""The ``charforge`` command group: every subcommand added to it, and ``main``, the console script."""

from __future__ import annotations

import sys

import click

from charforge.cli import compare, inspect, listing, sample, tasks, train
from charforge.cli.common import Group
from charforge.version import __version__


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charforge")
def cli():
    """Train and sample character-level recurrent language models.

    \b
    charforge train corpus.txt        train on your own text (a file, folder or glob)
    charforge sample runs/corpus-lstm  sample from the trained model
    charforge watch runs/corpus-lstm   follow a run in the terminal UI (also: train/sample --tui)
    charforge inspect runs/corpus-lstm file.txt --find   surprisal, and the units that track quotes...
    charforge compare faith --cell rnn,lstm --hidden-size 8,16   a grid of runs, a table, plots
    charforge cells / optimizers / tasks   what the installed plugins provide
    """


for command in (train.train, compare.compare, sample.sample, train.watch, sample.generate, inspect.inspect,
                listing.plugins, listing.cells, listing.optimizers, listing.corpora, listing.tasks,
                tasks.frequency_task):
    cli.add_command(command)


def main() -> None:
    from charforge.stopping import quit_on_sigterm

    quit_on_sigterm()
    try:
        cli(prog_name="charforge")
    except SystemExit as done:
        if "charforge.distributed" in sys.modules:  # a rank of several: leave without the teardown
            sys.modules["charforge.distributed"].leave_at_once(done.code)
        raise
