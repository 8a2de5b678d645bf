"""``charforge frequency-task``: the Phased LSTM paper's task, run from the command line."""

from __future__ import annotations

import json

import click

from charforge.cli.common import pairs


def _task_option(flag, type, help):
    from charforge.tasks.settings import FrequencySettings

    field = flag.lstrip("-").replace("-", "_")
    return click.option(flag, field, type=type, default=None,
                        help=f"{help} [default: {getattr(FrequencySettings, field)}]")


@click.command("frequency-task")
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
@click.option("-c", "--cell-option", "cell_options", nargs=2, multiple=True, callback=pairs,
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
