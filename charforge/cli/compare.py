"""``charforge compare``: a grid of runs from ``charforge train``'s own options, each taking a comma
list (an axis), trained, resumed when rerun, summarised in a table and plotted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from charforge.cli.common import pairs
from charforge.cli.intervals import config_fields
from charforge.cli.train import TRAIN_PARAMS
from charforge.errors import CharforgeError
from charforge.experiments.grid import OPTION_GROUPS, Grid

_GROUPS = {field: group for group, field in OPTION_GROUPS.items()}  # cell_options -> cell


def _as_axis(option: click.Option):
    """``charforge train``'s option as a decorator taking a comma list; a flag pair becomes
    ``--flag true,false``."""
    if option.nargs == 2:  # -c KEY V1,V2: the values are split at the commas
        return click.option(*option.opts, option.name, nargs=2, multiple=True, callback=pairs,
                            metavar="KEY V[,V...]", help=option.help)
    return click.option(option.opts[0], option.name, default=None, metavar="V[,V...]",
                        help=(option.help or "").split(" [default")[0])


_TYPES = {o.name: o.type for o in TRAIN_PARAMS}


def _values(ctx, name: str, raw: str) -> list:
    """The values of a comma list, each converted and checked as ``charforge train`` would."""
    option = next(o for o in ctx.command.params if o.name == name)
    try:
        return [_TYPES[name].convert(part.strip(), option, ctx) for part in raw.split(",")]
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, ctx, option) from None


def grid_from_options(ctx, target: str | None, options: dict, seeds: int | None, grid_file: str | None,
                      target_loss: float | None):
    """(the grid, the name its file gives) of a compare command line, over the file's when one is given."""
    grid, name = Grid.from_toml(grid_file) if grid_file else (Grid(target or ""), None)
    if target:
        grid.target = target
    if not grid.target:
        raise click.UsageError("give a TARGET (a corpus or a task) or a --grid file.")
    for key, raw in options.items():
        if raw is None:
            continue
        if key in _GROUPS:  # {KEY: "V1,V2"} of -c, -o or -T
            for option, values in raw.items():
                _place(grid, f"{_GROUPS[key]}.{option}", [v.strip() for v in values.split(",")])
            continue
        values = _values(ctx, key, raw)
        fields = [config_fields({key: v}) for v in values]
        names = {next(iter(f)) for f in fields}
        if len(names) > 1:
            raise click.UsageError(f"--{key.replace('_', '-')} takes steps or times, not both in one list.")
        _place(grid, names.pop(), [next(iter(f.values())) for f in fields])
    if seeds is not None:
        if "seed" in options and options["seed"] is not None:
            raise click.UsageError("give --seeds N or --seed S1,S2..., not both.")
        grid.seeds = list(range(1, seeds + 1))
    if target_loss is not None:
        grid.target_loss = target_loss
    grid.check()
    return grid, name


def _place(grid, key: str, values: list) -> None:
    if key == "seed":
        grid.seeds = values
        return
    grid.fixed.pop(key, None)
    grid.axes.pop(key, None)
    if len(values) > 1:
        grid.axes[key] = values
    else:
        grid.fixed[key] = values[0]


def _compare_options(fn):
    for option in reversed(TRAIN_PARAMS):
        fn = _as_axis(option)(fn)
    return fn


@click.command()
@click.argument("target", required=False)
@_compare_options
@click.option("--seeds", type=click.IntRange(1), help="Train each configuration with seeds 1..N.")
@click.option("--grid", "grid_file", type=click.Path(exists=True, dir_okay=False),
              help="The grid as a TOML file (command-line options override it).")
@click.option("--name", help="The grid's name: its runs go to RUNS_DIR/NAME. [default: TARGET-compare]")
@click.option("--runs-dir", default="runs", show_default=True, help="Where run directories go.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=1, show_default=True,
              help="Points trained at once, each in a worker process with cores/jobs threads (one job: "
                   "adaptive threads).")
@click.option("--target-loss", type=float, help="Also report the steps and seconds each run took to reach "
                                                 "this training loss (nats/char).")
@click.option("--metric", help="The figure plotted against numeric axes [default: the task's; else val_loss].")
@click.option("-q", "--quiet", is_flag=True, help="No progress; the table only.")
@click.pass_context
def compare(ctx, target, seeds, grid_file, name, runs_dir, jobs, target_loss, metric, quiet, **options):
    """Train TARGET (a corpus or a task) at every combination of the options given as comma lists.

    \b
    charforge compare faith --cell rnn,lstm --hidden-size 8,16 --seeds 2 --steps 30 --name GRID
    charforge compare palindrome --cell rnn,lstm -T length 5,25 --steps 300 --name GRID

    Each point is a run in RUNS_DIR/NAME/ (watch, sample or resume it as any other). Rerunning the
    same command skips finished points and resumes interrupted ones; a grown grid trains only its
    new points. At the end: points.csv, summary.csv, summary.md and PNG plots in RUNS_DIR/NAME.
    """
    from charforge.experiments.compare import run_grid

    grid, file_name = grid_from_options(ctx, target, options, seeds, grid_file, target_loss)
    directory = Path(runs_dir) / (name or file_name or f"{Path(grid.target).stem}-compare")
    report = Report(quiet)
    outcome = run_grid(grid, directory, jobs, metric, report)
    report.close()
    click.echo(outcome.table, nl=False)
    click.echo(f"summary: {directory / 'summary.md'}, {directory / 'summary.csv'}, {directory / 'points.csv'}; "
               f"plots: {', '.join(p.name for p in outcome.plots) or 'none'}")
    if outcome.interrupted:
        click.echo(f"interrupted: {outcome.finished} of {outcome.total} points finished; run the same command "
                   f"again to go on.", err=True)
        sys.exit(130)
    if outcome.failed:
        raise CharforgeError(f"{len(outcome.failed)} of {outcome.total} points failed; the first: "
                             f"{outcome.failed[0]}")


class Report:
    """What compare shows while it trains: a bar over the points on a terminal, a line per point."""

    def __init__(self, quiet: bool):
        self.quiet, self.progress, self.task = quiet, None, None

    def planned(self, total: int, to_train: int, jobs: int, threads: int) -> None:
        if self.quiet:
            return
        each = "adaptive threads" if threads == 0 else f"{threads} thread{'s' * (threads != 1)} each"
        click.echo(f"{total} points: {total - to_train} finished before, {to_train} to train, "
                   f"{jobs} at a time with {each}")
        if to_train and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.description}"), transient=True)
            self.task = self.progress.add_task("", total=to_train)
            self.progress.start()

    def running(self, names: list[str]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description="running " + "; ".join(names))

    def finished(self, name: str, line: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.advance(self.task)
            self.progress.console.print(f"{name}: {line}", soft_wrap=True, highlight=False)
        else:
            click.echo(f"{name}: {line}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
